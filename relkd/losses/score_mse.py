"""Score distillation by regression: the student's expected score against the teacher's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.teacher_targets import expected_score, gains_tensor, teacher_rows


class ScoreMSE(nn.Module):
    """Mean squared error between ``softmax(s) @ gains`` and the cache's ``teacher_score``
    (the expected gain under the teacher's distribution, on the same gains).

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
        pred = expected_score(logits[used], self.gains)
        return F.mse_loss(pred, batch["teacher_score"][used].float())
