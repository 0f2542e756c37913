"""The Walmart pool-size curve: test quality against the size of the teacher-labelled pool
(``data.pool_ratio``, the key experiments/ablations/walmart_pool.yaml varies), mean ± std over
seeds. Runs form one curve when their configs differ in nothing but that key and the seed."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from omegaconf import OmegaConf

from relkd.metrics.relevance_metrics import NDCG_KEY
from relkd.pipeline.comparison_table import metric
from relkd.pipeline.pipeline_runner import step_fingerprint
from relkd.report.run_record import RunRecord

POOL_KEY = "data.pool_ratio"
# (header, metrics key) of the curve's panels
POOL_METRICS: tuple[tuple[str, str], ...] = (("NDCG@10", NDCG_KEY), ("class-acc", "class_accuracy"))


@dataclass
class PoolSeries:
    """One curve: for each distinct value of the key, the runs (seeds) at that value."""

    label: str
    key: str
    runs: dict[float, list[RunRecord]] = field(default_factory=dict)

    @property
    def values(self) -> list[float]:
        return sorted(self.runs)

    def stats(self, metric_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, mean, std) over the runs at each value that report ``metric_key`` on test (std 0
        for a single seed); values without any are left out."""
        xs, means, stds = [], [], []
        for x in self.values:
            found = [
                v for r in self.runs[x] if (v := metric(r.split(), None, metric_key)) is not None
            ]
            if found:
                xs.append(x)
                means.append(float(np.mean(found)))
                stds.append(float(np.std(found, ddof=1)) if len(found) > 1 else 0.0)
        return np.array(xs), np.array(means), np.array(stds)


def _series_key(run: RunRecord, key: str) -> str:
    """What the run computes, less ``key`` and the seed (the pipeline's config fingerprint)."""
    cfg = copy.deepcopy(run.config)
    OmegaConf.update(cfg, key, None, force_add=True)
    cfg.seed = 0
    return step_fingerprint(cfg)


def _label(run: RunRecord) -> str:
    """The recipe a curve shows: student, encoder and the loss terms with a weight."""
    weights = run.select("loss.weights", {}) or {}
    terms = "+".join(k for k, v in weights.items() if v) or "no loss terms"
    student = run.select("model.student", "") or run.select("task", "")
    return f"{student} {run.select('model.encoder', '')}: {terms}".strip()


def pool_curves(runs: Sequence[RunRecord], key: str = POOL_KEY) -> list[PoolSeries]:
    """Every set of runs that differ only in ``key`` (and seed) and take at least two values of
    it; runs where ``key`` is null (the whole pool, or none) are left out."""
    groups: dict[str, PoolSeries] = {}
    for run in runs:
        value = run.select(key)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        series = groups.setdefault(_series_key(run, key), PoolSeries(_label(run), key))
        series.runs.setdefault(float(value), []).append(run)
    curves = [s for s in groups.values() if len(s.runs) >= 2]
    seen: dict[str, int] = {}
    for s in curves:  # two recipes with one label (e.g. different learning rates)
        seen[s.label] = seen.get(s.label, 0) + 1
        if seen[s.label] > 1:
            s.label = f"{s.label} #{seen[s.label]}"
    return curves
