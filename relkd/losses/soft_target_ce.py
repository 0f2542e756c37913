"""Soft-target cross-entropy: the teacher's classifier objective (Walmart's soft targets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from relkd.losses.loss_spec import LossSpec


class SoftTargetCE(nn.Module):
    """Cross-entropy of ``outputs["logits"]`` against a target distribution per labelled row.

    The target of a row with label ``k`` is row ``k`` of ``target_map`` (default: one-hot), mixed
    with the uniform distribution by ``label_smoothing``. Rows with an annotator distribution
    (``batch["label_dist"]``, (B, K), rows of NaN where absent) use it instead.

    Shapes:
        outputs["logits"]: (B, K) float. outputs["verdict_mask"]: optional (B,) bool, rows whose
        logits were read (a teacher without a verdict slot in a row leaves it out).
        batch["labels"]: (B,) int64, -1 = unlabelled (ignored).
        returns: () mean over the used rows; 0 (differentiable) when there are none.
    """

    def __init__(
        self,
        num_labels: int,
        label_smoothing: float = 0.0,
        target_map: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1)")
        table = (
            torch.eye(num_labels)
            if target_map is None
            else torch.tensor(target_map, dtype=torch.float32)
        )
        if table.shape != (num_labels, num_labels):
            raise ValueError(
                f"target_map must be {num_labels}x{num_labels}, got {tuple(table.shape)}"
            )
        if (table < 0).any() or not torch.allclose(table.sum(1), torch.ones(num_labels)):
            raise ValueError("target_map rows must be probability distributions")
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("target_map", table, persistent=False)

    def targets(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K) target distributions and the (B,) mask of rows that have one."""
        labels = batch["labels"]
        k = self.target_map.shape[0]
        table = self.target_map.to(labels.device)
        dist = table[labels.clamp_min(0)]
        used = labels >= 0
        given = batch.get("label_dist")
        if given is not None:
            has = ~torch.isnan(given).any(1)
            dist = torch.where(has[:, None], torch.nan_to_num(given), dist)
            used = used | has
        if self.label_smoothing:
            dist = (1 - self.label_smoothing) * dist + self.label_smoothing / k
        return dist, used

    def forward(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["logits"].float()
        dist, used = self.targets(batch)
        mask = outputs.get("verdict_mask")
        if mask is not None:
            used = used & mask
        if not bool(used.any()):
            return logits.sum() * 0.0
        loss = -(dist[used] * logits[used].log_softmax(-1)).sum(-1)
        return loss.mean()


def target_map_from_config(
    labels: Sequence[str], soft_targets: Mapping[str, Mapping[str, float]] | None
) -> list[list[float]] | None:
    """``loss.soft_targets`` ({label: {label: weight}}) as a K x K row-stochastic table; labels
    not named keep one-hot rows. Weights are normalised per row."""
    if not soft_targets:
        return None
    index = {label: i for i, label in enumerate(labels)}
    table = [[1.0 if i == j else 0.0 for j in range(len(labels))] for i in range(len(labels))]
    for label, row in soft_targets.items():
        if label not in index:
            raise KeyError(f"loss.soft_targets: unknown label {label!r}; labels: {list(labels)}")
        unknown = sorted(set(row) - set(index))
        if unknown:
            raise KeyError(f"loss.soft_targets.{label}: unknown label(s) {unknown}")
        total = float(sum(row.values()))
        if total <= 0 or any(w < 0 for w in row.values()):
            raise ValueError(f"loss.soft_targets.{label}: weights must be >= 0 with a positive sum")
        table[index[label]] = [float(row.get(other, 0.0)) / total for other in labels]
    return table


SPEC = LossSpec(
    name="soft_target_ce",
    group="label",
    build=lambda cfg, scheme, dims: SoftTargetCE(
        scheme.num_labels,
        label_smoothing=cfg.label_smoothing,
        target_map=target_map_from_config(scheme.labels, cfg.soft_targets),
    ),
)
