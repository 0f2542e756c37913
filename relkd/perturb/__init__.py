"""Perturbation robustness: typo, synonym, word-order and attribute-paraphrase copies of the
test queries, evaluated with ``relkd eval RUN_DIR --perturb KINDS`` (docs/robustness.md)."""

from relkd.perturb.perturbed_dataset import PerturbedDataset
from relkd.perturb.query_perturber import (
    KINDS,
    PERTURBATION_VERSION,
    PERTURBATIONS,
    QueryPerturber,
    parse_kinds,
    stable_seed,
)
from relkd.perturb.robustness_report import format_robustness_table, robustness_report

__all__ = [
    "KINDS",
    "PERTURBATIONS",
    "PERTURBATION_VERSION",
    "PerturbedDataset",
    "QueryPerturber",
    "format_robustness_table",
    "parse_kinds",
    "robustness_report",
    "stable_seed",
]
