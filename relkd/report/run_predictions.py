"""A run's per-pair predictions (``predictions/<split>.parquet``, relkd/runs/run_report.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from relkd.errors import DataError
from relkd.report.run_record import REPORT_SPLIT

_COLUMNS = ("pair_id", "label", "probs")


@dataclass(frozen=True)
class RunPredictions:
    pair_id: np.ndarray  # int64 [N]
    label: np.ndarray  # int64 [N], class index in the scheme's order
    probs: np.ndarray  # float32 [N, K]


def predictions_path(run_dir: Path, split: str = REPORT_SPLIT) -> Path:
    return Path(run_dir) / "predictions" / f"{split}.parquet"


def read_predictions(run_dir: Path, split: str = REPORT_SPLIT) -> RunPredictions | None:
    """The split's predictions, None when the run wrote none; DataError naming the file when it
    is unreadable or lacks a column."""
    path = predictions_path(run_dir, split)
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path, columns=list(_COLUMNS))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read predictions ({exc})") from None
    probs_type = table.schema.field("probs").type
    if not pa.types.is_fixed_size_list(probs_type):
        raise DataError(f"{path}: column probs is {probs_type}, expected fixed_size_list")
    k = probs_type.list_size
    probs = table.column("probs").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return RunPredictions(
        pair_id=table.column("pair_id").to_numpy().astype(np.int64),
        label=table.column("label").to_numpy().astype(np.int64),
        probs=probs.reshape(-1, k).astype(np.float32),
    )
