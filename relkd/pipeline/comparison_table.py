"""One row per model: the figures a distillation comparison is read by, overall and on the tail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relkd.metrics.relevance_metrics import NDCG_KEY

# (header, bucket or None for overall, metric key)
COLUMNS: tuple[tuple[str, str | None, str], ...] = (
    ("NDCG@10", None, NDCG_KEY),
    ("tail NDCG@10", "tail", NDCG_KEY),
    ("class-acc", None, "class_accuracy"),
    ("tail class-acc", "tail", "class_accuracy"),
    ("AUC", None, "auc"),
    ("ECE", None, "class_ece"),
)


def metric(result: Mapping[str, Any], bucket: str | None, key: str) -> float | None:
    """One number from a compute_relevance_metrics result (None when absent)."""
    group = result.get("overall", {}) if bucket is None else result.get("buckets", {}).get(bucket)
    value = (group or {}).get(key)
    return None if value is None else float(value)


def comparison_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table, one row per model, in the order given (``-`` where a model lacks a
    figure, e.g. BM25 has no class probabilities)."""
    header = ["model", *(c[0] for c in COLUMNS)]
    body = []
    for name, result in rows.items():
        cells = [metric(result, bucket, key) for _, bucket, key in COLUMNS]
        body.append([name, *("-" if v is None else f"{v:.4f}" for v in cells)])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (widths[0] + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in body)])
