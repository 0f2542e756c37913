"""What a loss term declares about itself: its name in ``loss.weights``, its group, what it
needs from the batch, and how it is built. Every loss file ends with its ``SPEC``; the registry
collects them, and the groups' term sets (and so the config's cross-term rules) derive from
them. A new term is its own file with a ``SPEC`` and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from relkd.data.label_scheme import LabelScheme
from relkd.errors import ConfigError

# label: on the human labels (the 1 - kd_ratio side of loss.kd_ratio); score_kd: distils the
# teacher's score or distribution (the kd_ratio side); auxiliary_kd: distils through its own
# heads (outside kd_ratio); teacher: reads outputs only a teacher produces (CoT tokens, aspect
# slots); adversarial: on the perturbed second pass; sequence: on a behaviour-sequence
# student's pretraining outputs
GROUPS = ("label", "score_kd", "auxiliary_kd", "teacher", "adversarial", "sequence")


@dataclass(frozen=True)
class LossDims:
    """Widths some terms need to build their own layers; None where the caller does not know."""

    feature_dim: int | None = None  # outputs["features"] (cot_aspects)
    pooled_dim: int | None = None  # outputs["pooled"] (hidden_mse)
    teacher_hidden_dim: int | None = None  # batch["teacher_hidden"] (hidden_mse)

    def need(self, name: str, term: str) -> int:
        """The width ``name`` for ``term``; a ConfigError naming it when the caller gave none."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(
                f"loss.weights.{term}: the term builds layers on {name}, which the caller did "
                f"not give: pass build_loss(..., {name}=...)"
            )
        return int(value)


@dataclass(frozen=True)
class LossSpec:
    """One loss term.

    Attributes:
        name: its key in ``loss.weights``.
        group: one of :data:`GROUPS`.
        build: ``(loss_config, scheme, dims) -> nn.Module``.
        needs_cache: reads a teacher cache's fields (``data.teacher_cache``).
        needs_group_size: compares items of one query (``data.group_size >= 2``).
    """

    name: str
    group: str
    build: Callable[[Any, LabelScheme, LossDims], nn.Module]
    needs_cache: bool = False
    needs_group_size: bool = False

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"loss term {self.name}: group {self.group!r} not in {GROUPS}")
        if self.needs_group_size and not self.needs_cache:
            raise ValueError(f"loss term {self.name}: a grouped term distils (needs_cache)")
