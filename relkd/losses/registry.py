"""Loss-term names usable in ``loss.weights``, how each is built, and who can use it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from relkd.data.label_scheme import LabelScheme
from relkd.errors import ConfigError
from relkd.losses.adv_ce import AdvCE
from relkd.losses.adv_contrastive import AdvContrastive
from relkd.losses.adv_kl import AdvKL
from relkd.losses.aspect_ce import AspectCE
from relkd.losses.cot_aspects import CotAspects
from relkd.losses.cot_token_ce import CotTokenCE
from relkd.losses.graded_bce import GradedBCE
from relkd.losses.hard_label_ce import HardLabelCE
from relkd.losses.hidden_mse import HiddenMSE
from relkd.losses.listwise_kl import ListwiseKL
from relkd.losses.margin_mse import MarginMSE
from relkd.losses.next_pair import NextPair
from relkd.losses.score_bce import ScoreBCE
from relkd.losses.score_mse import ScoreMSE
from relkd.losses.seq_relevance import SeqRelevance
from relkd.losses.soft_kl import SoftKL
from relkd.losses.soft_target_ce import SoftTargetCE, target_map_from_config
from relkd.losses.view_align import ViewAlign
from relkd.losses.weight_schedule import WeightSchedule
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


@dataclass(frozen=True)
class LossDims:
    """Widths some terms need to build their own layers; None where the caller does not know."""

    feature_dim: int | None = None  # outputs["features"] (cot_aspects)
    pooled_dim: int | None = None  # outputs["pooled"] (hidden_mse)
    teacher_hidden_dim: int | None = None  # batch["teacher_hidden"] (hidden_mse)


def _need(dims: LossDims, name: str, term: str) -> int:
    value = getattr(dims, name)
    if value is None:
        raise ConfigError(
            f"loss.weights.{term}: the term builds layers on {name}, which the caller did not "
            f"give: pass build_loss(..., {name}=...)"
        )
    return int(value)


# name -> factory(loss_config, scheme, dims)
LOSS_TERMS: dict[str, Callable[[Any, LabelScheme, LossDims], nn.Module]] = {
    "hard_ce": lambda cfg, scheme, dims: HardLabelCE(label_smoothing=cfg.label_smoothing),
    "soft_target_ce": lambda cfg, scheme, dims: SoftTargetCE(
        scheme.num_labels,
        label_smoothing=cfg.label_smoothing,
        target_map=target_map_from_config(scheme.labels, cfg.soft_targets),
    ),
    "graded_bce": lambda cfg, scheme, dims: GradedBCE(grades_from_config(cfg, scheme)),
    "cot_lm": lambda cfg, scheme, dims: CotTokenCE(),
    "aspect_ce": lambda cfg, scheme, dims: AspectCE(),
    "soft_kl": lambda cfg, scheme, dims: SoftKL(cfg.temperature),
    "score_mse": lambda cfg, scheme, dims: ScoreMSE(scheme.gains),
    "score_bce": lambda cfg, scheme, dims: ScoreBCE(scheme.gains),
    "margin_mse": lambda cfg, scheme, dims: MarginMSE(scheme.gains),
    "listwise_kl": lambda cfg, scheme, dims: ListwiseKL(scheme.gains, cfg.listwise_temperature),
    "cot_aspects": lambda cfg, scheme, dims: CotAspects(_need(dims, "feature_dim", "cot_aspects")),
    "hidden_mse": lambda cfg, scheme, dims: HiddenMSE(
        _need(dims, "pooled_dim", "hidden_mse"), _need(dims, "teacher_hidden_dim", "hidden_mse")
    ),
    # on the perturbed pass (lightning_modules/adversarial_pass.py): outputs adv_logits,
    # adv_pooled
    "adv_ce": lambda cfg, scheme, dims: AdvCE(label_smoothing=cfg.label_smoothing),
    "adv_kl": lambda cfg, scheme, dims: AdvKL(),
    "adv_contrastive": lambda cfg, scheme, dims: AdvContrastive(cfg.adversarial.temperature),
    # SEMINAR pretraining objectives on a behaviour-sequence student's outputs (seq_user,
    # seq_pair, seq_neg_pair, seq_query, seq_item, seq_views)
    "next_pair": lambda cfg, scheme, dims: NextPair(cfg.sequence.temperature),
    "seq_relevance": lambda cfg, scheme, dims: SeqRelevance(cfg.sequence.temperature),
    "view_align": lambda cfg, scheme, dims: ViewAlign(cfg.sequence.temperature),
}
# terms that read outputs only a teacher produces (CoT tokens, aspect slots)
TEACHER_ONLY_TERMS: frozenset[str] = frozenset({"cot_lm", "aspect_ce"})
# student terms that read a teacher cache's fields (data.teacher_cache)
DISTILLATION_TERMS: frozenset[str] = frozenset(
    {"soft_kl", "score_mse", "score_bce", "margin_mse", "listwise_kl", "cot_aspects", "hidden_mse"}
)
# distillation terms that compare items of one query (need data.group_size >= 2)
GROUPED_TERMS: frozenset[str] = frozenset({"margin_mse", "listwise_kl"})
# distillation terms on auxiliary outputs (own heads), outside loss.kd_ratio's split
AUXILIARY_TERMS: frozenset[str] = frozenset({"cot_aspects", "hidden_mse"})
# terms on the human labels: the (1 - kd_ratio) side of loss.kd_ratio
LABEL_TERMS: frozenset[str] = frozenset({"hard_ce", "soft_target_ce", "graded_bce"})
# contrastive adversarial training: terms on a second forward pass over word embeddings
# perturbed along the clean loss's gradient (the student module runs that pass when any is on)
ADVERSARIAL_TERMS: frozenset[str] = frozenset({"adv_ce", "adv_kl", "adv_contrastive"})
# terms on a behaviour-sequence student's outputs (model.student seminar): neither label nor
# score-distillation terms, so loss.kd_ratio leaves their weight alone; seq_relevance reads the
# teacher cache only where present, so none is a DISTILLATION_TERM
SEQUENCE_TERMS: frozenset[str] = frozenset({"next_pair", "seq_relevance", "view_align"})
# score-distillation terms: the kd_ratio side
SCORE_KD_TERMS: frozenset[str] = DISTILLATION_TERMS - AUXILIARY_TERMS


def kd_ratio_problem(loss_cfg: Any) -> str | None:
    """Why ``loss.kd_ratio`` cannot be applied to ``loss.weights``; None when it can (or is unset).

    A group needs a term with weight > 0 only if its share is > 0 (kd_ratio 1 needs no label
    term, kd_ratio 0 no distillation term).
    """
    r = getattr(loss_cfg, "kd_ratio", None)
    if r is None:
        return None
    if not 0.0 <= r <= 1.0:
        return f"must be in [0, 1], got {r}"
    weights = {name: float(w) for name, w in loss_cfg.weights.items() if w > 0}
    if r < 1 and not set(weights) & LABEL_TERMS:
        return (
            f"{r} leaves {1 - r:g} to the label terms, but no label term "
            f"{sorted(LABEL_TERMS)} has a weight > 0"
        )
    if r > 0 and not set(weights) & SCORE_KD_TERMS:
        return (
            f"{r} gives the distillation terms a share, but none of {sorted(SCORE_KD_TERMS)} "
            "has a weight > 0"
        )
    return None


def effective_weights(loss_cfg: Any) -> dict[str, float]:
    """The weights the loss uses: ``loss.weights`` > 0, expanded by ``loss.kd_ratio`` if set.

    With ``kd_ratio = r`` each label term gets ``(1 − r) · w / Σ(label w)`` and each
    score-distillation term ``r · w / Σ(distillation w)`` (the user's weights give the mix within
    a group); auxiliary and teacher-only terms keep their weight. Terms at 0 are left out. The
    config itself is not rewritten.
    """
    problem = kd_ratio_problem(loss_cfg)
    if problem is not None:
        raise ConfigError(f"loss.kd_ratio: {problem}")
    weights = {name: float(w) for name, w in loss_cfg.weights.items() if w > 0}
    r = getattr(loss_cfg, "kd_ratio", None)
    if r is None:
        return weights
    out = {}
    for group, share in ((LABEL_TERMS, 1.0 - r), (SCORE_KD_TERMS, float(r))):
        total = sum(w for name, w in weights.items() if name in group)
        for name, w in weights.items():
            if name in group:
                out[name] = share * w / total
    out.update({n: w for n, w in weights.items() if n not in LABEL_TERMS | SCORE_KD_TERMS})
    return {name: out[name] for name in weights if out[name] > 0}


def build_loss(
    loss_cfg: Any,
    scheme: LabelScheme,
    feature_dim: int | None = None,
    pooled_dim: int | None = None,
    teacher_hidden_dim: int | None = None,
) -> WeightedLoss:
    """The combiner for :func:`effective_weights`; terms with weight 0 are left out.

    With an adversarial term active the combiner carries ``loss.adversarial.norm`` and
    ``.relative`` (its ``adversarial_norm``, ``adversarial_relative``), the perturbation the
    student module's adversarial pass applies.

    The dims are the widths ``cot_aspects`` (``feature_dim``) and ``hidden_mse``
    (``pooled_dim``, ``teacher_hidden_dim``) build their layers on; a ConfigError names the one
    missing for an active term.
    """
    active = effective_weights(loss_cfg)
    unknown = sorted(set(active) - set(LOSS_TERMS))
    if unknown:
        raise KeyError(f"unknown loss term(s) {unknown}; known: {sorted(LOSS_TERMS)}")
    schedules = dict(getattr(loss_cfg, "schedules", None) or {})
    stray = sorted(set(schedules) - set(active))
    if stray:
        raise KeyError(f"loss.schedules: {stray} are not active loss terms {sorted(active)}")
    temperature = getattr(loss_cfg, "temperature_schedule", None)
    dims = LossDims(feature_dim, pooled_dim, teacher_hidden_dim)
    adversarial_norm, relative = None, False
    if set(active) & ADVERSARIAL_TERMS:
        adversarial_norm = float(loss_cfg.adversarial.norm)
        relative = bool(getattr(loss_cfg.adversarial, "relative", False))
    return WeightedLoss(
        {name: LOSS_TERMS[name](loss_cfg, scheme, dims) for name in active},
        active,
        schedules={name: WeightSchedule.from_config(s) for name, s in schedules.items()},
        temperature_schedule=None
        if temperature is None
        else WeightSchedule.from_config(temperature),
        adversarial_norm=adversarial_norm,
        adversarial_relative=relative,
    )
