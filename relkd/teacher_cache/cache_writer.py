"""Writing a teacher cache v2: resumable, shardable, fingerprinted (see docs/teacher_cache.md).

Layout while annotating::

    <cache>/manifest.json                 kind, schema_version 2, fingerprint (created once)
    <cache>/shards/<i>-of-<n>.json        one per shard: its request and its committed parts
    <cache>/shards/<i>-of-<n>.lock        held (flock) while a process annotates that shard
    <cache>/parts/<i>-of-<n>/part-NNNNNN.parquet

A part is written to a temporary name, fsynced and renamed; only then is it listed (with rows,
pair_id range, bytes and sha256) in its shard's file, itself replaced atomically. A kill at any
moment therefore loses at most the part in flight: an unlisted part file is ignored and
overwritten by the next run, which skips every pair already listed. Each shard file has one
writer (the lock), so shards of a SLURM array or torchrun job share a cache without locking the
top-level manifest, which only ``finalize`` rewrites.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from relkd import __version__
from relkd.artifacts.atomic_files import (
    TMP_PREFIX,
    atomic_write,
    atomic_write_json,
    check_file_record,
    create_exclusive,
    file_record,
)
from relkd.artifacts.fingerprinted_artifact import fingerprint as fingerprint_of
from relkd.artifacts.fingerprinted_artifact import input_differences
from relkd.artifacts.manifest_file import read_manifest_file
from relkd.data.pool_subset import mix64
from relkd.errors import DataError, StaleArtifactError
from relkd.teacher_cache.annotation import Annotation

KIND = "teacher_cache"
VERSION = 2
MANIFEST = "manifest.json"
MAX_VERSIONS = 100
PART_HINT = (
    "restore the file, or delete that shard's parts/<i-of-n>/ folder and shards/<i-of-n>.json "
    "and annotate the shard again"
)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the pairs whose mixed pair_id falls in it."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``i/n``, or ``env``: the SLURM array task (SLURM_ARRAY_TASK_ID of
        SLURM_ARRAY_TASK_COUNT) or the torchrun process (RANK of WORLD_SIZE)."""
        if text == "env":
            return cls.from_env()
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise DataError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
        if n < 1 or not 0 <= i < n:
            raise DataError(f"--shard {text!r}: need 0 <= i < n")
        return cls(i, n)

    @classmethod
    def from_env(cls) -> Shard:
        env = os.environ
        for i, n in (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"), ("RANK", "WORLD_SIZE")):
            if i in env and n in env:
                return cls.parse(f"{env[i]}/{env[n]}")
        raise DataError(
            "--shard env: set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (a SLURM array "
            "starting at 0) or RANK and WORLD_SIZE (torchrun), or pass --shard i/n"
        )

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def select(self, pair_id: np.ndarray) -> np.ndarray:
        """Bool mask of the pairs in this shard: a splitmix64 hash of pair_id modulo n, so
        shards are balanced whatever the id pattern and independent of row order."""
        if self.count == 1:
            return np.ones(len(pair_id), dtype=bool)
        return mix64(pair_id) % np.uint64(self.count) == np.uint64(self.index)


def read_cache_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a teacher cache folder (any schema version), or DataError."""
    manifest = read_manifest_file(root / MANIFEST, f"missing; is {root} a teacher cache folder?")
    if manifest.get("kind") != KIND:
        raise DataError(f"{root / MANIFEST}: kind is {manifest.get('kind')!r}, not {KIND!r}")
    return manifest


def shard_files(root: Path) -> list[Path]:
    return sorted((root / "shards").glob("*-of-*.json"))


def read_shard(path: Path) -> dict[str, Any]:
    return read_manifest_file(path, "missing", "; the shard file is damaged, restore it or re-run")


def listed_parts(root: Path) -> list[dict[str, Any]]:
    """Every committed part of every shard, as recorded (``file`` relative to the cache)."""
    return [p for path in shard_files(root) for p in read_shard(path).get("parts", [])]


def cache_status(root: str | Path) -> str:
    """A readable summary of a cache: fingerprint, each shard's request, parts, pairs, state and
    last speed, and whether ``final/`` is current (``relkd teacher cache status``)."""
    root = Path(root)
    manifest = read_cache_manifest(root)
    lines = [
        f"{root}: teacher cache v{manifest.get('schema_version')}, fingerprint "
        f"{str(manifest.get('fingerprint_sha256', ''))[:12]}, dataset "
        f"{(manifest.get('dataset') or {}).get('root')}"
    ]
    if manifest.get("schema_version") != VERSION:
        return lines[0]
    total = 0
    for path in shard_files(root):
        st = read_shard(path)
        rows = sum(int(p["rows"]) for p in st["parts"])
        total += rows
        worked = [r for r in st.get("runs", []) if r.get("annotated")]
        last = worked[-1] if worked else {}
        req = st["request"]
        lines.append(
            f"  shard {st['shard'][0]}/{st['shard'][1]}: {len(st['parts'])} parts, {rows} pairs, "
            f"{'complete' if st.get('complete') else 'INCOMPLETE'}; request splits "
            f"{','.join(req['splits']) or '-'}{pool_text(req)}; last working "
            f"run {last.get('pairs_per_s', '-')} pairs/s"
        )
    final = manifest.get("finalized")
    current = bool(final) and final.get("parts_digest") == parts_digest(listed_parts(root))
    state = (
        f"finalized ({final['rows']} pairs)"
        if current
        else "not finalized"
        if not final
        else "finalized from older parts: run `relkd teacher cache finalize` again"
    )
    lines.append(f"  {total} pairs committed; {state}")
    return "\n".join(lines)


def merge_requests(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The union of two requests ``{"splits", "pool", "pool_ratio"}``. The pool subsets are
    nested (relkd/data/pool_subset.py), so their union is the larger ratio; ``pool_ratio`` None
    with ``pool`` (or a request written before pool_ratio existed) is the whole pool."""
    pools = [r for r in (old, new) if r.get("pool")]
    ratios = [r.get("pool_ratio") for r in pools]
    return {
        "splits": sorted(set(old["splits"]) | set(new["splits"])),
        "pool": bool(pools),
        "pool_ratio": None if not pools or None in ratios else max(float(r) for r in ratios),
    }


def pool_text(request: Mapping[str, Any]) -> str:
    if not request.get("pool"):
        return ""
    ratio = request.get("pool_ratio")
    return " + pool" if ratio is None else f" + pool x{ratio:g}"


def parts_digest(parts: list[dict[str, Any]]) -> str:
    """One hash of the committed parts (names and sha256s): the finalized layout records it,
    so a reader notices parts committed after finalize."""
    return fingerprint_of({"parts": sorted((p["file"], p["sha256"]) for p in parts)})


def _versioned(out: Path, k: int) -> Path:
    return out if k == 1 else out.with_name(f"{out.name}.v{k}")


class TeacherCacheWriter:
    """The writing side of one shard of a cache (use :meth:`open`, then ``with writer.lock()``)."""

    def __init__(self, root: Path, manifest: dict[str, Any], shard: Shard) -> None:
        self.root = root
        self.manifest = manifest
        self.shard = shard
        self.shard_path = root / "shards" / f"{shard.name}.json"
        self.part_dir = root / "parts" / shard.name
        self._state: dict[str, Any] | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        out: str | Path,
        fingerprint: Mapping[str, Any],
        *,
        shard: Shard,
        force: bool = False,
        info: Mapping[str, Any] | None = None,
    ) -> TeacherCacheWriter:
        """The cache at ``out`` if its fingerprint is ``fingerprint``, created when absent.

        A cache with another fingerprint is refused (StaleArtifactError listing what differs);
        with ``force`` the first of ``out.v2``, ``out.v3``, ... that is absent or matches is used
        instead, so the old cache is never touched. A folder that is not a teacher cache is
        refused whatever ``force`` says.
        """
        out = Path(out)
        fp = dict(fingerprint)
        first_refusal: str | None = None
        for k in range(1, MAX_VERSIONS + 1):
            root = _versioned(out, k)
            manifest = cls._create_or_read(root, fp, info or {})
            if manifest.get("schema_version") == VERSION and manifest.get("fingerprint") == fp:
                return cls(root, manifest, shard)
            if first_refusal is None:
                diffs = input_differences(manifest.get("fingerprint") or {}, fp)
                if manifest.get("schema_version") != VERSION:
                    diffs = [f"schema_version {manifest.get('schema_version')} != {VERSION}"]
                first_refusal = (
                    f"{root}: teacher cache was written with another fingerprint: "
                    + "; ".join(diffs[:4])
                    + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else "")
                    + ". Pass --force to write a new versioned cache beside it, or --out elsewhere"
                )
            if not force:
                raise StaleArtifactError(first_refusal)
        raise DataError(f"{out}: {MAX_VERSIONS} versions exist; choose another --out")

    @staticmethod
    def _create_or_read(root: Path, fp: dict[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
        if root.exists():
            if not root.is_dir():
                raise DataError(f"{root}: exists and is not a folder")
            if (root / MANIFEST).is_file():
                return read_cache_manifest(root)
            # another shard may be creating it right now (only its temporary file is there)
            if any(not p.name.startswith(TMP_PREFIX) for p in root.iterdir()):
                return read_cache_manifest(root)  # a folder that is not a cache: refused here
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "kind": KIND,
            "schema_version": VERSION,
            "relkd_version": __version__,
            "fingerprint": fp,
            "fingerprint_sha256": fingerprint_of(fp),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **dict(info),
            "finalized": None,
        }
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        create_exclusive(root / MANIFEST, text.encode())  # False: another shard created it
        return read_cache_manifest(root)

    # -- the shard's state ---------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this shard for the calling process (released on exit or kill)."""
        path = self.shard_path.with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataError(
                    f"{path}: shard {self.shard.index}/{self.shard.count} is being annotated by "
                    "another process; wait for it or run another shard"
                ) from None
            self._clean_temporaries()
            yield
        finally:
            os.close(fd)

    def _clean_temporaries(self) -> None:
        """Remove this shard's temporary files left by a killed run (ours by name and place)."""
        leftovers = [
            *(self.part_dir.glob(f"{TMP_PREFIX}*") if self.part_dir.is_dir() else []),
            *self.shard_path.parent.glob(f"{TMP_PREFIX}{self.shard_path.name}.*"),
        ]
        for tmp in leftovers:
            tmp.unlink(missing_ok=True)

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            if self.shard_path.is_file():
                self._state = read_shard(self.shard_path)
            else:
                self._state = {
                    "shard": [self.shard.index, self.shard.count],
                    "request": {"splits": [], "pool": False, "pool_ratio": None},
                    "parts": [],
                    "complete": False,
                    "runs": [],
                }
        return self._state

    def committed_pair_ids(self) -> np.ndarray:
        """Sorted pair_ids committed by any shard (a re-run with other sharding skips them too).
        Each listed part is checked against its record (size and mtime, re-hashed if changed)."""
        ids = []
        for path in shard_files(self.root):
            for part in read_shard(path).get("parts", []):
                file = self.root / part["file"]
                check_file_record(file, part, path, PART_HINT)
                try:
                    ids.append(pq.read_table(file, columns=["pair_id"]).column(0).to_numpy())
                except (OSError, pa.ArrowInvalid) as exc:
                    raise DataError(f"{file}: cannot read teacher cache part ({exc})") from None
        return np.sort(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)

    def begin(self, request: Mapping[str, Any], requested: int) -> None:
        """Record this run's request (unioned with earlier ones) before annotating."""
        st = self.state
        st["request"] = merge_requests(st["request"], request)
        st["complete"] = False
        st["runs"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "requested": requested})
        atomic_write_json(self.shard_path, st)

    def commit(self, ann: Annotation) -> dict[str, Any]:
        """Write one part atomically, then list it in the shard file; returns its record."""
        st = self.state
        seq = len(st["parts"])
        path = self.part_dir / f"part-{seq:06d}.parquet"
        table = part_table(ann)
        atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        record = {
            "file": path.relative_to(self.root).as_posix(),
            "rows": len(ann),
            "pair_id_min": int(ann.pair_id.min()),
            "pair_id_max": int(ann.pair_id.max()),
            **file_record(path),
        }
        st["parts"].append(record)
        atomic_write_json(self.shard_path, st)
        return record

    def finish(self, complete: bool, stats: Mapping[str, Any]) -> None:
        """Record the run's figures; ``complete``: the shard's whole request is committed."""
        st = self.state
        st["complete"] = complete
        st["runs"][-1].update(stats)
        atomic_write_json(self.shard_path, st)


