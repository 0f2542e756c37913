"""What every subcommand's parser shares: the one-line usage error, bounded number types and
``--seeds``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn


class RelkdParser(argparse.ArgumentParser):
    """argparse with relkd's one-line errors: ``relkd: error: <command>: <message>`` and exit
    code 2, like every other refusal (argparse's default prints the whole usage first).
    Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"relkd: error: {self.prog}: {message} (see {self.prog} --help)\n")


def number(
    kind: Callable[[str], float], low: float | None = None, high: float | None = None
) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite ``kind`` (int or float) in ``[low, high]``: a value
    out of range is a usage error naming the option, not a silent nonsense run."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid ... value"
    return parse


POSITIVE_INT = number(int, 1)
NONNEG_INT = number(int, 0)
NONNEG_FLOAT = number(float, 0.0)
UNIT_FLOAT = number(float, 0.0, 1.0)


def seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2] (pipeline and ablate)."""
    return [int(x) for x in text.split(",")]


def add_seeds(parser: argparse.ArgumentParser, each: str) -> None:
    """``--seeds 0,1,2`` of pipeline and ablate: the file's seeds unless given."""
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        help=f"comma-separated, e.g. 0,1,2: {each} once per seed (mean ± std); "
        "default: the file's seeds",
    )
