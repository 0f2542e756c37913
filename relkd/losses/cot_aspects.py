"""Auxiliary CoT-aspect heads: the student predicts the teacher's parsed chain-of-thought aspect
verdicts (category, brand, model, attributes) from its own features."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import teacher_rows, zero_loss


class CotAspects(nn.Module):
    """Cross-entropy of one linear head per aspect (``len(ASPECT_VALUES)`` classes each, stored as
    a single ``Linear(F, A·V)``) against the teacher's aspect codes, averaged over the (row,
    aspect) slots the teacher covers and parsed. The term owns the heads, so they are trained
    with the student and dropped with the loss at export.

    Shapes:
        outputs["features"]: (B, F) float, the student's features (a cross-encoder's pooled
        output; a two-tower's ``[u, v, |u−v|, u∘v]``).
        batch["teacher_aspects"]: (B, A) int64 index into ASPECT_VALUES per ASPECTS entry,
        -1 where missing; batch["teacher_mask"]: (B,) bool.
        returns: () mean over the present slots; 0 (differentiable, also for the heads) when
        there are none.
    """

    def __init__(
        self,
        feature_dim: int,
        num_aspects: int = len(ASPECTS),
        num_values: int = len(ASPECT_VALUES),
    ) -> None:
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        self.num_aspects, self.num_values = num_aspects, num_values
        self.heads = nn.Linear(feature_dim, num_aspects * num_values)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, A, V) aspect logits from (B, F) features."""
        return self.heads(features).view(-1, self.num_aspects, self.num_values)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        features = outputs["features"]
        covered = teacher_rows(batch)
        if "teacher_aspects" not in batch:
            raise KeyError("cot_aspects needs batch['teacher_aspects']: set data.teacher_cache")
        target = batch["teacher_aspects"].long()
        used = (target >= 0) & covered[:, None]
        if not bool(used.any()):
            heads = sum(p.sum() for p in self.heads.parameters()) * 0.0
            return zero_loss(features) + heads
        logits = self.logits(features).float()
        return F.cross_entropy(logits[used], target[used])


SPEC = LossSpec(
    name="cot_aspects",
    group="auxiliary_kd",
    build=lambda cfg, scheme, dims: CotAspects(dims.need("feature_dim", "cot_aspects")),
    needs_cache=True,
)
