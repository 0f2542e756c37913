"""MKD end to end on CPU: a tiny multi-aspect teacher annotates (with pooled hidden states), and
both students train from its cache with every MKD channel: score KD under a warm-up schedule and
kd_ratio, CoT aspect heads, hidden-state matching. Each channel must reach the student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from relkd.cli import main
from tests.conftest import REPO, tiny_overrides
from tests.teacher_fixtures import run_teacher


@pytest.fixture(scope="module")
def aspect_cache(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    tmp = tmp_path_factory.mktemp("mkd")
    run = run_teacher(tmp, shared_data_root, preset="multi_aspect")
    out = tmp / "cache"
    args = ["teacher", "annotate", str(run), "--out", str(out), "--splits", "train"]
    assert main([*args, "--prompt-cache", str(tmp / "prompts"), "--hidden", "mean", "--quiet"]) == 0
    return out


def scalars(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def test_the_cache_carries_aspects_and_hidden_states(aspect_cache: Path) -> None:
    final = aspect_cache / "final"
    aspects = np.load(final / "aspects.npy")
    assert (aspects >= 0).all()  # a progressive teacher answers every aspect of every pair
    hidden = np.load(final / "hidden.npy")
    assert hidden.shape[0] == aspects.shape[0] and np.isfinite(hidden).all()


@pytest.mark.parametrize("recipe", ["cross_encoder", "two_tower"])
def test_mkd_student_learns_from_every_channel(
    aspect_cache: Path, shared_data_root: Path, tmp_path: Path, recipe: str
) -> None:
    overrides = tiny_overrides(tmp_path / "runs", shared_data_root)
    rc = main(
        [
            "train",
            str(REPO / "experiments" / "mkd" / f"{recipe}.yaml"),
            *overrides,
            f"data.teacher_cache={aspect_cache}",
            "data.with_hidden=true",
            "data.max_length=32",
            "loss.weights.hidden_mse=0.5",
            "loss.schedules.soft_kl.ramp=0.5",
            "trainer.limit_train_batches=12",
        ]
    )
    assert rc == 0
    run = next((tmp_path / "runs").glob("*/version_*"))
    acc = scalars(run)
    for term in ("hard_ce", "soft_kl", "cot_aspects", "hidden_mse"):
        values = [e.value for e in acc.Scalars(f"train/loss/{term}")]
        assert values and all(v > 0 for v in values), term
    # the warm-up: soft_kl's weight starts at 0 and rises to kd_ratio's share (0.5)
    weights = [e.value for e in acc.Scalars("train/weight/soft_kl")]
    assert weights[0] == pytest.approx(0.0) and weights[-1] > weights[0]
    assert max(weights) <= 0.5 + 1e-6
