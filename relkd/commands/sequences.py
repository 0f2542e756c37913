"""``relkd sequences build EXPERIMENT``: the user histories SEMINAR reads."""

from __future__ import annotations

import argparse

from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    seqs = sub.add_parser("sequences", help="user histories from the behaviour log (SEMINAR)")
    ssub = seqs.add_subparsers(dest="sequences_cmd", required=True)
    sbuild = ssub.add_parser("build", help="build the user sequences an experiment reads")
    sbuild.add_argument("experiment", type=experiment_arg(), help="an experiment YAML or name")
    sbuild.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.sequences.max_length=32"
    )
    sbuild.set_defaults(func=build_command)


def build_command(args: argparse.Namespace) -> int:
    from relkd.behavior.sequence_build import build_sequences_from_cli

    build_sequences_from_cli(args.experiment, args.overrides)
    return 0
