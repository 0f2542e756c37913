"""``relkd tune --export-best OUT.yaml``: the best trial as an experiment YAML that ``extends``
the study's base experiment and holds only what the study changed (its overrides and the
trial's parameters), so ``relkd train OUT.yaml`` retrains it."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from relkd.artifacts.atomic_files import atomic_write_bytes
from relkd.config import compose
from relkd.errors import ConfigError
from relkd.tune.study_setup import StudySetup

HEADER = "# relkd tune --export-best"


def best_trial(setup: StudySetup, study: optuna.Study) -> FrozenTrial:
    """The best complete trial; with a latency objective, the best quality on the Pareto front."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"study {setup.name!r} in {setup.url}: no complete trial to export")
    if len(study.directions) == 1:
        return study.best_trial
    sign = 1.0 if setup.cfg.direction == "maximize" else -1.0
    return max(study.best_trials, key=lambda t: sign * t.values[0])


def export_best(setup: StudySetup, study: optuna.Study, out: Path) -> Path:
    """Write ``out`` (refusing to replace a file this command did not write); returns it."""
    if out.exists() and not out.read_text().startswith(HEADER):
        raise ConfigError(f"{out}: exists and was not written by --export-best; not replaced")
    trial = best_trial(setup, study)
    body = OmegaConf.from_dotlist([*setup.overrides, *setup.space.overrides(trial.params)])
    parent = os.path.relpath(setup.experiment.resolve(), out.resolve().parent)
    doc = OmegaConf.merge({"extends": parent, "experiment": f"{setup.name}_best"}, body)
    values = ", ".join(
        f"{n} {v:.4f}" for n, v in zip(study.metric_names or [], trial.values, strict=False)
    )
    text = (
        f"{HEADER} (study {setup.name}, trial {trial.number}: {values})\n"
        f"# storage: {setup.url}\n" + OmegaConf.to_yaml(doc)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode())
    compose(out, [])  # what was written composes (unknown keys would fail here, not later)
    return out
