"""Relevance metrics against hand computations and an independent numpy NDCG reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from relkd.data.label_scheme import ESCI, WANDS
from relkd.metrics import compute_relevance_metrics, format_metrics_table, tune_threshold

E, S, C, IRR = range(4)  # ESCI class indices (IRR = Irrelevant); binary: only Exact relevant

# q0 (head): E, S, IRR    q1 (torso): IRR, E, C    q2 (tail): IRR, IRR (no positive gain)
LABELS = np.array([E, S, IRR, IRR, E, C, IRR, IRR])
SCORES = np.array([0.5, 0.9, 0.1, 0.7, 0.6, 0.2, 0.3, 0.4])
QUERIES = np.array([0, 0, 0, 1, 1, 1, 2, 2])
BUCKETS = np.array(["head"] * 3 + ["torso"] * 3 + ["tail"] * 2)

# q0 ranks S (0.1), E (1.0), IRR; ideal E, S.   q1 ranks IRR, E (1.0), C (0.01); ideal E, C.
NDCG_Q0 = (0.1 + 1.0 / math.log2(3)) / (1.0 + 0.1 / math.log2(3))
NDCG_Q1 = (1.0 / math.log2(3) + 0.01 / math.log2(4)) / (1.0 + 0.01 / math.log2(3))


def _metrics(**kwargs):
    args = {"threshold": 0.6, **kwargs}
    return compute_relevance_metrics(ESCI, LABELS, SCORES, QUERIES, BUCKETS, **args)


def test_hand_checked_overall() -> None:
    r = _metrics()
    o = r["overall"]
    assert (r["num_pairs"], r["num_queries"], r["threshold"]) == (8, 3, 0.6)
    assert r["threshold_tuned"] is False
    assert (o["num_pairs"], o["num_queries"], o["num_relevant"]) == (8, 3, 2)
    # positives 0.5, 0.6 beat 4 of the 6 negatives each: 8 / 12
    assert o["auc"] == pytest.approx(2 / 3, abs=1e-6)
    # score >= 0.6 is relevant (0.6 itself included): right on 0.1 0.2 0.3 0.4 0.6 = 5 of 8
    assert o["accuracy"] == pytest.approx(5 / 8)
    # relevant: TP 1, FP 2, FN 1 -> F1 0.4; irrelevant: TP 4, FP 1, FN 2 -> F1 8/11
    assert o["macro_f1"] == pytest.approx((0.4 + 8 / 11) / 2, abs=1e-6)
    # q2 has no positive gain and is skipped
    assert o["ndcg_queries"] == 2
    assert o["ndcg@10"] == pytest.approx((NDCG_Q0 + NDCG_Q1) / 2, abs=1e-6)


def test_hand_checked_buckets() -> None:
    b = _metrics()["buckets"]
    assert b["head"]["ndcg@10"] == pytest.approx(NDCG_Q0, abs=1e-6)
    assert b["torso"]["ndcg@10"] == pytest.approx(NDCG_Q1, abs=1e-6)
    assert b["head"]["auc"] == pytest.approx(0.5) and b["torso"]["auc"] == pytest.approx(0.5)
    assert b["head"]["accuracy"] == pytest.approx(1 / 3)  # only IRR (0.1) right
    assert b["torso"]["accuracy"] == pytest.approx(2 / 3)
    assert (b["tail"]["num_pairs"], b["tail"]["num_queries"]) == (2, 1)
    # tail: one binary class only and no positive gain -> undefined, not NaN / 0
    assert b["tail"]["auc"] is None and b["tail"]["ndcg@10"] is None
    assert b["tail"]["accuracy"] == 1.0


def test_bucket_int_codes_equal_names() -> None:
    codes = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    named = _metrics()
    coded = compute_relevance_metrics(ESCI, LABELS, SCORES, QUERIES, codes, threshold=0.6)
    assert coded == named


def test_empty_bucket_reports_none() -> None:
    r = compute_relevance_metrics(ESCI, LABELS, SCORES, QUERIES, ["head"] * 8, threshold=0.6)
    assert r["buckets"]["tail"]["num_pairs"] == 0
    assert r["buckets"]["tail"]["accuracy"] is None
    assert r["buckets"]["head"] == r["overall"]


def test_scores_outside_unit_interval_keep_their_order() -> None:
    """BM25-like scores (> 17) saturate a float32 sigmoid; metrics must only see the order."""
    r = compute_relevance_metrics(
        ESCI, LABELS, SCORES * 100 + 50, QUERIES, BUCKETS, threshold=0.6 * 100 + 50
    )
    base = _metrics()
    assert r["overall"] == base["overall"] and r["buckets"] == base["buckets"]


def test_close_float64_scores_are_not_tied() -> None:
    """Scores distinct in float64 but equal in float32 must still rank apart."""
    base = 1000.0
    scores = np.array([base + 1e-9, base, base + 2e-9])  # all one float32 value
    labels = np.array([E, IRR, E])
    r = compute_relevance_metrics(ESCI, labels, scores, [0, 0, 0], ["head"] * 3, threshold=base)
    assert r["overall"]["auc"] == 1.0
    assert r["overall"]["ndcg@10"] == pytest.approx(1.0)


def test_tied_scores_are_averaged_in_ndcg() -> None:
    # E and IRR tied at the top: expected DCG = mean gain 0.5 at each of ranks 1 and 2.
    r = compute_relevance_metrics(ESCI, [E, IRR], [1.0, 1.0], [7, 7], ["head"] * 2, threshold=0.5)
    expected = 0.5 * (1 + 1 / math.log2(3))
    assert r["overall"]["ndcg@10"] == pytest.approx(expected, abs=1e-6)


def test_ndcg_cuts_at_ten() -> None:
    # the only relevant item ranked 11th contributes nothing to DCG@10
    scores = np.arange(11, 0, -1, dtype=float)
    labels = np.array([IRR] * 10 + [E])
    r = compute_relevance_metrics(ESCI, labels, scores, [0] * 11, ["head"] * 11, threshold=0)
    assert r["overall"]["ndcg@10"] == 0.0
    assert r["overall"]["ndcg_queries"] == 1


def test_class_metrics_from_probs() -> None:
    pred = np.array([E, S, IRR, IRR, S, C, IRR, E])  # 6 of 8 right
    probs = np.full((8, 4), 0.1)
    probs[np.arange(8), pred] = 0.7
    o = _metrics(class_probs=probs)["overall"]
    assert o["class_accuracy"] == pytest.approx(0.75)
    # F1 per class: E 2/4, S 2/3, C 1, IRR 6/7
    assert o["class_macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1 + 6 / 7) / 4, abs=1e-6)
    # the label's probability is 0.7 for the 6 right pairs and 0.1 for the 2 wrong ones
    assert o["class_nll"] == pytest.approx(-(6 * np.log(0.7) + 2 * np.log(0.1)) / 8)
    assert "class_accuracy" not in _metrics()["overall"]


def test_result_is_plain_json() -> None:
    r = _metrics(class_probs=np.eye(4)[LABELS])
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        else:
            assert x is None or type(x) in (int, float, str, bool), (x, type(x))

    walk(r)


def test_threshold_tuned_when_not_given() -> None:
    r = _metrics(threshold=None)
    assert r["threshold_tuned"] is True
    binary = (LABELS == E).astype(int)
    assert r["threshold"] == tune_threshold(binary, SCORES)
    decision = np.greater_equal(SCORES, r["threshold"])
    assert r["overall"]["accuracy"] == pytest.approx(np.mean(decision == binary))


def test_tune_threshold_separable() -> None:
    t = tune_threshold([0, 0, 1, 1], [1.0, 2.0, 3.0, 4.0])
    assert 2.0 < t <= 3.0


def test_tune_threshold_extremes() -> None:
    assert tune_threshold([1, 1], [0.2, 0.3]) <= 0.2  # everything relevant
    assert tune_threshold([0, 0], [0.2, 0.3]) > 0.3  # nothing relevant


@pytest.mark.parametrize("seed", range(5))
def test_tune_threshold_maximises_accuracy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounded: many ties
    t = tune_threshold(y, s)
    best = max(np.mean((s >= c) == y) for c in [*np.unique(s), np.inf])
    assert np.mean((s >= t) == y) == pytest.approx(best)


def _reference_ndcg(gains, scores, qids, k=10):
    """Independent NDCG@k: linear gains, queries without positive gain skipped, no ties."""
    values = []
    for q in np.unique(qids):
        g, s = gains[qids == q], scores[qids == q]
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.sort(g)[::-1][:k]
        if ideal.sum() <= 0:
            continue
        ranked = g[np.argsort(-s)][:k]
        values.append((ranked * disc[: ranked.size]).sum() / (ideal * disc[: ideal.size]).sum())
    return float(np.mean(values)) if values else None


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scheme", [ESCI, WANDS])
def test_ndcg_matches_numpy_reference(seed: int, scheme) -> None:
    rng = np.random.default_rng(seed)
    n, q = 600, 45
    qids = rng.integers(0, q, n) * 13 + 5  # sparse, unsorted ids
    labels = rng.integers(0, scheme.num_labels, n)
    scores = rng.normal(size=n) * 5
    bucket_of = rng.integers(0, 3, q * 13 + 6)
    buckets = bucket_of[qids]
    r = compute_relevance_metrics(scheme, labels, scores, qids, buckets, threshold=0.0)
    gains = scheme.gain_array()[labels]
    assert r["overall"]["ndcg@10"] == pytest.approx(_reference_ndcg(gains, scores, qids), abs=1e-5)
    for code, name in enumerate(["head", "torso", "tail"]):
        m = buckets == code
        expected = _reference_ndcg(gains[m], scores[m], qids[m])
        assert r["buckets"][name]["ndcg@10"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [0, 1, -1]}, "class indices"),
        ({"labels": [0, 1, 4]}, "class indices"),
        ({"scores": [0.1, float("nan"), 0.3]}, "finite"),
        ({"buckets": ["head", "torso", "middle"]}, "unknown bucket"),
        ({"buckets": ["head", "tail", "tail"]}, "one bucket"),
        ({"query_ids": [0, 1]}, "query_ids"),
        ({"class_probs": np.ones((3, 3))}, "class_probs"),
    ],
)
def test_bad_inputs_raise(kwargs, match) -> None:
    args = {
        "labels": [0, 1, 3],
        "scores": [0.1, 0.2, 0.3],
        "query_ids": [0, 0, 1],
        "buckets": ["head", "head", "tail"],
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        compute_relevance_metrics("esci", **args)


def test_format_metrics_table_rows_and_columns() -> None:
    r = _metrics()
    table = format_metrics_table({"bm25": r, "student": {"model": "x", "metrics": r}})
    lines = table.splitlines()
    assert lines[0].split()[-4:] == ["accuracy", "macro-F1", "AUC", "NDCG@10"]
    names = [" ".join(line.split()[:2]) for line in lines[2:]]
    assert names == [
        f"{m} {g}" for m in ("bm25", "student") for g in ("overall", "head", "torso", "tail")
    ]
    overall = lines[2].split()
    assert overall[-4:] == ["0.6250", "0.5636", "0.6667", f"{(NDCG_Q0 + NDCG_Q1) / 2:.4f}"]
    assert lines[5].split()[-2:] == ["-", "-"]  # tail: AUC and NDCG undefined
