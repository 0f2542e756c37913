"""``relkd report PATHS --out DIR``: Markdown + HTML with figures from runs and ablations."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser(
        "report", help="a Markdown + HTML report with figures from runs and ablation folders"
    )
    rep.add_argument("paths", type=Path, nargs="+", help="run folders and/or ablation folders")
    rep.add_argument("--out", type=Path, required=True, help="the report folder to write")
    rep.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from relkd.report import build_report

    print(build_report(args.paths, args.out))
    return 0
