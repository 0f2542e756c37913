"""Per-pair predictions of one model on one split: the file every paired comparison reads.

A run writes ``predictions/<split>.parquet`` beside its ``metrics.json`` (relkd/runs/run_report.py),
and the BM25 baseline ``predictions.parquet`` beside its own; one row per evaluated pair:

``pair_id`` (int64), ``label`` (class index in the scheme's order), ``query_index`` (the pair's
query, any int64 code constant within a query), ``bucket`` (index into
:data:`relkd.data.schema.BUCKETS`), ``score`` (float32, higher = more relevant), and, for a
model with class probabilities, ``probs`` (fixed-size list of float32). A CoT teacher adds its
generated ``cot`` text and parsed ``aspect_pred`` codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from relkd.artifacts.atomic_files import atomic_write
from relkd.errors import DataError

REQUIRED = ("pair_id", "label", "query_index", "bucket", "score")


@dataclass(frozen=True)
class Predictions:
    """One model's predictions on one split, rows sorted by ``pair_id``."""

    pair_id: np.ndarray  # int64 [N]
    label: np.ndarray  # int64 [N]
    query_index: np.ndarray  # int64 [N]
    bucket: np.ndarray  # int64 [N]
    score: np.ndarray  # float64 [N]
    probs: np.ndarray | None  # float32 [N, K], None for a score-only model (BM25)
    source: str = ""  # the file it was read from, for messages


def _fixed(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_predictions(path: Path, rows: dict[str, Any]) -> None:
    """Write ``rows`` (``pair_id``, ``labels``, ``query_index``, ``bucket``, ``score``, and
    optionally ``probs``, ``cot``, ``aspect_pred``) atomically as one Parquet file."""
    columns = {
        "pair_id": np.asarray(rows["pair_id"]).astype("int64"),
        "label": np.asarray(rows["labels"]).astype("int64"),
        "query_index": np.asarray(rows["query_index"]).astype("int64"),
        "bucket": np.asarray(rows["bucket"]).astype("int64"),
        "score": np.asarray(rows["score"]).astype("float32"),
    }
    if rows.get("probs") is not None:
        columns["probs"] = _fixed(np.asarray(rows["probs"]).astype("float32"))
    if "cot" in rows:
        columns["cot"] = pa.array([str(t) for t in rows["cot"]], pa.string())
    if "aspect_pred" in rows:
        columns["aspect_pred"] = _fixed(np.asarray(rows["aspect_pred"]).astype("int8"))
    table = pa.table(columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_predictions(path: Path) -> Predictions:
    """The file's predictions sorted by pair_id; DataError naming the file and the column when it
    is unreadable or malformed."""
    path = Path(path)
    try:
        schema = pq.read_schema(path)
        wanted = [*REQUIRED, *(["probs"] if "probs" in schema.names else [])]
        missing = [c for c in REQUIRED if c not in schema.names]
        if missing:
            raise DataError(f"{path}: column {missing[0]}: missing (predictions need {REQUIRED})")
        table = pq.read_table(path, columns=wanted)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read predictions ({exc})") from None
    probs = None
    if "probs" in table.column_names:
        probs_type = table.schema.field("probs").type
        if not pa.types.is_fixed_size_list(probs_type):
            raise DataError(f"{path}: column probs: {probs_type}, expected fixed_size_list")
        flat = table.column("probs").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        probs = flat.reshape(-1, probs_type.list_size).astype(np.float32)
    pair_id = table.column("pair_id").to_numpy().astype(np.int64)
    order = np.argsort(pair_id, kind="stable")
    if np.any(pair_id[order][1:] == pair_id[order][:-1]):
        raise DataError(f"{path}: column pair_id: a pair is listed twice")

    def col(name: str, dtype: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False).astype(dtype)[order]

    return Predictions(
        pair_id=pair_id[order],
        label=col("label", "int64"),
        query_index=col("query_index", "int64"),
        bucket=col("bucket", "int64"),
        score=col("score", "float64"),
        probs=None if probs is None else probs[order],
        source=str(path),
    )
