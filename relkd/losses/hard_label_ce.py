"""Cross-entropy on the human (hard) labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec


class HardLabelCE(nn.Module):
    """Mean cross-entropy over labelled rows; unlabelled rows (label -1) are ignored.

    Shapes:
        outputs["logits"]: (B, K) float, student logits over the scheme's labels.
        batch["labels"]: (B,) int64 class index, -1 for unlabelled pairs.
        returns: () scalar. A batch with no labelled row gives 0 (still differentiable), so
        mixing in unlabelled pairs for distillation terms never produces NaN here.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        logits, labels = outputs["logits"], batch["labels"]
        if not bool((labels >= 0).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(
            logits.float(), labels, ignore_index=-1, label_smoothing=self.label_smoothing
        )


SPEC = LossSpec(
    name="hard_ce",
    group="label",
    build=lambda cfg, scheme, dims: HardLabelCE(label_smoothing=cfg.label_smoothing),
)
