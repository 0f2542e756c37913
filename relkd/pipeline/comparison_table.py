"""One row per model: the figures a distillation comparison is read by, overall and on the tail,
as the mean ± standard deviation when a model ran with several seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from relkd.metrics.paired_difference import PAIRED_GROUPS, PairedDifference
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
# the long form (docs/results.md): every bucket, four metrics
BUCKET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("NDCG@10", NDCG_KEY),
    ("class-acc", "class_accuracy"),
    ("AUC", "auc"),
    ("ECE", "class_ece"),
)
GROUPS = ("overall", "head", "torso", "tail")
# click-graph slices (data.click_graph.slices): pairs whose query and item both have clicks, and
# the rest
SLICES = ("clicked", "cold")


def metric(result: Mapping[str, Any], bucket: str | None, key: str) -> float | None:
    """One number from a compute_relevance_metrics result (None when absent)."""
    if bucket in (None, "overall"):
        group = result.get("overall", {})
    elif bucket in SLICES:
        group = result.get("slices", {}).get(bucket)
    else:
        group = result.get("buckets", {}).get(bucket)
    value = (group or {}).get(key)
    return None if value is None else float(value)


def cell(results: Sequence[Mapping[str, Any]], bucket: str | None, key: str) -> str:
    """``0.9012`` for one run, ``0.9012 ± 0.0034`` (sample std) for several, ``-`` if absent."""
    values = [v for r in results if (v := metric(r, bucket, key)) is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    rule = "|" + "|".join(
        "-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([line(header), rule + "|", *(line(r) for r in body)])


def _as_runs(value: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [value] if isinstance(value, Mapping) else list(value)


def comparison_table(rows: Mapping[str, Any]) -> str:
    """A Markdown table, one row per model in the order given; each value is one result or a
    list of results (seeds). ``-`` where a model lacks a figure (BM25 has no class probs)."""
    header = ["model", *(c[0] for c in COLUMNS)]
    body = [
        [name, *(cell(_as_runs(runs), bucket, key) for _, bucket, key in COLUMNS)]
        for name, runs in rows.items()
    ]
    return markdown_table(header, body)


def bucket_table(rows: Mapping[str, Any], groups: Sequence[str] = GROUPS) -> str:
    """The long form: one row per (model, group): overall/head/torso/tail by default, or
    ``("overall", *SLICES)`` for the click-graph slices."""
    header = ["model", "bucket" if groups == GROUPS else "pairs", *(c[0] for c in BUCKET_COLUMNS)]
    body = [
        [name, group, *(cell(_as_runs(runs), group, key) for _, key in BUCKET_COLUMNS)]
        for name, runs in rows.items()
        for group in groups
    ]
    return markdown_table(header, body)


def has_slices(rows: Mapping[str, Any]) -> bool:
    """Whether any result carries click-graph slices."""
    return any("slices" in r for runs in rows.values() for r in _as_runs(runs))


def robustness_table(rows: Mapping[str, Any], kinds: Sequence[str], key: str = NDCG_KEY) -> str:
    """One row per model: ``key`` on the clean test queries, then its drop (perturbed − clean)
    under each kind, from ``relkd eval --perturb`` reports (mean ± std over seeds)."""

    def drops(reports: Sequence[Mapping[str, Any]], kind: str | None) -> str:
        if kind is None:
            return cell([r["clean"] for r in reports], None, key)
        values = [
            float(v) for r in reports if (v := r.get(kind, {}).get("drop", {}).get(key)) is not None
        ]
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:+.4f}"
        return f"{np.mean(values):+.4f} ± {np.std(values, ddof=1):.4f}"

    header = ["model", "clean", *kinds]
    body = [
        [name, *(drops(_as_runs(runs), k) for k in (None, *kinds))] for name, runs in rows.items()
    ]
    return markdown_table(header, body)


def paired_headers(groups: Sequence[tuple[str | None, str]] = PAIRED_GROUPS) -> list[str]:
    """``ΔNDCG@10``, ``Δtail class-acc``...: the header of each paired (bucket, metric)."""
    names = {NDCG_KEY: "NDCG@10", "class_accuracy": "class-acc"}
    return [f"Δ{'' if b is None else b + ' '}{names.get(m, m)}" for b, m in groups]


def paired_table(
    diffs: Mapping[str, Mapping[tuple[str | None, str], PairedDifference | None]],
    groups: Sequence[tuple[str | None, str]] = PAIRED_GROUPS,
) -> str:
    """One row per model: model − baseline on each group, ``+Δ [low, high]``, marked
    ``(0 in CI)`` where the interval contains 0; ``-`` where a side lacks the figure."""
    body = [
        [name, *((d.cell() if (d := row.get(g)) is not None else "-") for g in groups)]
        for name, row in diffs.items()
    ]
    return markdown_table(["model", *paired_headers(groups)], body)


def paired_note(
    diffs: Mapping[str, Mapping[tuple[str | None, str], PairedDifference | None]],
    baseline: str,
    split: str,
) -> str:
    """The sentence above a paired table: what it compares, over how many queries, and how."""
    queries = next(
        (d.queries for row in diffs.values() for (b, m), d in row.items() if d and b is None),
        None,
    )
    over = f"{queries} {split} queries" if queries else f"the {split} queries"
    return (
        f"Paired differences against {baseline!r} over {over}: model − baseline, with a 95 % "
        "bootstrap interval that resamples the queries and each model's seeds; (0 in CI): not "
        "separated from the baseline."
    )
