"""The one combiner: a weighted sum of named loss terms, returning every term for logging."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
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

    A caller that needs part of the loss before the rest exists (contrastive adversarial
    training differentiates the non-adversarial terms to build the perturbed pass the
    adversarial terms read) uses :meth:`compute` on a subset of terms, :meth:`weighted_sum` on
    them, and :meth:`combine` once every term has a value; ``forward`` is those three in one.
    ``adversarial_norm`` (``loss.adversarial.norm``, set by ``build_loss`` when an adversarial
    term is active) is the L2 norm of that perturbation, or with ``adversarial_relative`` its
    share of each example's embedding norm; None otherwise.
    """

    def __init__(
        self,
        terms: dict[str, nn.Module],
        weights: dict[str, float],
        schedules: Mapping[str, Callable[[float], float]] | None = None,
        temperature_schedule: Callable[[float], float] | None = None,
        adversarial_norm: float | None = None,
        adversarial_relative: bool = False,
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
        self.adversarial_norm = None if adversarial_norm is None else float(adversarial_norm)
        self.adversarial_relative = bool(adversarial_relative)
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

    def compute(
        self,
        outputs: dict[str, torch.Tensor],
        batch: dict[str, torch.Tensor],
        names: Collection[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The unweighted values (with their graphs) of the terms ``names`` (default: all)."""
        chosen = list(self.terms) if names is None else [n for n in self.terms if n in names]
        stray = sorted(set(names or ()) - set(self.terms))
        if stray:
            raise KeyError(f"{stray} are not terms {sorted(self.terms)}")
        return {name: self.terms[name](outputs, batch) for name in chosen}

    def weighted_sum(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum_t weight_t(p) * values[t]`` over the given terms, at the current weights."""
        if not values:
            raise ValueError("weighted_sum needs at least one term value")
        total = sum(self._current[name] * value for name, value in values.items())
        return total  # type: ignore[return-value]

    def combine(self, values: Mapping[str, torch.Tensor]) -> LossOutput:
        """The LossOutput of every term's value (from :meth:`compute`, in one or more calls)."""
        if set(values) != set(self.terms):
            raise ValueError(f"values for {sorted(values)}, terms are {sorted(self.terms)}")
        values = {name: values[name] for name in self.terms}
        return LossOutput(
            total=self.weighted_sum(values),
            terms={name: v.detach() for name, v in values.items()},
            weights={name: self._current[name] for name in self.schedules},
        )

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> LossOutput:
        return self.combine(self.compute(outputs, batch))
