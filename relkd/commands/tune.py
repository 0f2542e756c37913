"""``relkd tune STUDY``: an Optuna study over distillation loss weights (resumable, many workers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from relkd.commands.arguments import NONNEG_INT
from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser(
        "tune",
        help="an Optuna study over distillation loss weights (resumable; many workers share "
        "one study through --storage)",
    )
    tune.add_argument(
        "study",
        type=experiment_arg("studies"),
        help="a study YAML or bundled name, e.g. experiments/studies/mkd_weights.yaml or mkd_weights",
    )
    tune.add_argument(
        "--storage",
        default=None,
        help="sqlite:///FILE, postgresql+psycopg://USER@HOST:PORT/DB or journal:FILE "
        "(default: the study YAML's, else sqlite under the study folder)",
    )
    tune.add_argument("--study-name", default=None, help="default: the study YAML's name")
    tune.add_argument(
        "--seed",
        type=int,
        default=None,
        help="the sampler's seed (default: the YAML's sampler.seed, else one per worker)",
    )
    tune.add_argument(
        "--trials", type=NONNEG_INT, default=None, help="finished trials the study should reach"
    )
    tune.add_argument(
        "--export-best",
        type=Path,
        default=None,
        metavar="OUT.yaml",
        help="write the best trial as an experiment YAML (no trials are run when given alone "
        "with --trials 0)",
    )
    tune.add_argument(
        "overrides",
        nargs="*",
        help="dotlist overrides for every trial, e.g. data.teacher_cache=DIR",
    )
    tune.set_defaults(func=tune_command)


def tune_command(args: argparse.Namespace) -> int:
    from relkd.tune import tune_from_args

    print(tune_from_args(args))
    return 0
