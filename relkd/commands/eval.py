"""``relkd eval RUN_DIR``: re-evaluate a run's checkpoint (optionally on perturbed queries)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="re-evaluate a run's checkpoint")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--data", type=Path, default=None, help="dataset folder (default: the run's)")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--ckpt", default="best", help="best, last, or a checkpoint path")
    ev.add_argument(
        "--perturb",
        default=None,
        metavar="KINDS",
        help="also evaluate perturbed test queries and report the drop: comma-separated "
        "typo,synonym,word_order,attribute_paraphrase (docs/robustness.md)",
    )
    ev.add_argument(
        "--perturb-seed", type=int, default=0, help="another deterministic perturbation variant"
    )
    ev.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    from relkd.evaluate import evaluate_run

    evaluate_run(
        args.run_dir,
        data=args.data,
        split=args.split,
        ckpt=args.ckpt,
        perturb=args.perturb,
        perturb_seed=args.perturb_seed,
    )
    return 0
