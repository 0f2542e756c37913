"""Loss-term names usable in ``loss.weights`` and how each is built from the loss config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from relkd.losses.hard_label_ce import HardLabelCE
from relkd.losses.weighted_loss import WeightedLoss

# name -> factory(loss_config) ; later issues add soft_kl, margin_mse, listwise_kl, cot, ...
LOSS_TERMS: dict[str, Callable[[Any], nn.Module]] = {
    "hard_ce": lambda cfg: HardLabelCE(label_smoothing=cfg.label_smoothing),
}


def build_loss(loss_cfg: Any) -> WeightedLoss:
    """The combiner for ``loss_cfg.weights``; terms with weight 0 are left out."""
    active = {name: float(w) for name, w in loss_cfg.weights.items() if w > 0}
    unknown = sorted(set(active) - set(LOSS_TERMS))
    if unknown:
        raise KeyError(f"unknown loss term(s) {unknown}; known: {sorted(LOSS_TERMS)}")
    return WeightedLoss({name: LOSS_TERMS[name](loss_cfg) for name in active}, active)
