"""SEMINAR's query–item relevance pretraining objective: InfoNCE between the query vector and
the item vector with in-batch negatives, weighted by the teacher's relevance or the click."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import zero_loss


def check_temperature(temperature: float) -> float:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


def mask_same_item(
    sim: torch.Tensor, item_row: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """``sim`` with −inf where column c holds the same catalogue item as row r's positive but
    is not that positive: a repeated item in the batch is not its own negative.

    Shapes:
        sim: (R, B) float, row r's scores over the batch's B columns.
        item_row: (B,) int64, each column's catalogue row.
        rows: (R,) int64, the column of each row's positive; None means ``arange(B)`` (R = B).
        returns: (R, B), the positive column never masked.
    """
    if rows is None:
        rows = torch.arange(sim.shape[0], device=sim.device)
    cols = torch.arange(sim.shape[1], device=sim.device)
    same = item_row[rows].unsqueeze(1) == item_row.unsqueeze(0)
    return sim.masked_fill(same & (cols.unsqueeze(0) != rows.unsqueeze(1)), float("-inf"))


def relevance_weights(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(B,) float row weights: ``teacher_score`` where ``teacher_mask`` is set, else
    ``event_clicked`` (0 for an unclicked row the teacher does not cover)."""
    w = batch["event_clicked"].float()
    if "teacher_mask" in batch:
        if "teacher_score" not in batch:
            raise KeyError("seq_relevance: the batch has teacher_mask but no teacher_score")
        w = torch.where(batch["teacher_mask"].bool(), batch["teacher_score"].float(), w)
    return w


class SeqRelevance(nn.Module):
    """Weighted InfoNCE with in-batch negatives between the query and the item vectors.

    With ``q_b``, ``i_c`` the L2-normalised ``seq_query`` and ``seq_item``,
    ``s_bc = q_b · i_c / τ`` (−inf where c ≠ b holds the same item as b), ``CE_b`` the
    cross-entropy of row b's softmax against column b, and weights ``w_b`` = the teacher's
    expected relevance where the cache covers the pair, else the click, the term is
    ``Σ w_b CE_b / Σ w_b``. The teacher's score is a soft target: a pair it calls irrelevant
    pulls its query and item together with weight ≈ 0 (its item is still a negative for the
    other rows); without teacher fields only clicked pairs count.

    The SEMINAR release's version of this loss is sign-broken (minimising it pushes relevant
    queries and items apart); this is the InfoNCE the paper describes, pulling them together.

    Shapes:
        outputs["seq_query"]: (B, D) float, the query vectors.
        outputs["seq_item"]: (B, D) float, the item vectors.
        batch["seq_item_row"]: (B,) int64, the item's catalogue row (duplicates masked).
        batch["event_clicked"]: (B,) int64 0/1.
        batch["teacher_score"]: optional (B,) float in [0, 1]; batch["teacher_mask"]: (B,) bool.
        returns: () scalar, computed in float32; 0 (differentiable) when Σ w = 0.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        query, item = outputs["seq_query"], outputs["seq_item"]
        w = relevance_weights(batch).to(query.device)
        used = w > 0
        if not bool(used.any()):
            return zero_loss(query) + zero_loss(item)
        rows = used.nonzero().squeeze(1)
        q = F.normalize(query[rows].float(), dim=-1)
        i = F.normalize(item.float(), dim=-1)
        sim = mask_same_item(q @ i.T / self.temperature, batch["seq_item_row"], rows)
        ce = F.cross_entropy(sim, rows, reduction="none")
        w = w[rows]
        return (w * ce).sum() / w.sum()


SPEC = LossSpec(
    name="seq_relevance",
    group="sequence",
    build=lambda cfg, scheme, dims: SeqRelevance(cfg.sequence.temperature),
)
