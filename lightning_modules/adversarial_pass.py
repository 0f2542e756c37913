"""Contrastive adversarial training (robust interaction-based relevance, Alibaba.com, ECML-PKDD'24):
a second forward pass over word embeddings perturbed along the clean loss's gradient.

The student module runs it in ``training_step`` when an adversarial loss term (``adv_ce``,
``adv_kl``, ``adv_contrastive``) is active; validation and test never perturb.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from relkd.losses.registry import ADVERSARIAL_TERMS
from relkd.losses.weighted_loss import LossOutput, WeightedLoss

Forward = Callable[..., dict[str, torch.Tensor]]


def supports_embeddings(net: nn.Module) -> bool:
    """Whether ``net``'s forward takes ``embeddings=`` and ``return_embeddings=`` (CrossEncoder)."""
    params = inspect.signature(net.forward).parameters
    return "embeddings" in params and "return_embeddings" in params


class AdversarialPass:
    """One adversarial training step: clean pass, perturbation, perturbed pass, full loss.

    1. The clean forward returns the (B, L, H) word (+ term-type) embeddings the encoder read.
    2. The clean loss is the weighted sum of the loss's non-adversarial terms at their current
       weights (``WeightedLoss.compute`` + ``weighted_sum``).
    3. ``g = ∂ clean loss / ∂ embeddings``; padding positions are zeroed (``attention_mask``),
       then ``delta = norm · g / ‖g‖`` with the L2 norm taken per example over (L, H); an example
       whose gradient is 0 gets no perturbation. ``delta`` is detached: it is a constant of the
       perturbed pass, not a path for gradients.
    4. The perturbed forward reads ``embeddings + delta``; its ``logits`` and ``pooled`` join the
       clean outputs as ``adv_logits`` and ``adv_pooled``.
    5. The adversarial terms are computed and every term is combined into one ``LossOutput``:
       its total (all terms) is the value to backpropagate.

    Gradients of the total reach the parameters through both passes (the perturbed pass's
    embeddings are the clean ones plus a constant). Parameters' ``requires_grad`` is never
    touched: with a frozen word table (and no term-type embeddings) the embeddings the net
    returns hold no graph, so the clean pass is run again on a grad-requiring copy of them (one
    extra encoder forward per step in that configuration only).

    Args:
        norm: the L2 norm of ``delta`` per example (``loss.adversarial.norm``).
        relative: ``norm`` is a share of each example's own embedding norm over its real tokens
            (``loss.adversarial.relative``): ``‖delta‖ = norm · ‖embeddings · mask‖``, so one
            setting means the same strength for encoders whose embeddings differ in scale
            (tiny-bert's rows are ~0.2 long, MiniLM's larger).
    """

    def __init__(self, norm: float, relative: bool = False) -> None:
        if not norm > 0:
            raise ValueError(f"the perturbation norm must be > 0, got {norm}")
        self.norm = float(norm)
        self.relative = bool(relative)

    def perturbation(
        self, clean_loss: torch.Tensor, embeddings: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, H) ``delta``, detached, in ``embeddings``' dtype: ``norm`` times the clean
        loss's gradient w.r.t. ``embeddings``, masked to the real tokens and L2-normalised per
        example over (L, H). The graph of ``clean_loss`` is kept (it is backpropagated later)."""
        grad = None
        if clean_loss.requires_grad:
            (grad,) = torch.autograd.grad(
                clean_loss, embeddings, retain_graph=True, allow_unused=True
            )
        if grad is None:  # no clean term depends on the embeddings
            return torch.zeros_like(embeddings).detach()
        mask = attention_mask.detach()[..., None].float()
        g = grad.detach().float() * mask
        length = g.flatten(1).norm(dim=1)
        nonzero = length > 0
        target = torch.full_like(length, self.norm)
        if self.relative:
            target = self.norm * (embeddings.detach().float() * mask).flatten(1).norm(dim=1)
        scale = nonzero * target / torch.where(nonzero, length, torch.ones_like(length))
        return (g * scale[:, None, None]).to(embeddings.dtype)

    def __call__(
        self, forward: Forward, loss: WeightedLoss, batch: Mapping[str, Any]
    ) -> tuple[LossOutput, dict[str, torch.Tensor]]:
        """``forward(**extra)`` runs the net on the batch with extra keyword arguments
        (``return_embeddings``, ``embeddings``); returns the full loss and the clean outputs
        (with ``adv_logits`` and ``adv_pooled``)."""
        out = dict(forward(return_embeddings=True))
        embeddings = out["embeddings"]
        if not embeddings.requires_grad:
            # a frozen word table: differentiate against a leaf copy, leaving parameters alone
            embeddings = embeddings.detach().requires_grad_(True)
            out = dict(forward(embeddings=embeddings))
            out["embeddings"] = embeddings
        clean = [name for name in loss.terms if name not in ADVERSARIAL_TERMS]
        adversarial = [name for name in loss.terms if name in ADVERSARIAL_TERMS]
        values = loss.compute(out, batch, clean)
        delta = self.perturbation(loss.weighted_sum(values), embeddings, batch["attention_mask"])
        perturbed = forward(embeddings=embeddings + delta)
        out["adv_logits"], out["adv_pooled"] = perturbed["logits"], perturbed["pooled"]
        values.update(loss.compute(out, batch, adversarial))
        return loss.combine(values), out


__all__ = ["AdversarialPass", "supports_embeddings"]
