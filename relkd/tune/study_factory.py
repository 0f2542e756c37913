"""The Optuna pieces a study YAML names: sampler, pruner, directions.

Workers and trial processes build the pruner from the same YAML, so a trial decides to stop by
the rule the study was created with.
"""

from __future__ import annotations

import os

import optuna

from relkd.tune.study_config import StudyConfig


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    """TPE (constant liar: parallel workers do not all probe the same point) or random."""
    seed = cfg.sampler.seed if cfg.sampler.seed is not None else os.getpid()
    if cfg.sampler.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=cfg.sampler.startup_trials,
        multivariate=True,  # loss weights interact: model them jointly
        constant_liar=True,
    )


class _KeepsFinalEpoch:
    """Never prune at the last epoch: the trial has already paid for it, and pruning then only
    throws its result away (Hyperband's top rung and the median rule both can). A mixin, not a
    wrapper, so the pruner keeps its class (TPE reads Hyperband's brackets by its type)."""

    last_step = 0

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step >= self.last_step:
            return False
        return super().prune(study, trial)  # type: ignore[misc]


class MedianPruner(_KeepsFinalEpoch, optuna.pruners.MedianPruner):
    pass


class HyperbandPruner(_KeepsFinalEpoch, optuna.pruners.HyperbandPruner):
    pass


class ThresholdPruner(_KeepsFinalEpoch, optuna.pruners.ThresholdPruner):
    pass


class SuccessiveHalvingPruner(_KeepsFinalEpoch, optuna.pruners.SuccessiveHalvingPruner):
    pass


def make_pruner(cfg: StudyConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """Median (stop below the median of earlier trials at the same epoch), Hyperband or
    asynchronous successive halving over epochs (rungs from ``min_epochs``, keeping 1 in
    ``reduction_factor``), a fixed threshold, or none. Steps are validation epochs (0 to ``max_epochs - 1``);
    the last is never pruned."""
    p = cfg.pruner
    pruner: _KeepsFinalEpoch
    if p.kind == "median":
        pruner = MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)
    elif p.kind == "hyperband":
        pruner = HyperbandPruner(
            min_resource=p.min_epochs,
            max_resource=max(max_epochs, p.min_epochs),
            reduction_factor=p.reduction_factor,
        )
    elif p.kind == "successive_halving":
        pruner = SuccessiveHalvingPruner(
            min_resource=p.min_epochs, reduction_factor=p.reduction_factor
        )
    elif p.kind == "threshold":
        pruner = ThresholdPruner(lower=p.lower, upper=p.upper, n_warmup_steps=p.warmup_epochs)
    else:
        return optuna.pruners.NopPruner()
    pruner.last_step = max_epochs - 1
    return pruner  # type: ignore[return-value]


def directions(cfg: StudyConfig) -> list[str]:
    return [cfg.direction, "minimize"] if cfg.latency_objective else [cfg.direction]
