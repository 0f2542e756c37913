"""Score-distribution distillation: KL(teacher || student) over the label set (Hinton et al.)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import teacher_rows, zero_loss


class SoftKL(nn.Module):
    """``T² · KL(softmax(t / T) ‖ softmax(s / T))``, averaged over the rows the teacher covers.

    The T² factor keeps the gradient's scale independent of the temperature, so ``T`` can be
    searched without retuning the term's weight. ``loss.temperature_schedule`` anneals T:
    :meth:`set_temperature_scale` (called by ``WeightedLoss.set_progress``) multiplies the base
    ``temperature`` by the schedule's value.

    Shapes:
        outputs["logits"]: (B, K) student logits.
        batch["teacher_logits"]: (B, K) teacher logits; batch["teacher_mask"]: (B,) bool.
        returns: () mean over covered rows; 0 (differentiable) when there are none.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = float(temperature)  # the base T (loss.temperature)
        self.temperature_scale = 1.0

    @property
    def current_temperature(self) -> float:
        return self.temperature * self.temperature_scale

    def set_temperature_scale(self, scale: float) -> None:
        """Use ``T = temperature * scale`` from now on (a temperature schedule's multiplier)."""
        if not scale > 0:
            raise ValueError(f"temperature scale must be > 0, got {scale}")
        self.temperature_scale = float(scale)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["logits"].float()
        used = teacher_rows(batch)
        if not bool(used.any()):
            return zero_loss(logits)
        t = self.current_temperature
        log_q = (logits[used] / t).log_softmax(-1)
        log_p = (batch["teacher_logits"][used].float() / t).log_softmax(-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)
        return kl.mean() * t * t


SPEC = LossSpec(
    name="soft_kl",
    group="score_kd",
    build=lambda cfg, scheme, dims: SoftKL(cfg.temperature),
    needs_cache=True,
)
