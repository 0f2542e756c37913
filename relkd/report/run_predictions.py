"""A run's per-pair predictions (``predictions/<split>.parquet``; the format is
relkd/metrics/predictions_file.py's)."""

from __future__ import annotations

from pathlib import Path

from relkd.errors import DataError
from relkd.metrics.predictions_file import Predictions
from relkd.metrics.predictions_file import read_predictions as read_file
from relkd.report.run_record import REPORT_SPLIT


def predictions_path(run_dir: Path, split: str = REPORT_SPLIT) -> Path:
    return Path(run_dir) / "predictions" / f"{split}.parquet"


def read_predictions(run_dir: Path, split: str = REPORT_SPLIT) -> Predictions | None:
    """The split's predictions with class probabilities, None when the run wrote none; DataError
    naming the file when it is unreadable or lacks a column."""
    path = predictions_path(run_dir, split)
    if not path.is_file():
        return None
    preds = read_file(path)
    if preds.probs is None:
        raise DataError(f"{path}: column probs: missing (a run's predictions carry them)")
    return preds
