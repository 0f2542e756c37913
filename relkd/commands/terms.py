"""``relkd terms build [EXPERIMENT]``: mine or open an experiment's professional-term list."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    terms = sub.add_parser("terms", help="professional terms: the catalogue's term list")
    tsub = terms.add_subparsers(dest="terms_cmd", required=True)
    build = tsub.add_parser(
        "build", help="mine (or open) an experiment's term list; print its effect on titles"
    )
    build.add_argument(  # not experiment_arg: a lone key=value here is an override
        "experiment",
        nargs="?",
        default=None,
        help="an experiment YAML or bundled name (default: experiments/quickstart.yaml)",
    )
    build.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.terms.min_count=5"
    )
    build.set_defaults(func=build_command)


def build_command(args: argparse.Namespace) -> int:
    from relkd.terms.build_cli import build_terms_from_cli

    print(build_terms_from_cli(args.experiment, args.overrides))
    return 0
