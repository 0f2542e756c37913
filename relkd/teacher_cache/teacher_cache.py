"""The teacher cache: an LLM teacher's judgements of query–item pairs, keyed by pair_id.

Two formats are read (see docs/teacher_cache.md). **v2** is what ``relkd teacher annotate``
writes: resumable parts plus, after ``relkd teacher cache finalize``, a ``final/`` folder of
memory-mapped ``.npy`` arrays sorted by pair_id and CoT texts as offsets into one UTF-8 byte
array, so every DDP rank and DataLoader worker shares the same pages and a CoT string is only
decoded for the rows of a batch that asks for it (writer: relkd/teacher_cache/cache_writer.py).

**v1** (one Parquet file; still read, no longer written: tests/v1_teacher_cache.py writes one)::

    teacher.parquet   pair_id int64, logits/probs fixed_size_list<float32>[K], score float32,
                      cot string (nullable), aspect_<category|brand|model|attributes> string
                      (nullable; match, mismatch or not_stated)
    manifest.json     kind, schema_version, label_scheme, labels, model, prompt_template,
                      dataset (name + table sha256s), rows, sha256 of teacher.parquet

``TeacherCache.load`` verifies either against a dataset; ``align`` joins it to pair rows with a
vectorised searchsorted, so no Python object is made per pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import get_label_scheme
from relkd.data.manifest import Manifest, sha256_file
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import DataError, StaleArtifactError
from relkd.teacher_cache.cache_writer import read_cache_manifest

TEACHER_CACHE_KIND = "teacher_cache"
TEACHER_CACHE_VERSION = 1  # the one-file format; ``load`` also reads v2
TEACHER_FILE = "teacher.parquet"
MANIFEST = "manifest.json"
ASPECT_COLUMNS: tuple[str, ...] = tuple(f"aspect_{a}" for a in ASPECTS)

DatasetRef = CanonicalDataset | Manifest | str | Path


def dataset_fingerprint(dataset: DatasetRef) -> dict[str, Any]:
    """``{"name": ..., "label_scheme": ..., "tables": {table: sha256}}`` of a dataset."""
    manifest = _manifest_of(dataset)
    return {
        "name": manifest.name,
        "label_scheme": manifest.label_scheme,
        "tables": {name: entry.sha256 for name, entry in sorted(manifest.tables.items())},
    }


def _manifest_of(dataset: DatasetRef) -> Manifest:
    if isinstance(dataset, CanonicalDataset):
        return dataset.manifest
    if isinstance(dataset, Manifest):
        return dataset
    return Manifest.load(dataset)


class TeacherCache:
    """A verified teacher cache. Arrays are read lazily; pickling keeps only the path and the
    manifest (DataLoader workers and ddp_spawn children reopen the Parquet file)."""

    def __init__(self, root: str | Path, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._table: pa.Table | None = None
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def path(self) -> Path:
        return self.root / TEACHER_FILE

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load(
        cls, root: str | Path, dataset: DatasetRef | None = None, *, verify_hash: bool = True
    ) -> TeacherCache:
        """Open a cache and verify it (against ``dataset`` when given).

        Raises DataError naming the file when it is missing or corrupt (sha256 mismatch), when its
        label scheme or label order differs from the dataset's, on duplicate pair_ids, or when it
        holds pair_ids the dataset does not have (with their count); StaleArtifactError naming
        the path and the table when the dataset's tables changed since the cache was written.
        """
        root = Path(root)
        mpath = root / MANIFEST
        manifest = read_cache_manifest(root)
        version = manifest.get("schema_version")
        if version == 2:
            cache = cls(root, manifest)
            cache._open_v2(verify_hash)
            if dataset is not None:
                cache._check_dataset(dataset, cache.pair_id)
            return cache
        if version != TEACHER_CACHE_VERSION:
            raise DataError(
                f"{mpath}: schema_version {version} is not one this relkd reads (1, 2); re-annotate"
            )
        cache = cls(root, manifest)
        path = cache.path
        if not path.is_file():
            raise DataError(f"{path}: missing from teacher cache {root}")
        if verify_hash and sha256_file(path) != manifest.get("sha256"):
            raise DataError(
                f"{path}: corrupt, sha256 differs from the one in {mpath}; re-annotate or restore it"
            )
        table = cache.table
        missing = [
            c for c in ("pair_id", "logits", "probs", "score") if c not in table.column_names
        ]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}")
        if table.num_rows != manifest.get("rows"):
            raise DataError(
                f"{path}: {table.num_rows} rows, manifest records {manifest.get('rows')}"
            )
        k = len(manifest["labels"])
        for col in ("logits", "probs"):
            typ = table.schema.field(col).type
            if not pa.types.is_fixed_size_list(typ) or typ.list_size != k:
                raise DataError(f"{path}: column {col} is {typ}, expected fixed_size_list[{k}]")
        pid = cache.pair_id
        sorted_pid = np.sort(pid)
        dup = int(np.count_nonzero(sorted_pid[1:] == sorted_pid[:-1]))
        if dup:
            raise DataError(f"{path}: {dup} duplicate pair_id value(s)")
        if dataset is not None:
            cache._check_dataset(dataset, sorted_pid)
        return cache

    def _open_v2(self, verify_hash: bool) -> None:
        """Check a v2 cache: finalized, from the parts it lists now, every final file intact
        (size; sha256 too with ``verify_hash``, done once on rank 0), arrays of N rows."""
        from relkd.artifacts.atomic_files import check_file_record
        from relkd.teacher_cache.cache_finalizer import FINAL_DIR
        from relkd.teacher_cache.cache_writer import listed_parts, parts_digest

        mpath = self.root / MANIFEST
        final = self.manifest.get("finalized")
        if not final:
            raise DataError(
                f"{mpath}: teacher cache is not finalized; run `relkd teacher cache finalize "
                f"{self.root}` once every shard has finished"
            )
        if parts_digest(listed_parts(self.root)) != final.get("parts_digest"):
            raise StaleArtifactError(
                f"{self.root}: parts were committed after the cache was finalized; run "
                f"`relkd teacher cache finalize {self.root}` again"
            )
        folder = self.root / FINAL_DIR
        for name, record in final["files"].items():
            path = folder / name
            if verify_hash:
                if not path.is_file() or sha256_file(path) != record["sha256"]:
                    raise DataError(
                        f"{path}: missing or corrupt (sha256 differs from {mpath}); run "
                        f"`relkd teacher cache finalize {self.root}` to rebuild it"
                    )
            else:
                size = path.stat().st_size if path.is_file() else -1
                if size != record["bytes"]:
                    check_file_record(
                        path, record, mpath, f"run `relkd teacher cache finalize {self.root}`"
                    )
        n = int(final["rows"])
        for name in ("pair_id", "logits", "probs", "score", "aspects", "cot_offsets"):
            rows = self._cached(name).shape[0]
            if rows != n + (name == "cot_offsets"):
                raise DataError(f"{folder / name}.npy: {rows} rows where {mpath} records {n}")

    @property
    def version(self) -> int:
        return int(self.manifest.get("schema_version", 1))

    def _check_dataset(self, dataset: DatasetRef, sorted_pid: np.ndarray) -> None:
        ds = dataset if isinstance(dataset, CanonicalDataset) else None
        if ds is None and not isinstance(dataset, Manifest):
            ds = CanonicalDataset(dataset)
        manifest = ds.manifest if ds is not None else dataset
        assert isinstance(manifest, Manifest)
        scheme = get_label_scheme(manifest.label_scheme)
        mine = self.manifest
        if mine.get("label_scheme") != scheme.name or list(mine.get("labels", [])) != list(
            scheme.labels
        ):
            raise DataError(
                f"{self.root / MANIFEST}: label scheme {mine.get('label_scheme')!r} with labels "
                f"{mine.get('labels')} does not match the dataset's {scheme.name!r} "
                f"{list(scheme.labels)}"
            )
        want = dataset_fingerprint(manifest)["tables"]
        if self.version == 2:  # the tables the prompts were rendered from
            have = mine["fingerprint"]["dataset"]["tables"]
            want = {t: want.get(t) for t in have}
        else:
            have = mine.get("dataset", {}).get("tables", {})
        changed = [t for t in sorted(set(want) | set(have)) if want.get(t) != have.get(t)]
        if changed:
            raise StaleArtifactError(
                f"{self.root}: teacher cache is stale: field dataset.tables of "
                f"{self.root / MANIFEST} records other sha256s for {changed} (written for another "
                "dataset, or before these tables changed); re-run the teacher annotation or point "
                "at the matching dataset"
            )
        if ds is not None:
            ds_pid = np.sort(ds.table("pairs", ["pair_id"]).column("pair_id").to_numpy())
            pos = np.clip(np.searchsorted(ds_pid, sorted_pid), 0, max(len(ds_pid) - 1, 0))
            unknown = (
                int(np.count_nonzero(ds_pid[pos] != sorted_pid)) if len(ds_pid) else len(sorted_pid)
            )
            if unknown:
                raise DataError(
                    f"{self.path}: {unknown} pair_id value(s) are not in dataset {ds.root}"
                )

    # -- arrays --------------------------------------------------------------------------

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            try:
                self._table = pq.read_table(self.path, memory_map=True)
            except (OSError, pa.ArrowInvalid) as exc:
                raise DataError(f"{self.path}: cannot read teacher cache ({exc})") from None
        return self._table

    def _cached(self, name: str) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._compute(name)
            self._arrays[name] = arr
        return arr

    def _compute(self, name: str) -> np.ndarray:
        if self.version == 2:
            return self._final_array(name)
        t = self.table
        if name == "pair_id":
            return t.column("pair_id").to_numpy().astype(np.int64, copy=False)
        if name in ("logits", "probs"):
            flat = t.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            return flat.astype(np.float32, copy=False).reshape(t.num_rows, self.num_labels)
        if name == "score":
            return t.column("score").to_numpy().astype(np.float32, copy=False)
        if name == "aspects":
            out = np.full((t.num_rows, len(ASPECTS)), -1, dtype=np.int8)
            values = pa.array(ASPECT_VALUES, pa.string())
            for j, col in enumerate(ASPECT_COLUMNS):
                if col in t.column_names:
                    idx = pc.index_in(t.column(col), value_set=values)
                    out[:, j] = pc.fill_null(idx, -1).to_numpy()
            return out
        if name == "order":  # argsort of pair_id, for align()
            return np.argsort(self.pair_id, kind="stable")
        raise KeyError(name)

    def _final_array(self, name: str) -> np.ndarray:
        from relkd.teacher_cache.cache_finalizer import FINAL_DIR

        if name == "order":  # finalize sorted the rows by pair_id
            return np.arange(self.rows, dtype=np.int64)
        path = self.root / FINAL_DIR / f"{name}.npy"
        try:
            return np.load(path, mmap_mode="r").view(np.ndarray)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read teacher cache file ({exc})") from None

    @property
    def pair_id(self) -> np.ndarray:
        return self._cached("pair_id")

    @property
    def logits(self) -> np.ndarray:
        """float32 ``[rows, K]``."""
        return self._cached("logits")

    @property
    def probs(self) -> np.ndarray:
        return self._cached("probs")

    @property
    def score(self) -> np.ndarray:
        """float32 ``[rows]``: expected gain under ``probs``."""
        return self._cached("score")

    @property
    def aspect_codes(self) -> np.ndarray:
        """int8 ``[rows, 4]``: index into ASPECT_VALUES per ASPECTS, -1 where missing."""
        return self._cached("aspects")

    @property
    def has_cot(self) -> bool:
        if self.version == 2:
            return bool(self.manifest["finalized"]["has_cot"])
        return bool(self.manifest.get("has_cot"))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.manifest["labels"])

    @property
    def num_labels(self) -> int:
        return len(self.manifest["labels"])

    @property
    def rows(self) -> int:
        if self.version == 2:
            return int(self.manifest["finalized"]["rows"])
        return int(self.manifest["rows"])

    @property
    def has_hidden(self) -> bool:
        return self.version == 2 and bool(self.manifest["finalized"].get("has_hidden"))

    @property
    def hidden(self) -> np.ndarray:
        """float16 ``[rows, H]`` pooled teacher hidden states (v2 caches annotated with --hidden)."""
        if not self.has_hidden:
            raise DataError(f"{self.root}: no hidden states (annotate with --hidden last|mean)")
        return self._cached("hidden")

    def __len__(self) -> int:
        return self.rows

    def align(self, pair_ids: np.ndarray) -> np.ndarray:
        """Cache row for each of ``pair_ids`` (int64), -1 where the cache lacks the pair."""
        pair_ids = np.asarray(pair_ids, dtype=np.int64)
        order = self._cached("order")
        if len(order) == 0:
            return np.full(len(pair_ids), -1, dtype=np.int64)
        # a v2 cache is sorted by pair_id already: search the memory map, no copy
        sorted_pid = self.pair_id if self.version == 2 else self.pair_id[order]
        pos = np.clip(np.searchsorted(sorted_pid, pair_ids), 0, len(order) - 1)
        hit = sorted_pid[pos] == pair_ids
        return np.where(hit, order[pos], -1).astype(np.int64)

    def cot(self, rows: np.ndarray) -> list[str | None]:
        """CoT text for cache ``rows`` (-1 gives None); only these strings are materialised."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.version == 2:
            offsets, raw = self._cached("cot_offsets"), self._cached("cot_bytes")
            null = self._cached("cot_null")
            return [
                None if r < 0 or null[r] else bytes(raw[offsets[r] : offsets[r + 1]]).decode()
                for r in rows.tolist()
            ]
        idx = pa.array(np.where(rows < 0, 0, rows), mask=rows < 0)
        return self.table.column("cot").take(idx).to_pylist()

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root = state["root"]
        self.manifest = state["manifest"]
        self._table = None
        self._arrays = {}

    def __repr__(self) -> str:
        return f"TeacherCache({str(self.root)!r}, rows={self.rows}, scheme={self.manifest['label_scheme']!r})"


def cache_identity(root: str | Path) -> dict[str, Any]:
    """What a run records of the teacher cache it reads (run_info.json): the folder, its format,
    its fingerprint hash (v2) or file hash (v1) and its rows."""
    manifest = read_cache_manifest(Path(root))
    final = manifest.get("finalized") or {}
    return {
        "root": str(root),
        "schema_version": manifest.get("schema_version"),
        "fingerprint_sha256": manifest.get("fingerprint_sha256"),
        "sha256": manifest.get("sha256"),
        "rows": final.get("rows", manifest.get("rows")),
        "parts_digest": final.get("parts_digest"),
    }
