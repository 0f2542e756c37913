"""A paired difference between two models on the same evaluation pairs, with a 95 % interval.

Two recipes are compared on the queries both were evaluated on, never as two means: per query
``q``, each run's NDCG@10 (as :func:`~relkd.metrics.relevance_metrics.per_query_ndcg` computes
it, so the mean is the reported ``ndcg@10``) or its number of pairs whose argmax class is the
label (class-acc is a share of pairs, so a query weighs by its pairs). With ``S`` seeds of a model
its per-query value is the mean over its seeds. Then

- ΔNDCG@10 = mean over counted queries of (model − baseline);
- Δclass-acc = Σ_q (correct_model − correct_baseline) / Σ_q pairs_q.

**The interval** is a percentile bootstrap that resamples what varies between two runs of one
experiment: the queries (with replacement, the same draw for both models: that is the pairing)
and, within each model independently, its seeds. Resampling queries alone would call two seeds
of the *same* recipe different, because a seed moves every query at once; with one seed per
model it is the plain paired bootstrap over queries (what ``scipy.stats.bootstrap`` computes
for a paired sample, which resamples one level only and so cannot resample the seeds). With 3
seeds the seed level is coarse (a bootstrap of 3 values understates their spread by a factor of
2/3 in variance); the interval is then a floor on the uncertainty, and the seed std beside it in
the tables says how much the seeds alone vary.

A row whose interval contains 0 is not separated from its baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relkd.data.label_scheme import LabelScheme
from relkd.data.schema import BUCKETS
from relkd.errors import DataError
from relkd.metrics.predictions_file import Predictions
from relkd.metrics.relevance_metrics import NDCG_KEY, per_query_ndcg

CLASS_ACCURACY = "class_accuracy"
PAIRED_METRICS = (NDCG_KEY, CLASS_ACCURACY)
RESAMPLES = 10_000
CONFIDENCE = 0.95
_CHUNK = 2_000  # bootstrap replicates drawn at once (memory: chunk x queries)


@dataclass(frozen=True)
class PairedDifference:
    """model − baseline on one metric and query group, with its bootstrap interval."""

    metric: str
    bucket: str | None  # None: every query
    delta: float
    low: float
    high: float
    queries: int
    seeds: tuple[int, int]  # (model, baseline)
    confidence: float = CONFIDENCE

    @property
    def separated(self) -> bool:
        """The interval excludes 0: the two models differ beyond query and seed noise."""
        return self.low > 0 or self.high < 0

    def cell(self) -> str:
        """``+0.0123 [+0.0051, +0.0190]``, with `` (0 in CI)`` when not separated."""
        text = f"{self.delta:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"
        return text if self.separated else f"{text} (0 in CI)"

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "bucket": self.bucket or "overall",
            "delta": self.delta,
            "low": self.low,
            "high": self.high,
            "separated": self.separated,
            "queries": self.queries,
            "seeds": list(self.seeds),
            "confidence": self.confidence,
        }


def nested_bootstrap(
    model: np.ndarray,
    baseline: np.ndarray,
    weight: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates of Σ_q w*_q (m̄*_q − b̄*_q) / Σ_q w*_q n_q.

    Args:
        model: (S_model, Q) per-seed, per-query values (NDCG, or correct pairs).
        baseline: (S_baseline, Q) the same for the baseline.
        weight: (Q,) each query's denominator (1 for a mean over queries, its pairs for a
            share of pairs).
        resamples: replicates; each redraws the Q queries (shared by both: paired) and each
            model's seeds, all with replacement.
        seed: the generator's seed, so a table is reproducible.

    Returns:
        (resamples,) replicate differences.
    """
    model, baseline = np.atleast_2d(model), np.atleast_2d(baseline)
    q = weight.shape[0]
    if model.shape[1] != q or baseline.shape[1] != q or q == 0:
        raise ValueError(f"shapes {model.shape}, {baseline.shape} and {weight.shape} disagree")
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)

    def seed_means(values: np.ndarray, b: int) -> np.ndarray:
        """(b, Q): each replicate's mean over its resampled seeds."""
        s = values.shape[0]
        if s == 1:
            return np.broadcast_to(values, (b, values.shape[1]))
        picks = rng.integers(0, s, size=(b, s))
        counts = (picks[:, :, None] == np.arange(s)).sum(axis=1) / s  # (b, S) seed weights
        return counts @ values

    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        diff = seed_means(model, b) - seed_means(baseline, b)  # (b, Q)
        drawn = rng.integers(0, q, size=(b, q))  # each replicate's queries, with replacement
        num = np.take_along_axis(diff, drawn, axis=1).sum(axis=1)
        out[start : start + b] = num / weight[drawn].sum(axis=1)
    return out


