"""Contrastive adversarial training: symmetric KL between clean and perturbed predictions."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from relkd.losses.loss_spec import LossSpec


class AdvKL(nn.Module):
    """``½ [KL(p ‖ q) + KL(q ‖ p)]`` with ``p = softmax(logits)`` of the clean pass and
    ``q = softmax(adv_logits)`` of the perturbed one, per row, averaged over every row of the
    batch (labels are not read: unlabelled rows count too).

    The divergence is between class *probabilities* (log-softmax of each side), not between raw
    logits as in the authors' snippet: it is invariant to shifting a row's logits by a constant
    and is 0 exactly when both passes predict the same distribution.

    Gradients flow through both sides (neither is detached): the clean prediction is pulled
    toward the perturbed one as much as the perturbed one toward the clean one, which is what
    makes the term symmetric in its gradient as well as its value.

    Shapes:
        outputs["logits"]: (B, K) float, clean logits.
        outputs["adv_logits"]: (B, K) float, logits of the perturbed pass.
        returns: () scalar >= 0, computed in float32.
    """

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        log_p = outputs["logits"].float().log_softmax(-1)
        log_q = outputs["adv_logits"].float().log_softmax(-1)
        # KL(p‖q) + KL(q‖p) = Σ_k (p_k − q_k)(log p_k − log q_k)
        sym = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)
        return 0.5 * sym.mean()


SPEC = LossSpec(
    name="adv_kl",
    group="adversarial",
    build=lambda cfg, scheme, dims: AdvKL(),
)
