"""The one combiner: a weighted sum of named loss terms, returning every term for logging."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LossOutput:
    total: torch.Tensor  # () weighted sum, the value to backpropagate
    terms: dict[str, torch.Tensor]  # term name -> () unweighted value, logged as train/loss/<term>
    # scheduled terms only: name -> the weight used for this step, logged as train/weight/<term>
    weights: dict[str, float] = field(default_factory=dict)


class WeightedLoss(nn.Module):
    """``total = sum_t weight_t(p) * term_t(outputs, batch)``.

    Each term is an ``nn.Module`` taking ``(outputs, batch)`` and returning a scalar; its own
    docstring gives the shapes it reads. Terms with weight 0 are never built, so an ablation that
    switches a term off also skips its compute. Weights are plain floats so Optuna can set them.

    ``weights`` are the base weights. A term with a schedule (``loss.schedules``) uses
    ``weight * schedule(p)`` where ``p`` is the training fraction last given to
    :meth:`set_progress` (0 until then, so a warm-up starts at its ``start``). The
    ``temperature_schedule``'s multiplier goes to every term with a ``set_temperature_scale``
    method (``soft_kl``).
    """

    def __init__(
        self,
        terms: dict[str, nn.Module],
        weights: dict[str, float],
        schedules: Mapping[str, Callable[[float], float]] | None = None,
        temperature_schedule: Callable[[float], float] | None = None,
    ) -> None:
        super().__init__()
        if set(terms) != set(weights):
            raise ValueError(f"terms {sorted(terms)} and weights {sorted(weights)} differ")
        if not terms:
            raise ValueError("WeightedLoss needs at least one term")
        schedules = dict(schedules or {})
        extra = sorted(set(schedules) - set(terms))
        if extra:
            raise ValueError(f"schedules for {extra}, which are not terms {sorted(terms)}")
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)
        self.schedules = schedules
        self.temperature_schedule = temperature_schedule
        self.progress = 0.0
        self._current = dict(self.weights)
        self.set_progress(0.0)

    def set_progress(self, p: float) -> None:
        """Move the schedules to training fraction ``p`` in [0, 1] (clamped)."""
        p = min(max(float(p), 0.0), 1.0)
        self.progress = p
        self._current = {
            name: w * self.schedules[name](p) if name in self.schedules else w
            for name, w in self.weights.items()
        }
        scale = self.temperature_schedule(p) if self.temperature_schedule is not None else 1.0
        for term in self.terms.values():
            set_scale = getattr(term, "set_temperature_scale", None)
            if callable(set_scale):
                set_scale(scale)

    def current_weights(self) -> dict[str, float]:
        """Every term's weight at the current progress."""
        return dict(self._current)

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> LossOutput:
        values = {name: term(outputs, batch) for name, term in self.terms.items()}
        total = sum(self._current[name] * value for name, value in values.items())
        return LossOutput(
            total=total,
            terms={name: v.detach() for name, v in values.items()},
            weights={name: self._current[name] for name in self.schedules},
        )
