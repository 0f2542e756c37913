"""Score distillation by regression: the student's expected score against the teacher's."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import TeacherScoreTerm, zero_loss


class ScoreMSE(TeacherScoreTerm):
    """Mean squared error between ``softmax(s) @ gains`` and the cache's ``teacher_score``
    (the expected gain under the teacher's distribution, on the same gains).

    Shapes:
        outputs["logits"]: (B, K) student logits.
        batch["teacher_score"]: (B,) float in [0, 1]; batch["teacher_mask"]: (B,) bool.
        returns: () mean over covered rows; 0 (differentiable) when there are none.
    """

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        used, s, t = self.scores(outputs, batch)
        if not bool(used.any()):
            return zero_loss(outputs["logits"])
        return F.mse_loss(s, t)


SPEC = LossSpec(
    name="score_mse",
    group="score_kd",
    build=lambda cfg, scheme, dims: ScoreMSE(scheme.gains),
    needs_cache=True,
)
