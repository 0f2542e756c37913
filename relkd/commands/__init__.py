"""``relkd`` subcommands, one module each (in the style of torchtune's ``_cli/``): a module's
``register(sub)`` adds its parser and sets ``func`` on every leaf to its handler, ``handler(args)
-> exit code``. Handlers import their implementation lazily, so ``relkd --help`` and the data
commands never import torch. A new subcommand is a module here and one line in ``COMMANDS``."""

from __future__ import annotations

import argparse
from importlib import import_module

# the order of `relkd --help`
COMMANDS = (
    "data",
    "baseline",
    "train",
    "eval",
    "pipeline",
    "ablate",
    "export",
    "teacher",
    "tune",
    "report",
    "explain",
    "terms",
    "graph",
    "sequences",
)


def register_all(sub: argparse._SubParsersAction) -> None:
    """Every subcommand's parser, in ``COMMANDS`` order."""
    for name in COMMANDS:
        import_module(f"relkd.commands.{name}").register(sub)
