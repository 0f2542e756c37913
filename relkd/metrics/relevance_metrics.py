"""Relevance metrics shared by every model: the BM25 baseline and all students.

One entry point, :func:`compute_relevance_metrics`, scores a set of labelled query-item pairs
and returns a JSON-ready dict with the same metrics overall and per popularity bucket
(``head``/``torso``/``tail``, see :data:`relkd.data.schema.BUCKETS`):

``auc``
    ROC AUC of the binary relevance (``scheme.binary``) against the score
    (torchmetrics ``BinaryAUROC``). ``None`` when the pairs hold only one binary class.
``accuracy``, ``macro_f1``
    Accuracy and macro-F1 (mean of the two per-class F1s) of the thresholded binary decision
    ``score >= threshold`` (greater *or equal* is relevant). A class absent from both the
    labels and the decisions is left out of the macro mean (torchmetrics' rule), so a group of
    only relevant pairs, all predicted relevant, has macro-F1 1.0.
``ndcg@10``
    Mean over queries of NDCG@10 with the scheme's graded gains as *linear* gains
    (``DCG = sum gain_i / log2(i + 1)``, ranks ``i`` from 1; the ESCI/WANDS convention), computed
    by torchmetrics ``RetrievalNormalizedDCG(top_k=10)`` with the query ids as ``indexes``.
    Tied scores are averaged over (sklearn's rule). **Queries whose pairs all have gain 0 are
    skipped** (their NDCG is undefined); ``ndcg_queries`` counts the queries that were counted,
    and ``ndcg@10`` is ``None`` when there are none.
``class_accuracy``, ``class_macro_f1``, ``class_ece``
    Only when ``class_probs`` is given: multiclass accuracy (micro: fraction of pairs whose
    argmax class is the label) and macro-F1 over the scheme's classes (classes absent from both
    labels and predictions left out), torchmetrics ``Multiclass*``; and the expected calibration
    error of the top-class confidence (15 equal-width bins, L1: the bins' |confidence -
    accuracy| weighted by their share of pairs; torchmetrics ``MulticlassCalibrationError``), and
    ``class_nll``, the mean negative log-likelihood of the labels (the class cross-entropy, a
    steadier validation signal than NDCG for pruning). Rows that are not probability
    distributions (logits) are softmaxed first.

Each group also reports ``num_pairs``, ``num_queries`` and ``num_relevant`` (binary positives).
A bucket's metrics are computed over the pairs of that bucket's queries, with the *same*
threshold as overall (never re-tuned per bucket); an empty bucket reports zero counts and
``None`` metrics. Every value is a plain Python ``int``/``float``/``None``.

Thresholds: pass ``threshold=None`` to tune it on the pairs given (maximising binary accuracy,
see :func:`tune_threshold`); to avoid tuning on the test set, tune on validation scores with
:func:`tune_threshold` and pass the result in. The result records the threshold used and
whether it was tuned here (``threshold_tuned``).

Scores only need to be ordered (higher = more relevant): raw logits, BM25 scores or
probabilities all work. AUC and NDCG see only the within-set ranks of the scores, so no sigmoid
or float32 rounding inside torchmetrics can merge distinct scores into ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_f1_score,
)
from torchmetrics.retrieval import RetrievalNormalizedDCG

from relkd.data.label_scheme import LabelScheme, get_label_scheme
from relkd.data.schema import BUCKETS

NDCG_K = 10
NDCG_KEY = f"ndcg@{NDCG_K}"
# Keys of one group's metrics, in display order (class_* only when class_probs is given).
METRIC_KEYS: tuple[str, ...] = ("accuracy", "macro_f1", "auc", NDCG_KEY)
CLASS_METRIC_KEYS: tuple[str, ...] = ("class_accuracy", "class_macro_f1", "class_ece", "class_nll")
ECE_BINS = 15
COUNT_KEYS: tuple[str, ...] = ("num_pairs", "num_queries", "num_relevant", "ndcg_queries")


def tune_threshold(
    binary_labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> float:
    """The decision threshold that maximises binary accuracy of ``score >= threshold``.

    Every cut between consecutive distinct scores is tried, plus "nothing relevant" and
    "everything relevant". The returned threshold lies midway between the lowest score called
    relevant and the highest score called irrelevant (so it transfers sensibly to other pairs,
    e.g. tuned on val, applied on test); "everything relevant" returns the lowest score and
    "nothing relevant" the next float above the highest. Ties in accuracy go to the highest
    threshold (fewest pairs called relevant).

    Args:
        binary_labels: (N,) 0/1 relevance, e.g. ``scheme.binary_array()[labels]``.
        scores: (N,) finite scores, higher = more relevant.

    Raises:
        ValueError: on empty or mismatched inputs, non-binary labels or non-finite scores.
    """
    y = np.asarray(binary_labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"binary_labels has {y.size} entries, scores has {s.size}")
    if s.size == 0:
        raise ValueError("cannot tune a threshold on zero pairs")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite to tune a threshold")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("binary_labels must be 0 or 1")
    y = y.astype(np.int64)
    # Distinct scores, descending; per distinct value, its positives and negatives.
    uniq, inv = np.unique(-s, return_inverse=True)
    values = -uniq  # descending
    pos = np.bincount(inv, weights=y, minlength=values.size)
    neg = np.bincount(inv, weights=1 - y, minlength=values.size)
    total_neg = neg.sum()
    # correct[j] = pairs right when the values[:j] are called relevant (j = 0: none).
    correct = np.concatenate(([total_neg], np.cumsum(pos) + total_neg - np.cumsum(neg)))
    j = int(np.argmax(correct))  # first maximum = highest threshold
    if j == 0:
        return float(np.nextafter(values[0], np.inf))
    if j == values.size:
        return float(values[-1])
    lo, hi = values[j], values[j - 1]  # hi is called relevant, lo is not
    mid = lo + (hi - lo) / 2.0
    return float(mid if lo < mid <= hi else hi)


def compute_relevance_metrics(
    scheme: LabelScheme | str,
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    query_ids: Sequence[Any] | np.ndarray,
    buckets: Sequence[Any] | np.ndarray,
    class_probs: np.ndarray | None = None,
    threshold: float | None = None,
    slices: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Relevance metrics overall and per popularity bucket (see the module docstring).

    Args:
        scheme: the label scheme (or its name) that ``labels`` index into.
        labels: (N,) int class index in scheme order (``scheme.encode``); every pair must be
            labelled (no -1).
        scores: (N,) finite float, higher = more relevant.
        query_ids: (N,) query group ids (int64 codes; any 1-D array numpy can sort works).
        buckets: (N,) each pair's query bucket, as ``'head'``/``'torso'``/``'tail'`` strings
            or int codes into :data:`~relkd.data.schema.BUCKETS`; constant within a query.
        class_probs: optional (N, num_labels) class probabilities or logits in scheme order;
            adds ``class_accuracy`` and ``class_macro_f1`` (argmax decision).
        threshold: binary decision threshold; ``None`` tunes it here with :func:`tune_threshold`.
        slices: optional name -> (N,) bool mask of pairs (e.g. ``clicked``/``cold`` from the
            click graph); each slice's metrics are computed on its pairs alone (NDCG ranks a
            query's pairs within the slice) with the same threshold, under ``"slices"``.

    Returns:
        ``{"scheme", "num_pairs", "num_queries", "threshold", "threshold_tuned",
        "overall": {...}, "buckets": {"head": {...}, "torso": {...}, "tail": {...}}}``.

    Raises:
        ValueError: on mismatched lengths, labels outside the scheme, non-finite scores,
            unknown buckets, a query in two buckets, a bad ``class_probs`` shape, or no pairs.
    """
    scheme = get_label_scheme(scheme) if isinstance(scheme, str) else scheme
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    q = np.asarray(query_ids).reshape(-1)
    n = y.size
    if n == 0:
        raise ValueError("no pairs to evaluate")
    for name, arr in (
        ("scores", s),
        ("query_ids", q),
        ("buckets", np.asarray(buckets).reshape(-1)),
    ):
        if arr.size != n:
            raise ValueError(f"labels has {n} entries but {name} has {arr.size}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= scheme.num_labels:
        bad = sorted(set(y[(y < 0) | (y >= scheme.num_labels)].tolist()))[:5]
        raise ValueError(
            f"labels must be class indices in [0, {scheme.num_labels}) for scheme "
            f"{scheme.name!r} (unlabelled pairs cannot be evaluated); got {bad}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be finite; {int((~np.isfinite(s)).sum())} are NaN or inf")
    q_codes = np.unique(q, return_inverse=True)[1].reshape(-1).astype(np.int64)
    num_queries = int(q_codes.max()) + 1
    b_codes = _bucket_codes(buckets)
    query_bucket = np.empty(num_queries, dtype=np.int64)
    query_bucket[q_codes] = b_codes
    if np.any(query_bucket[q_codes] != b_codes):
        bad_q = np.unique(q[query_bucket[q_codes] != b_codes])[:5].tolist()
        raise ValueError(f"each query must lie in one bucket; queries in several: {bad_q}")
    probs = None
    if class_probs is not None:
        probs = np.asarray(class_probs, dtype=np.float64)
        if probs.shape != (n, scheme.num_labels):
            raise ValueError(
                f"class_probs has shape {probs.shape}, expected ({n}, {scheme.num_labels})"
            )
        if not np.all(np.isfinite(probs)):
            raise ValueError("class_probs must be finite")
        if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
            z = probs - probs.max(axis=1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)

    binary = scheme.binary_array()[y]
    tuned = threshold is None
    thr = tune_threshold(binary, s) if tuned else float(threshold)
    decision = (s >= thr).astype(np.int64)
    gains = scheme.gain_array()[y]
    # AUC and NDCG see ranks, not raw scores: see _ranks.
    global_rank = _ranks(s)
    query_ndcg, query_counted = _per_query_ndcg(
        _ranks_within(s, q_codes), gains, q_codes, num_queries
    )
    pred_class = probs.argmax(axis=1) if probs is not None else None

    def group(code: int | None) -> dict[str, Any]:
        pairs = slice(None) if code is None else b_codes == code
        queries = np.ones(num_queries, bool) if code is None else query_bucket == code
        return _group_metrics(
            scheme=scheme,
            labels=y[pairs],
            binary=binary[pairs],
            decision=decision[pairs],
            rank=global_rank[pairs],
            query_ndcg=query_ndcg[queries & query_counted],
            num_queries=int(queries.sum()),
            pred_class=None if pred_class is None else pred_class[pairs],
            class_probs=None if probs is None else probs[pairs],
        )

    result = {
        "scheme": scheme.name,
        "num_pairs": int(n),
        "num_queries": num_queries,
        "threshold": thr,
        "threshold_tuned": tuned,
        "overall": group(None),
        "buckets": {name: group(code) for code, name in enumerate(BUCKETS)},
    }
    if slices:
        result["slices"] = {}
        for name, mask in slices.items():
            m = np.asarray(mask, dtype=bool).reshape(-1)
            if m.size != n:
                raise ValueError(f"slice {name!r} has {m.size} entries for {n} pairs")
            if not m.any():
                result["slices"][name] = {"num_pairs": 0, "num_queries": 0}
                continue
            sub = compute_relevance_metrics(
                scheme,
                y[m],
                s[m],
                q[m],
                b_codes[m],
                class_probs=None if probs is None else probs[m],
                threshold=thr,
            )
            result["slices"][name] = sub["overall"]
    return result


def per_query_ndcg(
    scheme: LabelScheme | str,
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    query_ids: Sequence[Any] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NDCG@10 of every query, exactly as :func:`compute_relevance_metrics` averages it.

    Returns ``(queries, ndcg, counted)``: the distinct query ids (sorted), each one's NDCG@10,
    and whether it is counted (it has a pair of positive gain; the others are skipped, their
    value meaningless). ``ndcg[counted].mean()`` is the reported ``ndcg@10``.
    """
    scheme = get_label_scheme(scheme) if isinstance(scheme, str) else scheme
    q = np.asarray(query_ids).reshape(-1)
    queries, q_codes = np.unique(q, return_inverse=True)
    q_codes = q_codes.reshape(-1).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    gains = scheme.gain_array()[np.asarray(labels, dtype=np.int64).reshape(-1)]
    ndcg, counted = _per_query_ndcg(_ranks_within(s, q_codes), gains, q_codes, queries.size)
    return queries, ndcg, counted


def _bucket_codes(buckets: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Bucket names or int codes to int codes into BUCKETS; ValueError on anything else."""
    arr = np.asarray(buckets).reshape(-1)
    if np.issubdtype(arr.dtype, np.integer):
        codes = arr.astype(np.int64)
        bad = (codes < 0) | (codes >= len(BUCKETS))
        if bad.any():
            raise ValueError(
                f"bucket codes must index {list(BUCKETS)}; got {sorted(set(codes[bad].tolist()))[:5]}"
            )
        return codes
    uniq, inv = np.unique(arr.astype(object).astype(str), return_inverse=True)
    unknown = [u for u in uniq.tolist() if u not in BUCKETS]
    if unknown:
        raise ValueError(f"unknown bucket(s) {unknown[:5]}; expected one of {list(BUCKETS)}")
    lookup = np.array([BUCKETS.index(u) for u in uniq.tolist()], dtype=np.int64)
    return lookup[inv.reshape(-1)]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Dense ranks of ``scores`` scaled into [0, 1] (float64): same order and ties as the
    scores, but inside [0, 1] so torchmetrics' binary metrics never apply a sigmoid (which
    saturates to 1.0 in float32 for scores above ~17 and would merge distinct scores)."""
    uniq, inv = np.unique(scores, return_inverse=True)
    return inv.reshape(-1).astype(np.float64) / max(uniq.size - 1, 1)


def _ranks_within(scores: np.ndarray, q_codes: np.ndarray) -> np.ndarray:
    """Dense rank of each score within its query (0 = lowest), as float32-exact small ints.

    torchmetrics casts retrieval predictions to float32; ranks within a query are exact there
    (up to 2**24 pairs per query), so ties and order are exactly those of the float64 scores.
    """
    order = np.lexsort((scores, q_codes))
    s_sorted, q_sorted = scores[order], q_codes[order]
    new_query = np.ones(order.size, bool)
    new_query[1:] = q_sorted[1:] != q_sorted[:-1]
    step = np.ones(order.size, np.int64)
    step[1:] = (s_sorted[1:] != s_sorted[:-1]) | new_query[1:]
    dense = np.cumsum(step)
    # Subtract each query's first dense value so ranks restart at 0 per query.
    first = np.maximum.accumulate(np.where(new_query, dense, 0))
    ranks = np.empty(order.size, np.float64)
    ranks[order] = dense - first
    return ranks


def _per_query_ndcg(
    preds: np.ndarray, gains: np.ndarray, q_codes: np.ndarray, num_queries: int
) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@10 of every query (index = query code) via one torchmetrics pass, and a mask of
    the queries it is defined for (some positive gain). Queries without one are skipped."""
    captured: list[torch.Tensor] = []

    def keep_per_query(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        captured.append(values.detach().clone())
        return values.mean()

    # "neg" keeps one value per query, in sorted-index order (= query code order); the
    # no-positive-gain queries are masked out below, which is exactly "skip".
    metric = RetrievalNormalizedDCG(
        top_k=NDCG_K, empty_target_action="neg", aggregation=keep_per_query
    )
    metric.update(
        torch.from_numpy(preds),
        torch.from_numpy(gains),
        indexes=torch.from_numpy(q_codes),
    )
    metric.compute()
    per_query = captured[-1].double().numpy()
    if per_query.shape != (num_queries,):
        raise RuntimeError(
            f"torchmetrics returned {per_query.shape[0]} per-query NDCG values for {num_queries} queries"
        )
    counted = np.bincount(q_codes, weights=gains, minlength=num_queries) > 0
    return per_query, counted


def _group_metrics(
    *,
    scheme: LabelScheme,
    labels: np.ndarray,
    binary: np.ndarray,
    decision: np.ndarray,
    rank: np.ndarray,
    query_ndcg: np.ndarray,
    num_queries: int,
    pred_class: np.ndarray | None,
    class_probs: np.ndarray | None = None,
) -> dict[str, Any]:
    n = int(labels.size)
    out: dict[str, Any] = {
        "num_pairs": n,
        "num_queries": num_queries,
        "num_relevant": int(binary.sum()),
        "ndcg_queries": int(query_ndcg.size),
    }
    keys = METRIC_KEYS + (CLASS_METRIC_KEYS if pred_class is not None else ())
    out.update(dict.fromkeys(keys))
    if n == 0:
        return out
    target = torch.from_numpy(binary)
    pred = torch.from_numpy(decision)
    out["accuracy"] = float(binary_accuracy(pred, target))
    out["macro_f1"] = float(multiclass_f1_score(pred, target, num_classes=2, average="macro"))
    if 0 < out["num_relevant"] < n:
        out["auc"] = float(binary_auroc(torch.from_numpy(rank), target))
    if query_ndcg.size:
        out[NDCG_KEY] = float(query_ndcg.mean())
    if pred_class is not None:
        k = scheme.num_labels
        cls_pred, cls_target = torch.from_numpy(pred_class), torch.from_numpy(labels)
        out["class_accuracy"] = float(
            multiclass_accuracy(cls_pred, cls_target, num_classes=k, average="micro")
        )
        out["class_macro_f1"] = float(
            multiclass_f1_score(cls_pred, cls_target, num_classes=k, average="macro")
        )
        if class_probs is not None:
            out["class_ece"] = float(
                multiclass_calibration_error(
                    torch.from_numpy(class_probs).float(),
                    cls_target,
                    num_classes=k,
                    n_bins=ECE_BINS,
                    norm="l1",
                )
            )
            picked = class_probs[np.arange(n), labels].astype(np.float64)
            out["class_nll"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return out
