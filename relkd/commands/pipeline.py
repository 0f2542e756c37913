"""``relkd pipeline PIPELINE``: teacher -> annotate -> students -> one comparison table."""

from __future__ import annotations

import argparse

from relkd.commands.arguments import add_seeds
from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    pipe = sub.add_parser(
        "pipeline",
        help="teacher -> annotate -> students -> one comparison table (reuses finished steps)",
    )
    pipe.add_argument(
        "pipeline",
        type=experiment_arg("pipeline"),
        help="a pipeline YAML, e.g. experiments/pipeline/quickstart.yaml",
    )
    add_seeds(pipe, "train each student")
    pipe.add_argument(
        "overrides",
        nargs="*",
        help="dotlist overrides for every step, e.g. trainer.precision=bf16-mixed",
    )
    pipe.set_defaults(func=pipeline_command)


def pipeline_command(args: argparse.Namespace) -> int:
    from relkd.pipeline import run_pipeline

    print(run_pipeline(args.pipeline, args.overrides, seeds=args.seeds))
    return 0
