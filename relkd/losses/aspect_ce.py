"""Cross-entropy of each CoT aspect step against the ground-truth aspect fact (ProRBP's
progressive steps, ELLM-rele's sub-tasks)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec


class AspectCE(nn.Module):
    """Mean cross-entropy over the (row, aspect) cells that have both a slot and a fact.

    Shapes:
        outputs["aspect_logits"]: (B, A, V) float, logits over the aspect values at each slot;
        outputs["aspect_mask"]: optional (B, A) bool, slots present in the row.
        batch["aspects"]: (B, A) int64 value index into ASPECT_VALUES, -1 = unknown.
        returns: () mean over the used cells; 0 (differentiable) when there are none.
    """

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["aspect_logits"].float()
        target = batch.get("aspects")
        if target is None:
            return logits.sum() * 0.0
        used = target >= 0
        mask = outputs.get("aspect_mask")
        if mask is not None:
            used = used & mask
        if not bool(used.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[used], target[used])


SPEC = LossSpec(
    name="aspect_ce",
    group="teacher",
    build=lambda cfg, scheme, dims: AspectCE(),
)
