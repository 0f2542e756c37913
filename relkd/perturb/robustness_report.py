"""The perturbation robustness report: clean and perturbed metrics side by side, and the drop.

``robustness_report`` builds the ``metrics.json`` payload of ``relkd eval --perturb``::

    {"clean": <test result>,
     "<kind>": {"metrics": <test result>, "drop": {metric: perturbed - clean},
                "drop_buckets": {bucket: {metric: perturbed - clean}},
                "changed_queries": <fraction of test queries changed>, ...},
     "perturbation": {"kinds": [...], "version": ..., "seed": ..., ...}}

where a test result is the ``"test"`` entry of an eval's metrics.json (``overall``,
``buckets``, ``threshold``, ...). A drop is negative where the perturbation hurt a
higher-is-better metric (NDCG@10, accuracy, macro-F1, AUC); for ECE, lower is better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from relkd.data.schema import BUCKETS
from relkd.metrics.relevance_metrics import NDCG_KEY
from relkd.perturb.perturbed_dataset import PerturbedDataset
from relkd.perturb.query_perturber import PERTURBATION_VERSION

# counts, not scores: never differenced
COUNT_KEYS = frozenset({"num_pairs", "num_queries", "num_relevant", "ndcg_queries"})

# (header, key) of the printed table's metric columns, those the clean result has
COLUMNS: tuple[tuple[str, str], ...] = (
    ("NDCG@10", NDCG_KEY),
    ("class-acc", "class_accuracy"),
    ("accuracy", "accuracy"),
    ("macro-F1", "macro_f1"),
    ("AUC", "auc"),
    ("ECE", "class_ece"),
)


def _score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_drop(clean: Mapping[str, Any], perturbed: Mapping[str, Any]) -> dict[str, float | None]:
    """``perturbed - clean`` for every score both have (None where either is missing)."""
    out: dict[str, float | None] = {}
    for key in sorted(set(clean) | set(perturbed)):
        if key in COUNT_KEYS:
            continue
        a, b = clean.get(key), perturbed.get(key)
        if _score(a) and _score(b):
            out[key] = float(b) - float(a)
        elif _score(a) or _score(b):
            out[key] = None
    return out


def robustness_report(
    clean: Mapping[str, Any],
    perturbed: Mapping[str, tuple[Mapping[str, Any], PerturbedDataset]],
    *,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload described in the module doc.

    Args:
        clean: the clean test result.
        perturbed: kind -> (its test result, the derived dataset it was evaluated on).
        extra: more facts for the ``perturbation`` entry (checkpoint, source dataset, ...).
    """
    report: dict[str, Any] = {
        "perturbation": {
            "kinds": list(perturbed),
            "version": PERTURBATION_VERSION,
            "seed": seed,
            "split": "test",
            **(extra or {}),
        },
        "clean": dict(clean),
    }
    clean_buckets = clean.get("buckets", {})
    for kind, (result, derived) in perturbed.items():
        buckets = result.get("buckets", {})
        report[kind] = {
            "metrics": dict(result),
            "drop": metric_drop(clean.get("overall", {}), result.get("overall", {})),
            "drop_buckets": {
                b: metric_drop(clean_buckets[b], buckets[b])
                for b in BUCKETS
                if b in clean_buckets and b in buckets
            },
            "changed_queries": derived.changed_fraction,
            "changed": derived.changed,
            "queries": derived.queries,
            "dataset": str(derived.root),
        }
    return report


def _cell(value: Any, signed: bool = False) -> str:
    if not _score(value):
        return "-"
    return format(value, "+.4f" if signed else ".4f")


def format_robustness_table(report: Mapping[str, Any], kinds: Sequence[str] | None = None) -> str:
    """Rows ``clean``, then per kind its metrics and a ``<kind> drop`` row (perturbed - clean);
    columns the overall NDCG@10, class-acc, accuracy, macro-F1, AUC and ECE the clean result
    has, and the fraction of test queries the kind changed."""
    kinds = list(kinds if kinds is not None else report["perturbation"]["kinds"])
    clean = report["clean"].get("overall", {})
    columns = [(h, k) for h, k in COLUMNS if k in clean] or list(COLUMNS)
    header = ["test queries", *(h for h, _ in columns), "changed"]
    rows = [["clean", *(_cell(clean.get(k)) for _, k in columns), "-"]]
    for kind in kinds:
        entry = report[kind]
        overall = entry["metrics"].get("overall", {})
        changed = f"{entry['changed_queries']:.1%}"
        rows.append([kind, *(_cell(overall.get(k)) for _, k in columns), changed])
        rows.append(
            [f"{kind} drop", *(_cell(entry["drop"].get(k), signed=True) for _, k in columns), ""]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), "-" * len(line(header)), *(line(r) for r in rows)])
