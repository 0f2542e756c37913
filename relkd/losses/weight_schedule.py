"""A multiplier over training progress: loss-weight warm-ups and temperature annealing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SCHEDULE_KINDS: tuple[str, ...] = ("linear", "cosine", "step")


@dataclass(frozen=True)
class WeightSchedule:
    """``start`` at progress 0, moving to ``end`` at progress ``ramp`` and held there after.

    ``progress`` is the fraction of training done, in [0, 1] (values outside are clamped).
    Kinds: ``linear`` interpolates linearly; ``cosine`` follows half a cosine (flat at both ends
    of the ramp); ``step`` keeps ``start`` until ``ramp`` and jumps to ``end`` there. The
    defaults (linear 0 -> 1 over the first 10%) are a warm-up.
    """

    kind: str = "linear"
    start: float = 0.0
    end: float = 1.0
    ramp: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule kind {self.kind!r} not in {SCHEDULE_KINDS}")
        if not 0.0 < self.ramp <= 1.0:
            raise ValueError(f"schedule ramp must be in (0, 1], got {self.ramp}")
        if self.start < 0 or self.end < 0:
            raise ValueError(f"schedule start and end must be >= 0, got {self.start}, {self.end}")

    @classmethod
    def from_config(cls, cfg: Any) -> WeightSchedule:
        """From a ``ScheduleConfig`` (or any mapping / object with its four fields)."""
        return cls(str(cfg.kind), float(cfg.start), float(cfg.end), float(cfg.ramp))

    def __call__(self, progress: float) -> float:
        if math.isnan(progress):
            raise ValueError("schedule progress is NaN")
        p = min(max(float(progress), 0.0), 1.0)
        if p >= self.ramp:
            return self.end
        x = p / self.ramp
        if self.kind == "linear":
            return self.start + (self.end - self.start) * x
        if self.kind == "cosine":
            return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * x))
        return self.start  # step: before the ramp's end
