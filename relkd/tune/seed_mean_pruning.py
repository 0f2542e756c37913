"""Pruning on a seed-averaged objective: each validation reports the running mean over seeds.

A trial of a study with ``objective.seeds`` trains once per seed, one after the other. Its
intermediate values run over all of them: seed ``k`` (counting from 0) reports at steps
``k * max_epochs + epoch``, and the value is the mean of the earlier seeds' final values and
this seed's current one, the best estimate so far of the value the trial will report. Every
trial runs the seeds in the same order, so the pruner compares trials at the same step on the
same footing. With one seed it is exactly Optuna's callback. ``sign=-1`` reports the value
negated: a monitor that improves the other way than the study's objective (``val/class_nll`` in a
study maximising NDCG) then ranks trials the way the pruner expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import optuna
import torch
from optuna_integration import PyTorchLightningPruningCallback


class _Epoch:
    """What the library callback reads of the module: its epoch (here shifted past the seeds
    already trained)."""

    def __init__(self, epoch: int) -> None:
        self.current_epoch = epoch


class _TrainerView:
    """The trainer as the library callback sees it: the monitored metric replaced by the
    running mean (``callback_metrics`` is a fresh dict on every read, so it cannot be edited in
    place); everything else, writes included (``should_stop``), goes to the trainer."""

    def __init__(self, trainer: L.Trainer, metrics: dict[str, Any]) -> None:
        object.__setattr__(self, "_trainer", trainer)
        object.__setattr__(self, "callback_metrics", metrics)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._trainer, name, value)


class SeedMeanPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback for seed ``len(earlier)`` of a trial.

    Args:
        trial: the trial.
        monitor: the logged metric (``val/ndcg@10``).
        earlier: the final values of the seeds this trial already trained.
        step_offset: steps those seeds reported (their epochs).
        sign: 1, or -1 to report the negated mean.
    """

    def __init__(
        self,
        trial: optuna.trial.Trial,
        monitor: str,
        earlier: Sequence[float] = (),
        step_offset: int = 0,
        sign: float = 1.0,
    ) -> None:
        super().__init__(trial, monitor)
        self.earlier = [float(v) for v in earlier]
        self.step_offset = int(step_offset)
        self.sign = float(sign)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = dict(trainer.callback_metrics)
        current = metrics.get(self.monitor)
        if current is None:  # the library warns and reports nothing
            super().on_validation_end(trainer, pl_module)
            return
        mean = (sum(self.earlier) + float(current)) / (len(self.earlier) + 1)
        metrics[self.monitor] = torch.tensor(self.sign * mean)
        view = _TrainerView(trainer, metrics)  # checkpointing still reads the seed's own value
        epoch = _Epoch(self.step_offset + pl_module.current_epoch)
        super().on_validation_end(view, epoch)  # type: ignore[arg-type]
