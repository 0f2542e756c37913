"""``relkd export RUN_DIR``: a student run for serving (ONNX, with a parity check)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export", help="export a student run for serving (ONNX)")
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("--format", default="onnx", choices=["onnx"])
    exp.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/export/onnx")
    exp.add_argument("--ckpt", default="best", help="best, last, or a checkpoint path")
    exp.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    from relkd.serving.onnx_export import export_from_cli

    print(export_from_cli(args.run_dir, out=args.out, ckpt=args.ckpt))
    return 0
