"""One trial of a study, in its own process (started by ``relkd tune``; not a user command).

    python -m relkd.tune.trial_process STUDY.yaml --storage URL --study-name NAME \\
        --trial-id ID --result FILE [key=value ...]

Every process of the trial (under DDP, each rank Lightning starts re-runs this command) reads the
trial's parameters from the study's storage by id, so all ranks train the same config. The
pruning callback reports each validation to the storage; rank 0 writes ``--result`` (JSON:
``state`` complete or pruned, ``values``) for the worker, which tells Optuna.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import optuna

from relkd.artifacts.atomic_files import atomic_write_json
from relkd.errors import ConfigError, RelkdError
from relkd.train import is_launcher_rank_zero, run_training
from relkd.tune.seed_mean_pruning import SeedMeanPruning
from relkd.tune.study_factory import make_pruner
from relkd.tune.study_setup import StudySetup, study_setup
from relkd.tune.study_storage import load_study


def objective_values(setup: StudySetup, run_dir: Path) -> list[float]:
    """The finished trial's values: the metric on the best checkpoint (metrics.json), then ms
    per pair when the study also minimises latency."""
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    split, key = setup.cfg.metric_split, setup.cfg.metric_key
    value = metrics.get(split, {}).get("overall", {}).get(key)
    if value is None:
        raise ConfigError(
            f"{metrics_file}: no {split}.overall.{key} for the study's metric "
            f"{setup.cfg.metric!r} (is {split} evaluated, in eval.splits, and labelled?)"
        )
    values = [float(value)]
    if setup.cfg.latency_objective:
        from relkd.serving.latency_probe import measure_latency

        values.append(float(measure_latency(run_dir)["ms_per_pair"]))
    return values


def monitored_value(setup: StudySetup, run_dir: Path) -> float | None:
    """A finished seed's value of the pruning monitor (metrics.json, best checkpoint)."""
    split, _, key = setup.cfg.pruning_monitor.partition("/")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    value = metrics.get(split, {}).get("overall", {}).get(key)
    return None if value is None else float(value)


def run_trial(setup: StudySetup, trial_id: int) -> dict[str, Any]:
    """Train the trial, once per seed of ``objective.seeds``; returns the result rank 0 reports
    (``state``; ``values``: the mean over the seeds; ``seed_values`` and ``run_dirs`` per
    seed)."""
    study = load_study(
        setup.url,
        setup.cfg.heartbeat,
        setup.name,
        pruner=make_pruner(setup.cfg, setup.steps_per_trial),
    )
    trial = optuna.trial.Trial(study, trial_id)
    overrides = setup.space.overrides(trial.params)
    rank = os.environ.get("LOCAL_RANK", "0")
    print(f"trial {trial.number} rank {rank}: {' '.join(overrides)}", flush=True)
    max_epochs = int(setup.base.trainer.max_epochs)
    seed_values: list[list[float]] = []
    monitored: list[float] = []  # the finished seeds' pruning-monitor values
    run_dirs: list[str] = []
    for k, seed in enumerate(setup.seeds):
        cfg = setup.trial_config(trial.params, trial.number, seed)
        run_dir = setup.run_dir(trial.number, seed)
        callbacks: list[L.Callback] = []
        after_fit = None
        if len(study.directions) == 1:  # multi-objective: Optuna takes no intermediate values
            monitor, sign = setup.cfg.pruning_monitor, setup.cfg.pruning_sign
            pruning = SeedMeanPruning(trial, monitor, monitored, k * max_epochs, sign)
            callbacks.append(pruning)

            def after_fit(trainer: L.Trainer, pruning: SeedMeanPruning = pruning) -> None:
                trainer.strategy.barrier()  # rank 0 has stored the pruning decision for every rank
                pruning.check_pruned()

        try:
            run_dir = run_training(cfg, callbacks=callbacks, after_fit=after_fit)
        except optuna.TrialPruned as exc:
            reason = str(exc) if seed is None else f"seed {seed}: {exc}"
            return {"state": "pruned", "values": None, "run_dir": str(run_dir), "reason": reason}
        run_dirs.append(str(run_dir))
        if is_launcher_rank_zero():
            seed_values.append(objective_values(setup, run_dir))
            value = monitored_value(setup, run_dir)
            if value is not None:
                monitored.append(value)
    values = [float(np.mean(col)) for col in zip(*seed_values, strict=True)] or None
    return {
        "state": "complete",
        "values": values,
        "seed_values": seed_values,
        "run_dir": run_dirs[0],
        "run_dirs": run_dirs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relkd.tune.trial_process")
    p.add_argument("study", type=Path)
    p.add_argument("--storage", required=True)
    p.add_argument("--study-name", required=True)
    p.add_argument("--trial-id", type=int, required=True)
    p.add_argument("--result", type=Path, required=True)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        setup = study_setup(args.study, args.overrides, args.storage, args.study_name)
        result = run_trial(setup, args.trial_id)
    except RelkdError as exc:
        print(f"relkd: error: {exc}", file=sys.stderr)
        return 2
    if is_launcher_rank_zero():
        atomic_write_json(args.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
