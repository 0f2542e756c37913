"""``relkd ablate ABLATION``: one experiment's variants x seeds as separate runs, one table."""

from __future__ import annotations

import argparse
import sys

from relkd.commands.arguments import POSITIVE_INT, add_seeds
from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    abl = sub.add_parser(
        "ablate",
        help="one experiment's variants x seeds as separate runs -> one results table "
        "(reuses finished runs)",
    )
    abl.add_argument(
        "ablation",
        type=experiment_arg("ablations"),
        help="an ablation YAML, e.g. experiments/ablations/mkd.yaml",
    )
    add_seeds(abl, "run each variant")
    abl.add_argument("--jobs", type=POSITIVE_INT, default=1, help="runs at once (default 1)")
    abl.add_argument(
        "overrides",
        nargs="*",
        help="dotlist overrides for every run, after the file's, e.g. data.teacher_cache=DIR",
    )
    abl.set_defaults(func=ablate_command)


def ablate_command(args: argparse.Namespace) -> int:
    from relkd.ablate import run_ablation

    report = run_ablation(args.ablation, args.overrides, seeds=args.seeds, jobs=args.jobs)
    print(report.text)
    for failed in report.failed:
        print(
            f"relkd: error: {failed.variant.name!r} seed {failed.seed} failed "
            f"(exit {failed.returncode}); log: {failed.log}",
            file=sys.stderr,
        )
    return 1 if report.failed else 0
