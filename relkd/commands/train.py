"""``relkd train EXPERIMENT [key=value ...]``: train a student (or any task) from a YAML."""

from __future__ import annotations

import argparse

from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model from an experiment YAML")
    train.add_argument("experiment", type=experiment_arg())
    train.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. trainer.max_epochs=2")
    train.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    from relkd.train import train_from_cli

    train_from_cli(args.experiment, args.overrides)
    return 0
