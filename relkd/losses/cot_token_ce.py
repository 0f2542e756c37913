"""Supervised fine-tuning loss on the CoT response tokens only (the prompt is never a target)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec


class CotTokenCE(nn.Module):
    """Mean next-token cross-entropy over every response token of the batch.

    Shapes:
        outputs["lm_logits"]: (N, V) float, the logits predicting each response token;
        outputs["lm_targets"]: (N,) int64 the response tokens (N counts all rows' tokens).
        returns: () mean over the N tokens; 0 (differentiable) when N is 0.
    """

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["lm_logits"]
        if logits.shape[0] == 0:
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), outputs["lm_targets"])


SPEC = LossSpec(
    name="cot_lm",
    group="teacher",
    build=lambda cfg, scheme, dims: CotTokenCE(),
)
