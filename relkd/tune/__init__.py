"""``relkd tune``: Optuna studies over the distillation loss weights (docs/tune.md)."""

from __future__ import annotations

import argparse

from relkd.errors import RelkdError
from relkd.tune.best_export import export_best
from relkd.tune.study_setup import study_setup
from relkd.tune.study_worker import StudyWorker, write_tables


class TrialsFailing(RelkdError):
    """A worker stopped because its trials kept failing (the config cannot train)."""


def tune_from_args(args: argparse.Namespace) -> str:
    """Run (or resume) one worker of the study, then write its tables and, if asked, the best
    trial's experiment YAML; returns the text to print."""
    setup = study_setup(args.study, args.overrides, args.storage, args.study_name)
    if args.seed is not None:
        setup.cfg.sampler.seed = args.seed
    worker = StudyWorker(setup, list(args.overrides))
    study = worker.run(args.trials)
    text = write_tables(setup, study)
    if worker.gave_up:
        print(text)
        raise TrialsFailing(worker.gave_up)
    if args.export_best is not None:
        text += f"\nbest trial written to {export_best(setup, study, args.export_best)}\n"
    return text


__all__ = ["StudyWorker", "export_best", "study_setup", "tune_from_args"]