def part_table(ann: Annotation) -> pa.Table:
    """An Annotation as the columns of a part file (docs/teacher_cache.md)."""
    n = len(ann)
    cols: dict[str, pa.Array] = {
        "pair_id": pa.array(ann.pair_id, pa.int64()),
        "logits": fixed_list(ann.logits.astype(np.float32), pa.float32()),
        "probs": fixed_list(ann.probs.astype(np.float32), pa.float32()),
        "score": pa.array(ann.score.astype(np.float32), pa.float32()),
        "aspects": fixed_list(ann.aspects.astype(np.int8), pa.int8()),
        "verdict": pa.array(ann.verdict.astype(np.int8), pa.int8()),
        "cot_ok": pa.array(ann.cot_ok.astype(bool), pa.bool_()),
        "cot": pa.array(ann.cot, pa.string()) if ann.cot is not None else pa.nulls(n, pa.string()),
    }
    if ann.hidden is not None:
        h = np.ascontiguousarray(ann.hidden, dtype=np.float16)
        cols["hidden"] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(h.shape[1] * 2), n, [None, pa.py_buffer(h.tobytes())]
        )
    if not np.isfinite(ann.logits).all():
        raise DataError("teacher produced NaN or infinite logits; check the model and precision")
    return pa.table(cols)


def fixed_list(values: np.ndarray, typ: pa.DataType) -> pa.FixedSizeListArray:
    """A [N, K] array as an Arrow fixed_size_list<typ>[K] column."""
    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), typ), values.shape[1])
