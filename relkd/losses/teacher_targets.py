"""What the distillation terms share: which rows carry a teacher judgement, and the expected
score a K-way output implies (the scale the teacher cache's ``score`` is on)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


def teacher_rows(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(B,) bool: rows whose pair the teacher cache covers (``teacher_mask``)."""
    if "teacher_mask" not in batch:
        raise KeyError(
            "a distillation loss term needs teacher fields in the batch: set data.teacher_cache"
        )
    return batch["teacher_mask"].bool()


def gains_tensor(gains: Sequence[float]) -> torch.Tensor:
    g = torch.tensor(list(gains), dtype=torch.float32)
    if ((g < 0) | (g > 1)).any():
        raise ValueError("gains must lie in [0, 1]")
    return g


def expected_score(logits: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """(B,) expected gain under softmax(logits): ``softmax(logits) @ gains``."""
    return logits.float().softmax(-1) @ gains.to(logits.device)


def zero_loss(logits: torch.Tensor) -> torch.Tensor:
    """A differentiable 0 for a batch with nothing to compare (keeps DDP's graph complete)."""
    return logits.float().sum() * 0.0


class TeacherScoreTerm(nn.Module):
    """Base of the terms comparing the student's expected gain ``softmax(logits) @ gains`` with
    the cache's ``teacher_score`` (the expected gain under the teacher's distribution)."""

    def __init__(self, gains: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("gains", gains_tensor(gains), persistent=False)

    def scores(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(used, s, t)``: the covered rows (B,) bool, and the student's and the teacher's
        scores on them (N,)."""
        used = teacher_rows(batch)
        s = expected_score(outputs["logits"][used], self.gains)
        return used, s, batch["teacher_score"][used].float()
