"""A v1 teacher cache writer for test fixtures and benchmarks.

relkd writes v2 caches (``relkd teacher annotate``: relkd/teacher_cache/cache_writer.py) and
still reads v1 ones (one Parquet file plus manifest.json, the format docs/teacher_cache.md
describes). Tests need small caches with hand-chosen logits, CoT and aspects, so the v1 writer
lives here, outside the package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relkd import __version__
from relkd.artifacts.atomic_files import (
    atomic_write_json,
    check_replaceable,
    move_into_place,
    staged_folder,
)
from relkd.artifacts.manifest_file import read_manifest_file
from relkd.data.label_scheme import LabelScheme, get_label_scheme
from relkd.data.manifest import sha256_file
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import DataError
from relkd.teacher_cache.cache_writer import fixed_list
from relkd.teacher_cache.teacher_cache import (
    ASPECT_COLUMNS,
    MANIFEST,
    TEACHER_CACHE_KIND,
    TEACHER_CACHE_VERSION,
    TEACHER_FILE,
    DatasetRef,
    TeacherCache,
    dataset_fingerprint,
)


def write_v1_cache(
    root: str | Path,
    pair_id: Sequence[int] | np.ndarray,
    logits: np.ndarray,
    cot: Sequence[str | None] | None = None,
    aspects: Mapping[str, Sequence[str | None]] | np.ndarray | None = None,
    *,
    scheme: LabelScheme | str,
    model: str | Mapping[str, Any],
    prompt_template: str,
    dataset: DatasetRef,
    overwrite: bool = False,
) -> TeacherCache:
    """Write a v1 (one Parquet file) teacher cache; probabilities (softmax) and the expected
    score come from the logits.

    Args:
        pair_id: int64 ids, one per row, unique.
        logits: float array ``[rows, K]`` in the scheme's label order.
        cot: optional chain-of-thought text per row (None where absent).
        aspects: optional ``{aspect: values}`` for relkd.data.schema.ASPECTS with values in
            ASPECT_VALUES or None, or an int array ``[rows, 4]`` of codes (-1 = missing).
        scheme: the label scheme (object or name) the logits index.
        model: teacher id/path, or a dict with ``id`` and e.g. ``revision``/``sha256``.
        prompt_template: the prompt template text; only its hash is stored.
        dataset: the dataset the pair_ids belong to (folder, CanonicalDataset or Manifest).
        overwrite: replace an existing cache at ``root``.
    """
    scheme = get_label_scheme(scheme) if isinstance(scheme, str) else scheme
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        if not overwrite:
            raise DataError(
                f"{root}: already exists and is not empty; pass overwrite to replace it"
            )
        _check_replaceable(root)
    pid = np.asarray(pair_id, dtype=np.int64)
    lg = np.asarray(logits, dtype=np.float32)
    n = len(pid)
    if lg.ndim != 2 or lg.shape != (n, scheme.num_labels):
        raise ValueError(
            f"logits must have shape ({n}, {scheme.num_labels}) for scheme {scheme.name!r}, "
            f"got {lg.shape}"
        )
    if not np.isfinite(lg).all():
        raise ValueError("logits contain NaN or infinite values")
    if len(np.unique(pid)) != n:
        raise ValueError("pair_id values must be unique")
    probs = _softmax(lg.astype(np.float64))
    columns: dict[str, pa.Array] = {
        "pair_id": pa.array(pid, pa.int64()),
        "logits": fixed_list(lg.astype(np.float32), pa.float32()),
        "probs": fixed_list(probs.astype(np.float32), pa.float32()),
        "score": pa.array(scheme.expected_score(probs).astype(np.float32), pa.float32()),
    }
    if cot is not None:
        if len(cot) != n:
            raise ValueError(f"cot has {len(cot)} rows, expected {n}")
        columns["cot"] = pa.array(cot, pa.string())
    else:
        columns["cot"] = pa.nulls(n, pa.string())
    for name, arr in _aspect_arrays(aspects, n).items():
        columns[name] = arr
    table = pa.table(columns)

    if isinstance(model, str):
        model_info: dict[str, Any] = {"id": model}
    else:
        model_info = dict(model)
        if "id" not in model_info:
            raise ValueError("model must be a string or a mapping with an 'id' key")
    with staged_folder(root) as staging:
        pq.write_table(table, staging / TEACHER_FILE, compression="zstd")
        manifest = {
            "kind": TEACHER_CACHE_KIND,
            "schema_version": TEACHER_CACHE_VERSION,
            "relkd_version": __version__,
            "label_scheme": scheme.name,
            "labels": list(scheme.labels),
            "model": model_info,
            "prompt_template": {
                "sha256": hashlib.sha256(prompt_template.encode()).hexdigest(),
                "chars": len(prompt_template),
            },
            "dataset": dataset_fingerprint(dataset),
            "rows": n,
            "file": TEACHER_FILE,
            "sha256": sha256_file(staging / TEACHER_FILE),
            "has_cot": cot is not None,
            "has_aspects": aspects is not None,
        }
        atomic_write_json(staging / MANIFEST, manifest)
        move_into_place(staging, root, replace=True)
    return TeacherCache(root, manifest)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_replaceable(root: Path) -> None:
    """``overwrite`` replaces a teacher cache only: any other folder is refused untouched."""
    try:
        kind = read_manifest_file(root / MANIFEST, "missing").get("kind")
    except DataError:
        kind = None
    what = f"relkd teacher cache (no {MANIFEST} of kind {TEACHER_CACHE_KIND!r})"
    check_replaceable(root, root, kind == TEACHER_CACHE_KIND, what)


def _aspect_arrays(
    aspects: Mapping[str, Sequence[str | None]] | np.ndarray | None, n: int
) -> dict[str, pa.Array]:
    if aspects is None:
        return {c: pa.nulls(n, pa.string()) for c in ASPECT_COLUMNS}
    out: dict[str, pa.Array] = {}
    if isinstance(aspects, np.ndarray):
        codes = np.asarray(aspects, dtype=np.int64)
        if codes.shape != (n, len(ASPECTS)):
            raise ValueError(
                f"aspects codes must have shape ({n}, {len(ASPECTS)}), got {codes.shape}"
            )
        if ((codes < -1) | (codes >= len(ASPECT_VALUES))).any():
            raise ValueError(f"aspect codes must be -1 or index into {ASPECT_VALUES}")
        values = pa.array(ASPECT_VALUES, pa.string())
        for j, col in enumerate(ASPECT_COLUMNS):
            c = codes[:, j]
            out[col] = values.take(pa.array(np.where(c < 0, 0, c), mask=c < 0))
        return out
    unknown = sorted(set(aspects) - set(ASPECTS))
    if unknown:
        raise ValueError(f"unknown aspect(s) {unknown}; known: {list(ASPECTS)}")
    for a, col in zip(ASPECTS, ASPECT_COLUMNS, strict=True):
        vals = aspects.get(a)
        if vals is None:
            out[col] = pa.nulls(n, pa.string())
            continue
        if len(vals) != n:
            raise ValueError(f"aspects[{a!r}] has {len(vals)} rows, expected {n}")
        arr = pa.array(vals, pa.string())
        bad = set(pc.unique(arr.drop_null()).to_pylist()) - set(ASPECT_VALUES)
        if bad:
            raise ValueError(f"aspects[{a!r}] has values {sorted(bad)} outside {ASPECT_VALUES}")
        out[col] = arr
    return out
