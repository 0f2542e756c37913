"""Plain-text tables of relevance metrics, several models side by side.

The lead prints a student's row beside the BM25 row with the same function, so every input is
a :func:`~relkd.metrics.relevance_metrics.compute_relevance_metrics` result (or a whole
``metrics.json`` payload holding one under ``"metrics"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relkd.data.schema import BUCKETS
from relkd.metrics.relevance_metrics import NDCG_KEY

# (header, key, format) of each column.
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("pairs", "num_pairs", "d"),
    ("queries", "num_queries", "d"),
    ("class-acc", "class_accuracy", ".4f"),
    ("ECE", "class_ece", ".4f"),
    ("accuracy", "accuracy", ".4f"),
    ("macro-F1", "macro_f1", ".4f"),
    ("AUC", "auc", ".4f"),
    ("NDCG@10", NDCG_KEY, ".4f"),
)


def format_metrics_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A plain-text table with one row per (model, group): ``<name> overall``, ``<name> head``,
    ``<name> torso``, ``<name> tail`` for each named result, in the order given.

    Args:
        results: model name -> a ``compute_relevance_metrics`` result, or a ``metrics.json``
            payload (``{"metrics": <result>, ...}``). A missing or ``None`` value prints ``-``.

    Returns:
        The table as one string (no trailing newline); columns pairs, queries, class-acc (the
        K-class accuracy) and ECE (when class probabilities were given, else ``-``), the binary
        accuracy, macro-F1, AUC and NDCG@10, numbers right-aligned with 4 decimals.
    """
    header = ["model / group", *(c[0] for c in _COLUMNS)]
    rows: list[list[str]] = []
    for name, result in results.items():
        if "overall" not in result and isinstance(result.get("metrics"), Mapping):
            result = result["metrics"]
        groups = [("overall", result.get("overall", {}))]
        groups += [(b, result.get("buckets", {}).get(b, {})) for b in BUCKETS]
        groups += [(s, v) for s, v in result.get("slices", {}).items()]
        for group, values in groups:
            rows.append(
                [f"{name} {group}", *(_cell(values.get(key), fmt) for _, key, fmt in _COLUMNS)]
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)
