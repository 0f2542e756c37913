"""Score distillation as a soft binary target: BCE against the teacher's expected score."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import TeacherScoreTerm, zero_loss


class ScoreBCE(TeacherScoreTerm):
    """Binary cross-entropy of ``softmax(s) @ gains`` (clamped to [1e-6, 1 - 1e-6]) against the
    cache's ``teacher_score`` as a soft target (Walmart's binary soft-target objective, fed by
    the teacher instead of a human grade).

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
        return F.binary_cross_entropy(s.clamp(1e-6, 1 - 1e-6), t.clamp(0.0, 1.0))


SPEC = LossSpec(
    name="score_bce",
    group="score_kd",
    build=lambda cfg, scheme, dims: ScoreBCE(scheme.gains),
    needs_cache=True,
)
