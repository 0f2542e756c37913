"""Binary cross-entropy on a graded relevance target (Walmart's {0, 0.5, 1} mapping)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from relkd.data.label_scheme import LabelScheme
from relkd.losses.loss_spec import LossSpec


class GradedBCE(nn.Module):
    """BCE between the predicted grade and the label's grade.

    The prediction is the expected grade under the softmax of ``outputs["logits"]``
    (``p @ grades``, in [0, 1]); the target is ``grades[label]``. With grades Exact 1,
    Substitute 0.5, others 0 this is the binary soft-target objective reported for Walmart's
    teacher, expressed on a K-way verbalizer.

    Shapes:
        outputs["logits"]: (B, K) float; outputs["verdict_mask"]: optional (B,) bool.
        batch["labels"]: (B,) int64, -1 = unlabelled (ignored).
        returns: () mean over labelled rows; 0 (differentiable) when there are none.
    """

    def __init__(self, grades: Sequence[float]) -> None:
        super().__init__()
        g = torch.tensor(list(grades), dtype=torch.float32)
        if ((g < 0) | (g > 1)).any():
            raise ValueError("grades must lie in [0, 1]")
        self.register_buffer("grades", g, persistent=False)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["logits"].float()
        labels = batch["labels"]
        used = labels >= 0
        mask = outputs.get("verdict_mask")
        if mask is not None:
            used = used & mask
        if not bool(used.any()):
            return logits.sum() * 0.0
        grades = self.grades.to(logits.device)
        pred = (logits[used].softmax(-1) @ grades).clamp(1e-6, 1 - 1e-6)
        return F.binary_cross_entropy(pred, grades[labels[used]])


def default_grades(scheme: LabelScheme) -> list[float]:
    """Walmart's mapping: the top label 1, the next 0.5, the rest 0."""
    return [1.0 if i == 0 else 0.5 if i == 1 else 0.0 for i in range(scheme.num_labels)]


def grades_from_config(cfg: Any, scheme: LabelScheme) -> list[float]:
    """``loss.grades`` (label -> grade) over :func:`default_grades`; an unknown label is a
    KeyError naming it."""
    grades = dict(cfg.grades or {})
    unknown = sorted(set(grades) - set(scheme.labels))
    if unknown:
        raise KeyError(f"loss.grades: unknown label(s) {unknown}; labels: {list(scheme.labels)}")
    base = default_grades(scheme)
    return [float(grades.get(label, base[i])) for i, label in enumerate(scheme.labels)]


SPEC = LossSpec(
    name="graded_bce",
    group="label",
    build=lambda cfg, scheme, dims: GradedBCE(grades_from_config(cfg, scheme)),
)
