"""What the distillation terms share: which rows carry a teacher judgement, and the expected
score a K-way output implies (the scale the teacher cache's ``score`` is on)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


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
