"""Listwise distillation: the teacher's ranking of a query's items as a distribution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from relkd.losses.loss_spec import LossSpec
from relkd.losses.teacher_targets import TeacherScoreTerm, zero_loss


class ListwiseKL(TeacherScoreTerm):
    """For every query in the batch with at least two items the teacher covers,
    ``KL(softmax(t / τ) ‖ softmax(s / τ))`` over those items, averaged over the queries. ``s``
    is the student's expected gain ``softmax(logits) @ gains`` and ``t`` the cache's
    ``teacher_score``; both lie in [0, 1], so τ is small (``loss.listwise_temperature``,
    default 0.1). Batches need several items per query: set ``data.group_size``. τ is not
    scheduled: ``loss.temperature_schedule`` scales ``loss.temperature`` (soft_kl) only, since τ
    works on a different scale (scores in [0, 1], not logits).

    Shapes:
        outputs["logits"]: (B, K) student logits.
        batch["teacher_score"]: (B,) float; batch["teacher_mask"]: (B,) bool;
        batch["query_index"]: (B,) int64.
        returns: () mean over queries; 0 (differentiable) when no query has two covered items.
    """

    def __init__(self, gains: Sequence[float], temperature: float = 0.1) -> None:
        super().__init__(gains)
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = float(temperature)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        used, s, t = self.scores(outputs, batch)
        s, t = s / self.temperature, t / self.temperature
        _, group, counts = torch.unique(
            batch["query_index"][used], return_inverse=True, return_counts=True
        )
        keep = counts[group] >= 2
        if not bool(keep.any()):
            return zero_loss(outputs["logits"])
        s, t, group = s[keep], t[keep], group[keep]
        g = int(counts.numel())

        # per-query log-softmax with scatter: log-sum-exp of each query's scores
        def log_softmax(x: torch.Tensor) -> torch.Tensor:
            top = torch.full((g,), -torch.inf, device=x.device).scatter_reduce(
                0, group, x, reduce="amax"
            )
            z = torch.zeros(g, device=x.device).index_add(0, group, (x - top[group]).exp())
            return x - top[group] - z.log()[group]

        log_p, log_q = log_softmax(t), log_softmax(s)
        per_row = log_p.exp() * (log_p - log_q)
        per_query = torch.zeros(g, device=s.device).index_add(0, group, per_row)
        return per_query[counts >= 2].mean()


SPEC = LossSpec(
    name="listwise_kl",
    group="score_kd",
    build=lambda cfg, scheme, dims: ListwiseKL(scheme.gains, cfg.listwise_temperature),
    needs_cache=True,
    needs_group_size=True,
)
