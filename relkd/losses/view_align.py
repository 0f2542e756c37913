"""SEMINAR's multi-modal alignment pretraining objective: an item's views (id, text,
attribute embeddings) should identify each other across the batch (CLIP-style)."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec
from relkd.losses.seq_relevance import check_temperature, mask_same_item
from relkd.losses.teacher_targets import zero_loss


class ViewAlign(nn.Module):
    """Symmetric InfoNCE between every unordered pair of an item's views, averaged over pairs.

    For views a < b with ``x``, ``y`` their L2-normalised vectors and ``S_ij = x_i · y_j / τ``
    (−inf where j ≠ i holds the same item as i, in both directions, so a repeated item is not
    its own negative), a pair contributes ``½ [CE(S, I) + CE(Sᵀ, I)]``: each view of an item must
    pick the same item's other view among the batch's. A single view or a single row gives 0.

    Shapes:
        outputs["seq_views"]: (B, V, D) float, the item's V views projected to D.
        batch["seq_item_row"]: (B,) int64, the item's catalogue row.
        returns: () scalar, computed in float32; 0 (differentiable) when V = 1 or B = 1.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        views = outputs["seq_views"]
        n_rows, n_views = views.shape[0], views.shape[1]
        if n_views < 2 or n_rows < 2:
            return zero_loss(views)
        v = F.normalize(views.float(), dim=-1)
        item_row = batch["seq_item_row"]
        target = torch.arange(n_rows, device=views.device)
        terms = []
        for a, b in combinations(range(n_views), 2):
            # the duplicate mask is symmetric, so masking S masks Sᵀ too
            sim = mask_same_item(v[:, a] @ v[:, b].T / self.temperature, item_row)
            terms.append(0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)))
        return torch.stack(terms).mean()


SPEC = LossSpec(
    name="view_align",
    group="sequence",
    build=lambda cfg, scheme, dims: ViewAlign(cfg.sequence.temperature),
)