class PairedComparison:
    """A model's runs against a baseline's, aligned pair by pair on one split.

    Every run must have been evaluated on the same pairs with the same labels (the same
    dataset and split); the first baseline run defines the query of each pair and its bucket.
    """

    def __init__(
        self,
        model: Sequence[Predictions],
        baseline: Sequence[Predictions],
        scheme: LabelScheme,
    ) -> None:
        if not model or not baseline:
            raise ValueError("a paired comparison needs at least one run on each side")
        ref = baseline[0]
        for run in (*model, *baseline):
            if run.pair_id.shape != ref.pair_id.shape or not np.array_equal(
                run.pair_id, ref.pair_id
            ):
                raise DataError(
                    f"{run.source}: evaluated on other pairs than {ref.source}; a paired "
                    "comparison needs both models on the same dataset and split"
                )
            if not np.array_equal(run.label, ref.label):
                raise DataError(f"{run.source}: labels differ from {ref.source} on the same pairs")
        self.scheme = scheme
        self.model = list(model)
        self.baseline = list(baseline)
        self.queries, self.query_code = np.unique(ref.query_index, return_inverse=True)
        self.query_code = self.query_code.reshape(-1)
        nq = self.queries.size
        self.pairs = np.bincount(self.query_code, minlength=nq).astype(np.float64)
        bucket = np.zeros(nq, dtype=np.int64)
        bucket[self.query_code] = ref.bucket
        self.query_bucket = bucket

    def _in(self, bucket: str | None) -> np.ndarray:
        if bucket is None or bucket == "overall":
            return np.ones(self.queries.size, dtype=bool)
        if bucket not in BUCKETS:
            raise ValueError(f"bucket {bucket!r} not in {BUCKETS}")
        return self.query_bucket == BUCKETS.index(bucket)

    def _ndcg(self, runs: Sequence[Predictions]) -> tuple[np.ndarray, np.ndarray]:
        rows, counted = [], None
        for run in runs:
            _, values, counted = per_query_ndcg(self.scheme, run.label, run.score, self.query_code)
            rows.append(values)
        assert counted is not None
        return np.stack(rows), counted

    def _correct(self, runs: Sequence[Predictions]) -> np.ndarray | None:
        if any(run.probs is None for run in runs):
            return None
        return np.stack(
            [
                np.bincount(
                    self.query_code,
                    weights=(run.probs.argmax(axis=1) == run.label).astype(np.float64),
                    minlength=self.queries.size,
                )
                for run in runs
                if run.probs is not None
            ]
        )

    def difference(
        self,
        metric: str,
        bucket: str | None = None,
        resamples: int = RESAMPLES,
        confidence: float = CONFIDENCE,
        seed: int = 0,
    ) -> PairedDifference | None:
        """model − baseline on ``metric`` (``ndcg@10`` or ``class_accuracy``) over the queries
        of ``bucket`` (None: all); None when a side has no class probabilities (BM25) or the
        group has no query to count."""
        keep = self._in(bucket)
        if metric == NDCG_KEY:
            model, counted = self._ndcg(self.model)
            baseline, _ = self._ndcg(self.baseline)
            keep = keep & counted
            weight = np.ones(self.queries.size)
        elif metric == CLASS_ACCURACY:
            model, baseline = self._correct(self.model), self._correct(self.baseline)
            if model is None or baseline is None:
                return None
            weight = self.pairs
        else:
            raise ValueError(f"metric {metric!r} not in {PAIRED_METRICS}")
        if not keep.any():
            return None
        model, baseline, weight = model[:, keep], baseline[:, keep], weight[keep]
        delta = float((model.mean(axis=0) - baseline.mean(axis=0)).sum() / weight.sum())
        reps = nested_bootstrap(model, baseline, weight, resamples, seed)
        alpha = (1.0 - confidence) / 2.0
        low, high = np.quantile(reps, [alpha, 1.0 - alpha])
        return PairedDifference(
            metric=metric,
            bucket=None if bucket in (None, "overall") else bucket,
            delta=delta,
            low=float(low),
            high=float(high),
            queries=int(keep.sum()),
            seeds=(len(self.model), len(self.baseline)),
            confidence=confidence,
        )


# the paired columns every comparison table shows: (bucket, metric)
PAIRED_GROUPS: tuple[tuple[str | None, str], ...] = (
    (None, NDCG_KEY),
    ("tail", NDCG_KEY),
    (None, CLASS_ACCURACY),
    ("tail", CLASS_ACCURACY),
)


def against_baseline(
    runs: Mapping[str, Sequence[Predictions]],
    baseline: str,
    scheme: LabelScheme,
    groups: Sequence[tuple[str | None, str]] = PAIRED_GROUPS,
) -> dict[str, dict[tuple[str | None, str], PairedDifference | None]]:
    """Every other row of ``runs`` (name -> its seeds' predictions) against ``baseline``'s, on
    each (bucket, metric) of ``groups``; rows without predictions are left out."""
    base = runs.get(baseline)
    if not base:
        return {}
    out: dict[str, dict[tuple[str | None, str], PairedDifference | None]] = {}
    for name, preds in runs.items():
        if name == baseline or not preds:
            continue
        comp = PairedComparison(preds, base, scheme)
        out[name] = {(b, m): comp.difference(m, b) for b, m in groups}
    return out


def against_baseline_files(
    files: Mapping[str, Sequence[Path]],
    baseline: str,
    scheme: LabelScheme | str,
    groups: Sequence[tuple[str | None, str]] = PAIRED_GROUPS,
) -> dict[str, dict[tuple[str | None, str], PairedDifference | None]]:
    """:func:`against_baseline` on prediction files (name -> one file per seed); a row whose
    files are missing (runs older than the files) is left out."""
    from relkd.data.label_scheme import get_label_scheme
    from relkd.metrics.predictions_file import read_predictions

    loaded = {
        name: [read_predictions(p) for p in paths]
        for name, paths in files.items()
        if paths and all(Path(p).is_file() for p in paths)
    }
    scheme = get_label_scheme(scheme) if isinstance(scheme, str) else scheme
    return against_baseline(loaded, baseline, scheme, groups)
