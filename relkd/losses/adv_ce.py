"""Contrastive adversarial training: cross-entropy of the perturbed pass on the human labels."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from relkd.losses.hard_label_ce import HardLabelCE
from relkd.losses.loss_spec import LossSpec


class AdvCE(nn.Module):
    """``hard_ce`` on the logits of the perturbed forward pass (word embeddings moved along the
    clean loss's gradient, see lightning_modules/adversarial_pass.py): mean cross-entropy over
    labelled rows, unlabelled rows (label -1) ignored, ``loss.label_smoothing`` as in hard_ce.

    Shapes:
        outputs["adv_logits"]: (B, K) float, logits of the perturbed pass.
        batch["labels"]: (B,) int64 class index, -1 for unlabelled pairs.
        returns: () scalar; 0 (still differentiable) when no row is labelled.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ce = HardLabelCE(label_smoothing=label_smoothing)

    @property
    def label_smoothing(self) -> float:
        return self.ce.label_smoothing

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.ce({"logits": outputs["adv_logits"]}, batch)


SPEC = LossSpec(
    name="adv_ce",
    group="adversarial",
    build=lambda cfg, scheme, dims: AdvCE(label_smoothing=cfg.label_smoothing),
)
