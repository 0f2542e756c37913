"""Loss-term names usable in ``loss.weights``, how each is built, and who can use it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from relkd.data.label_scheme import LabelScheme
from relkd.losses.aspect_ce import AspectCE
from relkd.losses.cot_token_ce import CotTokenCE
from relkd.losses.graded_bce import GradedBCE
from relkd.losses.hard_label_ce import HardLabelCE
from relkd.losses.listwise_kl import ListwiseKL
from relkd.losses.margin_mse import MarginMSE
from relkd.losses.score_bce import ScoreBCE
from relkd.losses.score_mse import ScoreMSE
from relkd.losses.soft_kl import SoftKL
from relkd.losses.soft_target_ce import SoftTargetCE, target_map_from_config
from relkd.losses.weighted_loss import WeightedLoss


def default_grades(scheme: LabelScheme) -> list[float]:
    """Walmart's mapping: the top label 1, the next 0.5, the rest 0."""
    return [1.0 if i == 0 else 0.5 if i == 1 else 0.0 for i in range(scheme.num_labels)]


def grades_from_config(cfg: Any, scheme: LabelScheme) -> list[float]:
    grades = dict(cfg.grades or {})
    unknown = sorted(set(grades) - set(scheme.labels))
    if unknown:
        raise KeyError(f"loss.grades: unknown label(s) {unknown}; labels: {list(scheme.labels)}")
    base = default_grades(scheme)
    return [float(grades.get(label, base[i])) for i, label in enumerate(scheme.labels)]


# name -> factory(loss_config, scheme); later issues add soft_kl, margin_mse, listwise_kl, ...
LOSS_TERMS: dict[str, Callable[[Any, LabelScheme], nn.Module]] = {
    "hard_ce": lambda cfg, scheme: HardLabelCE(label_smoothing=cfg.label_smoothing),
    "soft_target_ce": lambda cfg, scheme: SoftTargetCE(
        scheme.num_labels,
        label_smoothing=cfg.label_smoothing,
        target_map=target_map_from_config(scheme.labels, cfg.soft_targets),
    ),
    "graded_bce": lambda cfg, scheme: GradedBCE(grades_from_config(cfg, scheme)),
    "cot_lm": lambda cfg, scheme: CotTokenCE(),
    "aspect_ce": lambda cfg, scheme: AspectCE(),
    "soft_kl": lambda cfg, scheme: SoftKL(cfg.temperature),
    "score_mse": lambda cfg, scheme: ScoreMSE(scheme.gains),
    "score_bce": lambda cfg, scheme: ScoreBCE(scheme.gains),
    "margin_mse": lambda cfg, scheme: MarginMSE(scheme.gains),
    "listwise_kl": lambda cfg, scheme: ListwiseKL(scheme.gains, cfg.listwise_temperature),
}
# terms that read outputs only a teacher produces (CoT tokens, aspect slots)
TEACHER_ONLY_TERMS: frozenset[str] = frozenset({"cot_lm", "aspect_ce"})
# student terms that read a teacher cache's fields (data.teacher_cache)
DISTILLATION_TERMS: frozenset[str] = frozenset(
    {"soft_kl", "score_mse", "score_bce", "margin_mse", "listwise_kl"}
)
# distillation terms that compare items of one query (need data.group_size >= 2)
GROUPED_TERMS: frozenset[str] = frozenset({"margin_mse", "listwise_kl"})


def build_loss(loss_cfg: Any, scheme: LabelScheme) -> WeightedLoss:
    """The combiner for ``loss_cfg.weights``; terms with weight 0 are left out."""
    active = {name: float(w) for name, w in loss_cfg.weights.items() if w > 0}
    unknown = sorted(set(active) - set(LOSS_TERMS))
    if unknown:
        raise KeyError(f"unknown loss term(s) {unknown}; known: {sorted(LOSS_TERMS)}")
    return WeightedLoss({name: LOSS_TERMS[name](loss_cfg, scheme) for name in active}, active)
