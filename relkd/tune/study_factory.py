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


def make_pruner(cfg: StudyConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """Median (stop below the median of earlier trials at the same epoch), Hyperband over
    epochs, a fixed threshold, or none. Steps are validation epochs."""
    p = cfg.pruner
    if p.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs
        )
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_epochs,
            max_resource=max(max_epochs, p.min_epochs),
            reduction_factor=p.reduction_factor,
        )
    if p.kind == "threshold":
        return optuna.pruners.ThresholdPruner(
            lower=p.lower, upper=p.upper, n_warmup_steps=p.warmup_epochs
        )
    return optuna.pruners.NopPruner()


def directions(cfg: StudyConfig) -> list[str]:
    return [cfg.direction, "minimize"] if cfg.latency_objective else [cfg.direction]
