"""One finished run folder as the report reads it: its metrics, its resolved config and, when a
latency probe has run, its serving figures. A corrupt file fails here, naming it, so the rest of
the report can trust what it is given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from relkd.errors import DataError
from relkd.report.json_object import read_json_object
from relkd.report.serving_record import ServingRecord, read_serving

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
# the split every section reads (the one the ablation tables compare)
REPORT_SPLIT = "test"


def shown_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it, else absolute: how the
    report names files, short but unambiguous."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return resolved.as_posix()


def is_run_dir(path: Path) -> bool:
    """A run folder holds a ``metrics.json`` and the ``config.yaml`` that produced it (a run's
    ``bm25/`` holds metrics alone and is not one)."""
    return (path / METRICS_FILE).is_file() and (path / CONFIG_FILE).is_file()


@dataclass
class RunRecord:
    """A run folder and how the report names it."""

    path: Path
    name: str  # unique within one report
    source: Path  # the report argument it was found under
    metrics: dict[str, Any]
    config: DictConfig
    serving: ServingRecord | None = None
    variant: str | None = None  # the ablation variant, when an ablation's results.csv names it
    seed: int | None = None

    def split(self, split: str = REPORT_SPLIT) -> Mapping[str, Any]:
        """A split's ``compute_relevance_metrics`` result, empty when the run did not evaluate it."""
        value = self.metrics.get(split)
        return value if isinstance(value, Mapping) else {}

    def select(self, key: str, default: Any = None) -> Any:
        """A dotted config key (``data.pool_ratio``), ``default`` when absent."""
        return OmegaConf.select(self.config, key, default=default)


def read_metrics(path: Path) -> dict[str, Any]:
    """``metrics.json``; each evaluated split must be a metrics result with an ``overall``."""
    metrics = read_json_object(path)
    for split in ("val", "test"):
        if split not in metrics:
            continue
        value = metrics[split]
        if not isinstance(value, dict) or not isinstance(value.get("overall"), dict):
            raise DataError(f"{path}: key {split}: expected a metrics object with 'overall'")
        if not isinstance(value.get("buckets", {}), dict):
            raise DataError(f"{path}: key {split}.buckets: expected an object")
    return metrics


def read_config(path: Path) -> DictConfig:
    try:
        config = OmegaConf.load(path)
    except Exception as exc:  # yaml and OmegaConf errors alike
        raise DataError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(config, DictConfig):
        raise DataError(f"{path}: top level must be a mapping")
    if "task" not in config:
        raise DataError(f"{path}: key task missing (not a relkd run config)")
    return config


def load_run(path: Path, name: str | None = None, source: Path | None = None) -> RunRecord:
    """Read one run folder (DataError naming the file when one is corrupt)."""
    path = Path(path)
    config = read_config(path / CONFIG_FILE)
    seed = config.get("seed")
    return RunRecord(
        path=path,
        name=name or f"{path.parent.name}/{path.name}",
        source=source or path,
        metrics=read_metrics(path / METRICS_FILE),
        config=config,
        serving=read_serving(path),
        seed=seed if isinstance(seed, int) else None,
    )
