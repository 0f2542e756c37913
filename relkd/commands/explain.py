"""``relkd explain``: one query-item pair, the student's probabilities beside the teacher's CoT."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "explain", help="one query-item pair: the student's probabilities beside the teacher's CoT"
    )
    exp.add_argument("query", nargs="?", default=None)
    exp.add_argument("item", nargs="?", default=None, help="the item text")
    exp.add_argument("--run", type=Path, required=True, help="a student run folder")
    exp.add_argument(
        "--teacher", type=Path, default=None, help="a teacher run folder (or its cache folder)"
    )
    exp.add_argument("--pair-id", type=int, default=None, help="a pair of --data instead of text")
    exp.add_argument("--data", type=Path, default=None, help="dataset folder (default: the run's)")
    exp.add_argument("--ckpt", default="best", help="best, last, or a checkpoint path")
    exp.set_defaults(func=explain_command)


def explain_command(args: argparse.Namespace) -> int:
    from relkd.explain import explain_from_args

    print(explain_from_args(args))
    return 0
