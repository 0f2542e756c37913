"""Paired differences with a bootstrap interval (relkd/metrics/paired_difference.py), checked
against hand computations and against scipy.stats.bootstrap where both apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from relkd.data.label_scheme import get_label_scheme
from relkd.errors import DataError
from relkd.metrics import compute_relevance_metrics
from relkd.metrics.paired_difference import (
    PairedComparison,
    PairedDifference,
    nested_bootstrap,
)
from relkd.metrics.predictions_file import Predictions, read_predictions, write_predictions

ESCI = get_label_scheme("esci")  # gains Exact 1, Substitute 0.1, Complement 0.01, Irrelevant 0


def preds(query: list[int], label: list[int], score: list[float], probs=None) -> Predictions:
    n = len(label)
    return Predictions(
        pair_id=np.arange(n, dtype=np.int64),
        label=np.asarray(label, dtype=np.int64),
        query_index=np.asarray(query, dtype=np.int64),
        bucket=np.zeros(n, dtype=np.int64),
        score=np.asarray(score, dtype=np.float64),
        probs=None if probs is None else np.asarray(probs, dtype=np.float32),
        source="test",
    )


def test_two_queries_by_hand() -> None:
    """Per-query differences d = (0.1, 0.3): the bootstrap means are 0.1, 0.2 or 0.3 with
    probabilities 1/4, 1/2, 1/4, so the 2.5 % and 97.5 % points are 0.1 and 0.3."""
    reps = nested_bootstrap(np.array([[0.6, 0.9]]), np.array([[0.5, 0.6]]), np.ones(2))
    assert set(np.round(reps, 12)) == {0.1, 0.2, 0.3}
    assert abs(np.mean(np.isclose(reps, 0.2)) - 0.5) < 0.02
    assert np.quantile(reps, [0.025, 0.975]) == pytest.approx([0.1, 0.3])


def test_a_share_of_pairs_weighs_queries_by_their_pairs() -> None:
    """Class-acc over q1 (2 pairs: model 2 right, baseline 1) and q2 (4 pairs: 1 and 3):
    Δ = (2 + 1 - 1 - 3) / 6 = -1/6; the replicates are {q1,q1} +1/2, {q2,q2} -1/2, {q1,q2}
    -1/6."""
    comp = PairedComparison(
        [preds([0, 0, 1, 1, 1, 1], [0, 1, 0, 1, 2, 3], [0] * 6, np.eye(4)[[0, 1, 0, 0, 0, 0]])],
        [preds([0, 0, 1, 1, 1, 1], [0, 1, 0, 1, 2, 3], [0] * 6, np.eye(4)[[0, 0, 0, 1, 2, 0]])],
        ESCI,
    )
    diff = comp.difference("class_accuracy")
    assert diff is not None
    assert diff.delta == pytest.approx(-1 / 6)
    assert (diff.low, diff.high) == pytest.approx((-0.5, 0.5))
    assert not diff.separated and diff.cell().endswith("(0 in CI)")
    assert diff.queries == 2 and diff.seeds == (1, 1)


def test_delta_is_the_difference_of_the_reported_metrics() -> None:
    rng = np.random.default_rng(0)
    q = np.repeat(np.arange(40), 8)
    label = rng.integers(0, 4, q.size)
    runs = [
        preds(q, label, rng.normal(size=q.size), rng.dirichlet(np.ones(4), q.size))
        for _ in range(5)
    ]
    comp = PairedComparison(runs[:3], runs[3:], ESCI)

    def reported(run: Predictions, key: str) -> float:
        m = compute_relevance_metrics(ESCI, run.label, run.score, q, run.bucket, run.probs)
        return m["overall"][key]

    for key in ("ndcg@10", "class_accuracy"):
        diff = comp.difference(key)
        want = np.mean([reported(r, key) for r in runs[:3]]) - np.mean(
            [reported(r, key) for r in runs[3:]]
        )
        assert diff is not None and diff.delta == pytest.approx(want, abs=1e-6)  # float32 there
        assert diff.low <= diff.delta <= diff.high and diff.seeds == (3, 2)


def test_one_seed_matches_scipy_paired_bootstrap() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.8, 0.1, 300), rng.normal(0.79, 0.1, 300)
    reps = nested_bootstrap(a[None], b[None], np.ones(300), resamples=20_000)
    ours = np.quantile(reps, [0.025, 0.975])
    ref = stats.bootstrap(
        (a, b),
        lambda x, y, axis: (x - y).mean(axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=20_000,
        rng=np.random.default_rng(2),
    ).confidence_interval
    se = (a - b).std(ddof=1) / np.sqrt(300)
    assert ours == pytest.approx([ref.low, ref.high], abs=0.1 * se)
    # and the normal-theory interval by hand: mean ± 1.96 standard errors
    assert ours == pytest.approx(
        [(a - b).mean() - 1.96 * se, (a - b).mean() + 1.96 * se], abs=0.1 * se
    )


def test_seeds_widen_the_interval_that_queries_alone_would_give() -> None:
    """Two seeds of one recipe: each seed shifts every query, so a query-only bootstrap of one
    seed against another separates them; resampling the seeds does not."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 1.0, 400)
    shift = np.array([0.02, -0.02, 0.015, -0.015])  # seed effects, same recipe
    runs = base + shift[:, None] + rng.normal(0, 0.01, (4, 400))
    only_queries = np.quantile(nested_bootstrap(runs[:1], runs[1:2], np.ones(400)), [0.025, 0.975])
    assert only_queries[0] > 0  # one seed against another: "separated"
    nested = np.quantile(nested_bootstrap(runs[[0, 3]], runs[[1, 2]], np.ones(400)), [0.025, 0.975])
    assert nested[0] < 0 < nested[1]


def test_buckets_bm25_and_mismatched_pairs(tmp_path: Path) -> None:
    q = np.repeat(np.arange(6), 4)
    label = np.tile([0, 1, 3, 3], 6)
    model = preds(q, label, np.tile([3.0, 2.0, 1.0, 0.0], 6), np.eye(4)[label])
    bm25 = preds(q, label, np.tile([0.0, 1.0, 2.0, 3.0], 6))
    model = Predictions(**{**model.__dict__, "bucket": np.repeat([0, 0, 1, 1, 2, 2], 4)})
    comp = PairedComparison([model], [bm25], ESCI)
    assert comp.difference("class_accuracy") is None  # BM25 has no classes
    # each query's bucket is the baseline's (all head here), whatever the model's file says
    assert comp.difference("ndcg@10", "tail") is None
    head = comp.difference("ndcg@10", "head")
    assert head is not None and head.queries == 6 and head.delta > 0
    write_predictions(tmp_path / "p.parquet", {**model.__dict__, "labels": model.label})
    back = read_predictions(tmp_path / "p.parquet")
    assert np.array_equal(back.bucket, model.bucket) and back.probs is not None
    other = preds(q[:-1], label[:-1], np.zeros(23))
    with pytest.raises(DataError, match="other pairs"):
        PairedComparison([other], [bm25], ESCI)


def test_cell_marks_an_interval_containing_zero() -> None:
    sep = PairedDifference("ndcg@10", None, 0.012, 0.004, 0.02, 600, (3, 3))
    assert sep.separated and sep.cell() == "+0.0120 [+0.0040, +0.0200]"
    flat = PairedDifference("ndcg@10", None, 0.001, -0.003, 0.005, 600, (3, 3))
    assert flat.cell() == "+0.0010 [-0.0030, +0.0050] (0 in CI)"
