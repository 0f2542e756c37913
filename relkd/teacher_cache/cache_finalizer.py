"""``relkd teacher cache finalize``: check a v2 teacher cache and build its read-optimised layout.

Finalize reads every shard's committed parts, checks each part's sha256, checks that every pair
the shards were asked for (the union of their requests, ``merge_requests``; a ``pool_ratio``
selects its pool subset again from the dataset) is present exactly once, and writes ``final/``
(staged, then renamed into place)::

    pair_id.npy      int64 [N], sorted
    logits.npy       float32 [N, K]     probs.npy float32 [N, K]     score.npy float32 [N]
    aspects.npy      int8 [N, 4]        verdict.npy int8 [N]         cot_ok.npy bool [N]
    cot_offsets.npy  int64 [N + 1]      cot_bytes.npy uint8: the CoT texts, UTF-8, back to back
    cot_null.npy     bool [N]           True where the teacher wrote no CoT for the pair
    hidden.npy       float16 [N, H]     (when annotated with --hidden)

Every array is memory-mapped by readers, so N DDP ranks times M DataLoader workers share the
page cache instead of each holding a copy; the manifest records each file's bytes and sha256.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relkd.artifacts.atomic_files import (
    atomic_write_json,
    file_record,
    move_into_place,
    sha256_file,
    staged_folder,
)
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.pool_subset import pool_mask
from relkd.errors import DataError, StaleArtifactError
from relkd.teacher_cache.cache_writer import (
    MANIFEST,
    PART_HINT,
    VERSION,
    listed_parts,
    merge_requests,
    parts_digest,
    read_cache_manifest,
    read_shard,
    shard_files,
)

log = logging.getLogger(__name__)

FINAL_DIR = "final"


def requested_pairs(
    dataset: CanonicalDataset, splits: list[str], pool: bool, pool_ratio: float | None = None
) -> np.ndarray:
    """Sorted pair_ids a request covers: labelled pairs of ``splits``, plus with ``pool`` the
    unlabelled pairs ``pool_ratio`` selects (relkd.data.pool_subset; None: every one)."""
    t = dataset.table("pairs", ["pair_id", "label", "split"])
    pid = t.column("pair_id").to_numpy().astype(np.int64)
    labelled = pc.is_valid(t.column("label")).to_numpy(zero_copy_only=False)
    split = t.column("split")
    keep = labelled & pc.is_in(split, value_set=pa.array(splits, pa.string())).to_numpy(
        zero_copy_only=False
    )
    if pool:
        train = pc.equal(split, "train").to_numpy(zero_copy_only=False)
        keep |= pool_mask(pid, labelled, train, pool_ratio)
    return np.sort(pid[keep])


def _check_dataset(root: Path, manifest: dict[str, Any], dataset: CanonicalDataset) -> None:
    want = manifest["fingerprint"]["dataset"]["tables"]
    have = dataset.verify()
    changed = [t for t in sorted(want) if have.get(t) != want[t]]
    if changed:
        raise StaleArtifactError(
            f"{root / MANIFEST}: dataset {dataset.root} table(s) {changed} differ from the ones "
            "this cache was annotated from; point --data at the original dataset"
        )


def finalize_cache(root: str | Path, data: str | Path | None = None) -> dict[str, Any]:
    """Check and finalize the cache at ``root`` (see the module docstring); returns the
    ``finalized`` manifest section. Part checksums are always verified; a cache already
    finalized from the same parts is then left as is. ``data`` defaults to the dataset folder recorded when the cache was created."""
    root = Path(root)
    manifest = read_cache_manifest(root)
    if manifest.get("schema_version") != VERSION:
        raise DataError(
            f"{root / MANIFEST}: schema_version {manifest.get('schema_version')} caches are "
            "written in their final form; nothing to finalize"
        )
    shards = shard_files(root)
    if not shards:
        raise DataError(
            f"{root}: no shard has committed anything yet (no {root / 'shards'}/*.json)"
        )
    parts = listed_parts(root)
    digest = parts_digest(parts)
    done = manifest.get("finalized")
    for part in parts:
        file = root / part["file"]
        if not file.is_file():
            raise DataError(f"{file}: missing (listed in {root / 'shards'})")
        if sha256_file(file) != part["sha256"]:
            raise DataError(
                f"{file}: corrupt, sha256 differs from the one recorded in {root / 'shards'}; "
                f"{PART_HINT}"
            )
    if done and done.get("parts_digest") == digest and (root / FINAL_DIR).is_dir():
        return done  # already built from exactly these (verified) parts
    dataset = CanonicalDataset(data if data is not None else manifest["dataset"]["root"])
    _check_dataset(root, manifest, dataset)
    t0 = time.perf_counter()

    request: dict[str, Any] = {"splits": [], "pool": False, "pool_ratio": None}
    incomplete = []
    counts: set[int] = set()
    seen: set[tuple[int, int]] = set()
    for path in shards:
        st = read_shard(path)
        request = merge_requests(request, st["request"])
        i, n = st["shard"]
        counts.add(n)
        seen.add((i, n))
        if not st.get("complete"):
            incomplete.append(f"{i}/{n}")
    absent = [f"{i}/{n}" for n in sorted(counts) for i in range(n) if (i, n) not in seen]

    tables = []
    for part in parts:
        file = root / part["file"]
        try:
            table = pq.read_table(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"{file}: cannot read teacher cache part ({exc})") from None
        if table.num_rows != part["rows"]:
            raise DataError(f"{file}: {table.num_rows} rows, its shard file records {part['rows']}")
        tables.append(table.append_column("part", pa.array(np.full(table.num_rows, len(tables)))))
    if not tables:
        raise DataError(f"{root}: no committed parts to finalize")
    table = pa.concat_tables(tables, promote_options="default")
    pid = table.column("pair_id").to_numpy()
    order = np.argsort(pid, kind="stable")
    spid = pid[order]
    dup = np.flatnonzero(spid[1:] == spid[:-1])
    if len(dup):
        part_of = table.column("part").to_numpy()[order]
        a, b = parts[int(part_of[dup[0]])]["file"], parts[int(part_of[dup[0] + 1])]["file"]
        raise DataError(
            f"{root}: {len(dup)} pair(s) committed twice, e.g. pair_id {int(spid[dup[0]])} in {a} "
            f"and {b} (two processes annotated the same shard with different --shard counts?)"
        )
    expected = requested_pairs(dataset, request["splits"], request["pool"], request["pool_ratio"])
    missing = np.setdiff1d(expected, spid, assume_unique=True)
    extra = np.setdiff1d(spid, expected, assume_unique=True)
    if len(missing):
        hint = []
        if absent:
            hint.append(f"shard(s) {', '.join(absent)} never ran")
        if incomplete:
            hint.append(f"shard(s) {', '.join(incomplete)} did not finish")
        raise DataError(
            f"{root}: {len(missing)} of {len(expected)} requested pairs are missing, e.g. pair_id "
            f"{int(missing[0])}"
            + (f" ({'; '.join(hint)})" if hint else "")
            + "; run annotate again"
        )
    if len(extra):
        raise DataError(
            f"{root}: {len(extra)} pair(s) not requested by any shard, e.g. {int(extra[0])}"
        )

    with staged_folder(root / FINAL_DIR) as staging:
        files = _write_final(staging, table.take(pa.array(order)))
        move_into_place(staging, root / FINAL_DIR, replace=True)
    final = {
        "rows": len(spid),
        "parts": len(parts),
        "parts_digest": digest,
        "request": request,
        "files": {name: file_record(root / FINAL_DIR / name) for name in files},
        **files_meta(table),
        "finalized_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    manifest["finalized"] = final
    atomic_write_json(root / MANIFEST, manifest)
    log.info("finalized %s: %d pairs from %d parts", root, len(spid), len(parts))
    return final


def files_meta(table: pa.Table) -> dict[str, Any]:
    has_hidden = "hidden" in table.column_names
    return {
        "has_cot": bool(table.column("cot").null_count < table.num_rows),
        "has_hidden": has_hidden,
        "hidden_dim": table.schema.field("hidden").type.byte_width // 2 if has_hidden else 0,
    }


def _write_final(folder: Path, table: pa.Table) -> list[str]:
    """The sorted part rows as .npy arrays (and CoT bytes); returns the file names."""
    n = table.num_rows

    def fixed(name: str, dtype: str) -> np.ndarray:
        flat = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return flat.astype(dtype).reshape(n, -1)

    arrays: dict[str, np.ndarray] = {
        "pair_id": table.column("pair_id").to_numpy().astype(np.int64),
        "logits": fixed("logits", "float32"),
        "probs": fixed("probs", "float32"),
        "score": table.column("score").to_numpy().astype(np.float32),
        "aspects": fixed("aspects", "int8"),
        "verdict": table.column("verdict").to_numpy().astype(np.int8),
        "cot_ok": table.column("cot_ok").to_numpy(zero_copy_only=False).astype(bool),
    }
    cot = table.column("cot").combine_chunks()
    arrays["cot_null"] = cot.is_null().to_numpy(zero_copy_only=False).astype(bool)
    filled = pc.fill_null(cot, "").cast(pa.large_string())
    offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[
        filled.offset : filled.offset + n + 1
    ]
    arrays["cot_offsets"] = (offsets - offsets[0]).astype(np.int64)
    data = filled.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    arrays["cot_bytes"] = raw[offsets[0] : offsets[-1]].copy()
    if "hidden" in table.column_names:
        h = table.column("hidden").combine_chunks()
        width = h.type.byte_width // 2
        buf = np.frombuffer(h.buffers()[1], dtype=np.float16)
        arrays["hidden"] = buf[h.offset * width : (h.offset + n) * width].reshape(n, width).copy()
    names = []
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(arr))
        names.append(f"{name}.npy")
    return names
