"""Loss-term names usable in ``loss.weights``, how each is built, and who can use it."""

from __future__ import annotations

import pkgutil
from importlib import import_module
from typing import Any

import relkd.losses as _losses_pkg
from relkd.data.label_scheme import LabelScheme
from relkd.errors import ConfigError
from relkd.losses.loss_spec import LossDims, LossSpec
from relkd.losses.weight_schedule import WeightSchedule
from relkd.losses.weighted_loss import WeightedLoss


def _collect_specs() -> dict[str, LossSpec]:
    """Every ``SPEC`` declared by a module of relkd/losses/, by term name."""
    specs: dict[str, LossSpec] = {}
    for info in sorted(pkgutil.iter_modules(_losses_pkg.__path__), key=lambda m: m.name):
        spec = getattr(import_module(f"relkd.losses.{info.name}"), "SPEC", None)
        if isinstance(spec, LossSpec):
            if spec.name in specs:
                raise ValueError(f"loss term {spec.name!r} declared twice")
            specs[spec.name] = spec
    return specs


SPECS: dict[str, LossSpec] = _collect_specs()


def _terms(**where: object) -> frozenset[str]:
    return frozenset(
        n for n, s in SPECS.items() if all(getattr(s, k) == v for k, v in where.items())
    )


# name -> factory(loss_config, scheme, dims)
LOSS_TERMS: dict[str, Any] = {name: spec.build for name, spec in SPECS.items()}
# terms that read outputs only a teacher produces (CoT tokens, aspect slots)
TEACHER_ONLY_TERMS: frozenset[str] = _terms(group="teacher")
# student terms that read a teacher cache's fields (data.teacher_cache)
DISTILLATION_TERMS: frozenset[str] = _terms(needs_cache=True)
# distillation terms that compare items of one query (need data.group_size >= 2)
GROUPED_TERMS: frozenset[str] = _terms(needs_group_size=True)
# distillation terms on auxiliary outputs (own heads), outside loss.kd_ratio's split
AUXILIARY_TERMS: frozenset[str] = _terms(group="auxiliary_kd")
# terms on the human labels: the (1 - kd_ratio) side of loss.kd_ratio
LABEL_TERMS: frozenset[str] = _terms(group="label")
# contrastive adversarial training: terms on a second forward pass over word embeddings
# perturbed along the clean loss's gradient (the student module runs that pass when any is on)
ADVERSARIAL_TERMS: frozenset[str] = _terms(group="adversarial")
# terms on a behaviour-sequence student's outputs (model.student seminar): neither label nor
# score-distillation terms, so loss.kd_ratio leaves their weight alone; seq_relevance reads the
# teacher cache only where present, so none is a DISTILLATION_TERM
SEQUENCE_TERMS: frozenset[str] = _terms(group="sequence")
# score-distillation terms: the kd_ratio side
SCORE_KD_TERMS: frozenset[str] = _terms(group="score_kd")


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
