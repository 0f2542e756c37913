"""Scalar curves from a run's TensorBoard event files, read with TensorBoard's own
``EventAccumulator`` (which also drops the steps a resumed run logged twice)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

LOSS_TAG = "train/loss"


@dataclass(frozen=True)
class ScalarCurve:
    steps: np.ndarray  # int64
    values: np.ndarray  # float64


def read_scalars(run_dir: Path, prefix: str = "") -> dict[str, ScalarCurve]:
    """tag -> curve for every scalar tag starting with ``prefix`` in the event files directly in
    ``run_dir`` (a run writes several: training, then testing); empty when there are none."""
    if not any(Path(run_dir).glob("events.out.tfevents.*")):
        return {}
    acc = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    curves = {}
    for tag in acc.Tags().get("scalars", []):
        if tag.startswith(prefix):
            events = acc.Scalars(tag)
            curves[tag] = ScalarCurve(
                np.array([e.step for e in events], dtype=np.int64),
                np.array([e.value for e in events], dtype=np.float64),
            )
    return curves


def loss_curves(run_dir: Path) -> dict[str, ScalarCurve]:
    """``total`` (``train/loss``) and each term of ``train/loss/<term>``, keyed by that name."""
    curves = read_scalars(run_dir, LOSS_TAG)
    out = {}
    if LOSS_TAG in curves:
        out["total"] = curves[LOSS_TAG]
    for tag, curve in sorted(curves.items()):
        if tag.startswith(LOSS_TAG + "/"):
            out[tag.removeprefix(LOSS_TAG + "/")] = curve
    return out
