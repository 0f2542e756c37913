"""Relevance metrics shared by the baselines and every student (see ``relevance_metrics``)."""

from relkd.metrics.relevance_metrics import (
    CLASS_METRIC_KEYS,
    COUNT_KEYS,
    METRIC_KEYS,
    NDCG_K,
    NDCG_KEY,
    compute_relevance_metrics,
    tune_threshold,
)
from relkd.metrics.report import format_metrics_table

__all__ = [
    "CLASS_METRIC_KEYS",
    "COUNT_KEYS",
    "METRIC_KEYS",
    "NDCG_K",
    "NDCG_KEY",
    "compute_relevance_metrics",
    "format_metrics_table",
    "tune_threshold",
]
