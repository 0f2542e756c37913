"""``relkd baseline bm25``: the non-neural baseline, scored with the student metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from relkd.commands.arguments import NONNEG_FLOAT, UNIT_FLOAT


def register(sub: argparse._SubParsersAction) -> None:
    base = sub.add_parser("baseline", help="non-neural baselines")
    bsub = base.add_subparsers(dest="baseline", required=True)
    bm25 = bsub.add_parser("bm25", help="BM25 over item text, scored with the student metrics")
    bm25.add_argument("--data", required=True, type=Path)
    bm25.add_argument("--split", choices=["train", "val", "test"], default="test")
    bm25.add_argument(
        "--out",
        type=Path,
        default=None,
        help="metrics.json path, never inside DATA "
        "(default: runs/bm25/<DATA folder name>/<split>/metrics.json under the current directory)",
    )
    bm25.add_argument(
        "--k1", type=NONNEG_FLOAT, default=1.5, help="term-frequency saturation, >= 0"
    )
    bm25.add_argument("--b", type=UNIT_FLOAT, default=0.75, help="length normalisation, in [0, 1]")
    bm25.set_defaults(func=bm25_command)


def bm25_command(args: argparse.Namespace) -> int:
    from relkd.baselines.bm25_baseline import run_bm25_baseline

    run_bm25_baseline(args.data, split=args.split, out=args.out, k1=args.k1, b=args.b)
    return 0
