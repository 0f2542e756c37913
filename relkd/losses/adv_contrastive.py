"""Contrastive adversarial training: InfoNCE between clean and perturbed pair vectors."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec


class AdvContrastive(nn.Module):
    """Symmetric InfoNCE between the clean and the perturbed pass's pooled vectors.

    With ``c_i``, ``a_i`` the L2-normalised ``pooled`` and ``adv_pooled`` of row i and
    ``s_ij = c_i · a_j / τ``, the term is ``½ [CE(s, I) + CE(sᵀ, I)]``: each clean vector must
    pick its own perturbed vector among the batch's (and each perturbed vector its clean one);
    the batch's other rows are the negatives (rows of the same pair, e.g. repeated items, are
    negatives too). Gradients flow through both sides. A batch of one row gives 0.

    Shapes:
        outputs["pooled"]: (B, H) float, the clean pass's pair vectors.
        outputs["adv_pooled"]: (B, H) float, the perturbed pass's.
        returns: () scalar, computed in float32.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = float(temperature)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        clean = F.normalize(outputs["pooled"].float(), dim=-1)
        adv = F.normalize(outputs["adv_pooled"].float(), dim=-1)
        sim = clean @ adv.T / self.temperature
        target = torch.arange(sim.shape[0], device=sim.device)
        return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


SPEC = LossSpec(
    name="adv_contrastive",
    group="adversarial",
    build=lambda cfg, scheme, dims: AdvContrastive(cfg.adversarial.temperature),
)
