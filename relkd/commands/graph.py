"""``relkd graph build EXPERIMENT``: the click graph an experiment reads (BERM, slices)."""

from __future__ import annotations

import argparse

from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    graph = sub.add_parser("graph", help="the click graph (BERM neighbours, clicked/cold slices)")
    gsub = graph.add_subparsers(dest="graph_cmd", required=True)
    gbuild = gsub.add_parser("build", help="build the click graph an experiment reads")
    gbuild.add_argument("experiment", type=experiment_arg(), help="an experiment YAML or name")
    gbuild.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.click_graph.top_k=4"
    )
    gbuild.set_defaults(func=build_command)


def build_command(args: argparse.Namespace) -> int:
    from relkd.behavior.graph_build import build_graph_from_cli

    build_graph_from_cli(args.experiment, args.overrides)
    return 0
