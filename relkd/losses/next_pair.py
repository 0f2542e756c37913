"""SEMINAR's next-pair pretraining objective: from the user's history, pick the query–item pair
the user chose next among sampled and in-batch pairs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec
from relkd.losses.seq_relevance import check_temperature, mask_same_item
from relkd.losses.teacher_targets import zero_loss


class NextPair(nn.Module):
    """InfoNCE of the user state against the next pair, with sampled and in-batch negatives.

    Only rows the user actually chose (``event_clicked == 1``) with at least one real history
    event qualify: an unclicked pair is not the next choice, and an empty history predicts
    nothing. With ``u``, ``p``, ``n`` the L2-normalised ``seq_user``, ``seq_pair`` and
    ``seq_neg_pair``, qualifying row b's logits are ``[u_b · p_c / τ for every batch row c]``
    (c = b the positive; −inf where c ≠ b holds the same item as b, so a repeated item is not
    its own negative) followed by ``[u_b · n_bk / τ for its N sampled pairs]``; the term is the
    mean cross-entropy against column b over qualifying rows. A sampled item that is the
    positive's own item (``neg_item_row`` equal to ``seq_item_row``) is masked too.

    Shapes:
        outputs["seq_user"]: (B, D) float, the user state before this pair's time.
        outputs["seq_pair"]: (B, D) float, this (query, item) pair's vector.
        outputs["seq_neg_pair"]: (B, N, D) float, the query paired with N sampled items.
        batch["seq_item_row"]: (B,) int64; batch["neg_item_row"]: (B, N) int64 (optional);
        batch["event_clicked"]: (B,) int64 0/1;
        batch["hist_mask"]: (B, L) int64, 1 on real history events.
        returns: () scalar, computed in float32; 0 (differentiable in every input) when no row
        qualifies.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        user, pair, neg = outputs["seq_user"], outputs["seq_pair"], outputs["seq_neg_pair"]
        used = (batch["event_clicked"] == 1) & (batch["hist_mask"].sum(-1) > 0)
        if not bool(used.any()):
            return zero_loss(user) + zero_loss(pair) + zero_loss(neg)
        rows = used.nonzero().squeeze(1)
        u = F.normalize(user[rows].float(), dim=-1)
        p = F.normalize(pair.float(), dim=-1)
        n = F.normalize(neg[rows].float(), dim=-1)
        in_batch = mask_same_item(u @ p.T / self.temperature, batch["seq_item_row"], rows)
        sampled = torch.einsum("rd,rnd->rn", u, n) / self.temperature
        if "neg_item_row" in batch:
            own = batch["neg_item_row"][rows] == batch["seq_item_row"][rows].unsqueeze(1)
            sampled = sampled.masked_fill(own, float("-inf"))
        return F.cross_entropy(torch.cat([in_batch, sampled], dim=1), rows)


SPEC = LossSpec(
    name="next_pair",
    group="sequence",
    build=lambda cfg, scheme, dims: NextPair(cfg.sequence.temperature),
)
