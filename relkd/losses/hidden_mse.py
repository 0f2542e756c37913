"""Intermediate-representation distillation: the student's pooled vector, projected, against
the teacher LLM's pooled hidden state (FitNets-style hint matching)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import teacher_rows, zero_loss


class HiddenMSE(nn.Module):
    """``‖normalize(W s) − normalize(h)‖²`` per covered row, averaged over the rows, with a
    learned projection ``W: Linear(H_s, H_t)`` owned by the term.

    Both vectors are L2-normalised first: an LLM's hidden states have large norms that vary from
    row to row and layer to layer (a few outlier dimensions dominate), so a raw MSE would be
    driven by the norm instead of the direction and its scale would depend on the teacher. On
    unit vectors the value is ``2 − 2·cos`` in [0, 4] whatever ``H_t`` is, so the term's weight
    transfers across teachers.

    Shapes:
        outputs["pooled"]: (B, H_s) float, the student's pooled output.
        batch["teacher_hidden"]: (B, H_t) float16 (cast to float), the teacher's pooled hidden
        state; batch["teacher_mask"]: (B,) bool.
        returns: () mean over covered rows; 0 (differentiable, also for the projection) when
        there are none.
    """

    def __init__(self, pooled_dim: int, teacher_hidden_dim: int) -> None:
        super().__init__()
        if pooled_dim < 1 or teacher_hidden_dim < 1:
            raise ValueError(f"dims must be >= 1, got {pooled_dim}, {teacher_hidden_dim}")
        self.teacher_hidden_dim = teacher_hidden_dim
        self.proj = nn.Linear(pooled_dim, teacher_hidden_dim)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        pooled = outputs["pooled"]
        used = teacher_rows(batch)
        if "teacher_hidden" not in batch:
            raise KeyError(
                "hidden_mse needs batch['teacher_hidden']: annotate the cache with --hidden "
                "and set data.with_hidden"
            )
        hidden = batch["teacher_hidden"]
        if hidden.shape[-1] != self.teacher_hidden_dim:
            raise ValueError(
                f"teacher_hidden has width {hidden.shape[-1]}, the projection expects "
                f"{self.teacher_hidden_dim} (the cache's teacher differs from the one configured)"
            )
        if not bool(used.any()):
            proj = sum(p.sum() for p in self.proj.parameters()) * 0.0
            return zero_loss(pooled) + proj
        s = F.normalize(self.proj(pooled[used]).float(), dim=-1)
        t = F.normalize(hidden[used].float(), dim=-1)
        return (s - t).pow(2).sum(-1).mean()


SPEC = LossSpec(
    name="hidden_mse",
    group="auxiliary_kd",
    build=lambda cfg, scheme, dims: HiddenMSE(
        dims.need("pooled_dim", "hidden_mse"), dims.need("teacher_hidden_dim", "hidden_mse")
    ),
    needs_cache=True,
)
