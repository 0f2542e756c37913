"""What a run needs, beyond Lightning's own checkpoint, to resume exactly where it was killed.

- ``ResumeState``: the torch (CPU and CUDA), numpy and Python RNG states, saved with every
  checkpoint and put back when training restarts, so dropout after a resume draws the same masks
  as an uninterrupted run, and makes sure the train loader resumes at its saved batch
  (``datamodules.samplers.ResumableLoader``; see the class for why Lightning alone may not).
- ``StepCheckpoint``: ``last.ckpt`` every n steps, never between a batch and its validation.
- ``AtomicCheckpointIO``: Lightning writes a local checkpoint through an fsspec transaction whose
  temporary file lives in the system temp folder; when that is another filesystem the final move
  is a plain copy, so a kill mid-copy leaves a truncated ``last.ckpt``. Here the file is written
  beside its target, synced and renamed over it: a kill leaves the old checkpoint or the new one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from relkd.artifacts.atomic_files import TMP_PREFIX, atomic_write


def rng_states() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain Python values (``torch.load`` with
    ``weights_only=True``, Lightning's default, reads them back)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class ResumeState(L.Callback):
    """Saves the RNG states with each checkpoint; a resumed run restores them, and hands the
    train loader its saved position, when training starts: after model building and data setup
    have drawn what they draw in any run, before the first batch.

    The loader position is Lightning's own (``loops.fit_loop.state_dict.combined_loader``), but
    Lightning 2.6 loads it only if the fit loop builds its train loader after the restore; a
    module whose ``configure_optimizers`` reads ``trainer.estimated_stepping_batches`` (a
    OneCycle / warm-up schedule) builds it before, and the saved position would be dropped.
    Loading it twice is harmless: the loader applies it once, to the epoch it was saved in.

    Under DDP the checkpoint holds rank 0's RNG states; every rank starts from the same seed and
    draws the same, so each rank takes them."""

    def __init__(self) -> None:
        self._rng: dict[str, Any] | None = None
        self._loaders: list[dict[str, Any]] = []

    @override
    def state_dict(self) -> dict[str, Any]:
        return rng_states()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng = state_dict

    @override
    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        self._loaders = list(fit_loop.get("state_dict", {}).get("combined_loader", []))

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._loaders:
            loaders = trainer.train_dataloader
            if isinstance(loaders, dict):
                loaders = list(loaders.values())
            elif not isinstance(loaders, (list, tuple)):
                loaders = [loaders]
            stateful = [dl for dl in loaders if hasattr(dl, "load_state_dict")]
            for loader, state in zip(stateful, self._loaders, strict=False):
                loader.load_state_dict(state)
            self._loaders = []
        if self._rng is not None:
            set_rng_states(self._rng)
            self._rng = None


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a synced temporary sibling renamed over the checkpoint (local paths;
    anything else goes through Lightning's own writer)."""

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        # a write killed earlier left its temporary file; one writer per run folder (rank 0)
        for stale in path.parent.glob(f"{TMP_PREFIX}{path.name}.*"):
            stale.unlink(missing_ok=True)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every n optimiser steps, except on a batch that validation follows.

    A checkpoint taken there would hold a finished batch but not its validation; Lightning,
    resuming from it, goes on without validating that epoch, so ``best.ckpt`` and early
    stopping would differ from an uninterrupted run. The monitored checkpoint saves
    ``last.ckpt`` right after that validation instead."""

    def __init__(self, every_n_train_steps: int, dirpath: Path) -> None:
        super().__init__(
            dirpath=dirpath,
            monitor=None,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
        )

    @override
    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loop = trainer.fit_loop.epoch_loop
        # the loop's own test for "validation runs after this batch" (private in Lightning 2.6)
        if loop._should_check_val_fx(trainer.fit_loop._data_fetcher):
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
