"""Score distillation as a soft binary target: BCE against the teacher's expected score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.teacher_targets import expected_score, gains_tensor, teacher_rows


class ScoreBCE(nn.Module):
    """Binary cross-entropy of ``softmax(s) @ gains`` (clamped to [1e-6, 1 - 1e-6]) against the
    cache's ``teacher_score`` as a soft target (Walmart's binary soft-target objective, fed by
    the teacher instead of a human grade).

    Shapes:
        outputs["logits"]: (B, K) student logits.
        batch["teacher_score"]: (B,) float in [0, 1]; batch["teacher_mask"]: (B,) bool.
        returns: () mean over covered rows; 0 (differentiable) when there are none.
    """

    def __init__(self, gains: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("gains", gains_tensor(gains), persistent=False)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["logits"]
        used = teacher_rows(batch)
        if not bool(used.any()):
            return logits.float().sum() * 0.0
        pred = expected_score(logits[used], self.gains).clamp(1e-6, 1 - 1e-6)
        target = batch["teacher_score"][used].float().clamp(0.0, 1.0)
        return F.binary_cross_entropy(pred, target)
