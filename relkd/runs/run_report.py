"""The end-of-run report: metrics.json and the TensorBoard hparams record, written by rank 0.

It runs inside the evaluating process (which, under ``ddp_spawn``, is not the launching one),
so the numbers in metrics.json are exactly the ones logged to TensorBoard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from lightning_modules.relevance_module import flatten_metrics
from relkd.artifacts.atomic_files import atomic_write_json
from relkd.metrics.predictions_file import write_predictions


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a.b": scalar}``; lists become strings (TensorBoard takes scalars)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{name}."))
        elif value is None or isinstance(value, (list, tuple)):
            out[name] = str(value)
        else:
            out[name] = value
    return out


class RunReport(L.Callback):
    """After ``trainer.test``: write ``metrics_path``, ``predictions/<split>.parquet`` beside it,
    and link hparams to the final metrics."""

    def __init__(
        self, metrics_path: Path, config: dict[str, Any], extra: dict[str, Any] | None = None
    ):
        self.metrics_path = Path(metrics_path)
        self.config = config
        self.extra = extra or {}

    @staticmethod
    def _trained_steps(trainer: L.Trainer) -> int:
        """Optimiser steps behind the evaluated weights. A process that only tests (ddp_spawn's
        test workers, ``relkd eval``) starts at step 0, so read it from the checkpoint."""
        if trainer.global_step or not trainer.ckpt_path:
            return int(trainer.global_step)
        import torch

        ckpt = torch.load(trainer.ckpt_path, map_location="cpu", mmap=True, weights_only=True)
        return int(ckpt.get("global_step", 0))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        results: dict[str, Any] = dict(getattr(pl_module, "eval_results", {}))
        payload = {**self.extra, "global_step": self._trained_steps(trainer), **results}
        atomic_write_json(self.metrics_path, payload)
        for split, rows in getattr(pl_module, "eval_predictions", {}).items():
            write_predictions(self.metrics_path.parent / "predictions" / f"{split}.parquet", rows)
        logger = trainer.logger
        if logger is None or not hasattr(logger, "experiment"):
            return
        from torch.utils.tensorboard.summary import hparams

        metric_dict: dict[str, float] = {}
        for split, result in results.items():
            metric_dict.update(flatten_metrics(split, result))
        writer = logger.experiment
        for summary in hparams(flat_hparams(self.config), metric_dict):
            writer.file_writer.add_summary(summary)
        writer.flush()
