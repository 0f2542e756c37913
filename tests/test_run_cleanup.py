"""A new run that fails leaves no half-made run folder; one that already saved a checkpoint is
kept, so ``resume=`` can continue it."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest

from relkd.config import compose
from relkd.errors import DataError
from relkd.train import run_training
from tests.conftest import QUICKSTART, tiny_overrides


class _Crash(L.Callback):
    """Raises as the second epoch starts, after the first one saved its checkpoints."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("crash after the first checkpoint")


def test_a_run_failing_before_its_first_checkpoint_leaves_no_folder(
    tmp_path: Path, shared_data_root: Path
) -> None:
    overrides = tiny_overrides(tmp_path, shared_data_root)
    cfg = compose(QUICKSTART, [*overrides, f"data.teacher_cache={tmp_path / 'no_cache'}"])
    with pytest.raises(DataError):
        run_training(cfg)  # fails in setup, after the run folder was claimed
    assert not (tmp_path / "quickstart").exists()  # nor the experiment folder it created


def test_a_run_failing_after_a_checkpoint_is_kept_for_resume(
    tmp_path: Path, shared_data_root: Path
) -> None:
    cfg = compose(
        QUICKSTART, tiny_overrides(tmp_path, shared_data_root, **{"trainer.max_epochs": 2})
    )
    with pytest.raises(RuntimeError, match="crash after"):
        run_training(cfg, callbacks=[_Crash()])
    (run,) = (tmp_path / "quickstart").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file()
