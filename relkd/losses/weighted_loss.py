"""The one combiner: a weighted sum of named loss terms, returning every term for logging."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LossOutput:
    total: torch.Tensor  # () weighted sum, the value to backpropagate
    terms: dict[str, torch.Tensor]  # term name -> () unweighted value, logged as train/loss/<term>


class WeightedLoss(nn.Module):
    """``total = sum_t weight_t * term_t(outputs, batch)``.

    Each term is an ``nn.Module`` taking ``(outputs, batch)`` and returning a scalar; its own
    docstring gives the shapes it reads. Terms with weight 0 are never built, so an ablation that
    switches a term off also skips its compute. Weights are plain floats so Optuna can set them.
    """

    def __init__(self, terms: dict[str, nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        if set(terms) != set(weights):
            raise ValueError(f"terms {sorted(terms)} and weights {sorted(weights)} differ")
        if not terms:
            raise ValueError("WeightedLoss needs at least one term")
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> LossOutput:
        values = {name: term(outputs, batch) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return LossOutput(total=total, terms={name: v.detach() for name, v in values.items()})
