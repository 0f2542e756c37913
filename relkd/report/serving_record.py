"""A run's serving figures, ``serving.json`` (written by relkd/serving/latency_probe.py):
``{"ms_per_pair": float, "batch": int, "threads": int, "device": str, "params": int}``.
Only ``ms_per_pair`` is required for the quality-against-latency chart; the rest is shown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relkd.errors import DataError
from relkd.report.json_object import read_json_object

SERVING_FILE = "serving.json"


@dataclass(frozen=True)
class ServingRecord:
    ms_per_pair: float
    batch: int | None = None
    threads: int | None = None
    device: str | None = None
    params: int | None = None


def _optional_int(path: Path, data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise DataError(f"{path}: key {key}: expected an integer, got {value!r}")
    return value


def _optional_str(path: Path, data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{path}: key {key}: expected a string, got {value!r}")
    return value


def read_serving(run_dir: Path) -> ServingRecord | None:
    """The run's ``serving.json``, None when it has none; DataError naming the file and the key
    when it is malformed."""
    path = Path(run_dir) / SERVING_FILE
    if not path.is_file():
        return None
    data = read_json_object(path)
    ms = data.get("ms_per_pair")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms) or ms <= 0:
        raise DataError(f"{path}: key ms_per_pair: expected a positive number, got {ms!r}")
    return ServingRecord(
        ms_per_pair=float(ms),
        batch=_optional_int(path, data, "batch"),
        threads=_optional_int(path, data, "threads"),
        device=_optional_str(path, data, "device"),
        params=_optional_int(path, data, "params"),
    )
