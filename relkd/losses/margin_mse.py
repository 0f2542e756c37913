"""Walmart's Margin-MSE: the student's score margins between items of a query against the
teacher's."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import TeacherScoreTerm, zero_loss


class MarginMSE(TeacherScoreTerm):
    """For every query in the batch and every pair of its items i < j the teacher covers,
    ``((s_i − s_j) − (t_i − t_j))²`` scaled by ``2 / (n(n − 1))`` (the mean over the query's
    pairs), then averaged over the queries with at least two such items. ``s`` is the student's
    expected gain ``softmax(logits) @ gains`` and ``t`` the cache's ``teacher_score`` (the same
    scale). Batches need several items per query: set ``data.group_size``.

    Shapes:
        outputs["logits"]: (B, K) student logits.
        batch["teacher_score"]: (B,) float; batch["teacher_mask"]: (B,) bool;
        batch["query_index"]: (B,) int64, the query each row belongs to.
        returns: () mean over queries; 0 (differentiable) when no query has two covered items.
    """

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        used, s, t = self.scores(outputs, batch)
        q = batch["query_index"][used]
        same = q[:, None] == q[None, :]
        pairs = same & torch.ones_like(same).triu(diagonal=1)
        _, group, counts = torch.unique(q, return_inverse=True, return_counts=True)
        n = counts[group].float()  # items of each row's query
        ok = n >= 2
        if not bool(ok.any()):
            return zero_loss(outputs["logits"])
        per_pair = ((s[:, None] - s[None, :]) - (t[:, None] - t[None, :])) ** 2
        scale = (2.0 / (n * (n - 1)).clamp_min(1.0))[:, None]  # the query of row i
        per_query_sum = (per_pair * pairs * scale).sum()
        return per_query_sum / int((counts >= 2).sum())


SPEC = LossSpec(
    name="margin_mse",
    group="score_kd",
    build=lambda cfg, scheme, dims: MarginMSE(scheme.gains),
    needs_cache=True,
    needs_group_size=True,
)
