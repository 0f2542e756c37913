"""Training throughput (pairs/s) of the cross-encoder student, 32-true vs bf16-mixed, side by side.

Both precisions run in the same process on the same data and model size, so the ratio is
meaningful even on a noisy machine. Usage:

    python benchmarks/bench_train_precision.py [--encoder minilm|tiny-bert] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
from step_timer import StepTimer  # benchmarks/ (run as a script)

from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.student_factory import build_datamodule, build_student, encoder_spec

REPO = Path(__file__).resolve().parents[1]


def measure(precision: str, args: argparse.Namespace, root: Path) -> float:
    cfg = compose(
        REPO / "experiments" / "quickstart.yaml",
        [
            f"model.encoder={args.encoder}",
            f"data.dataset_root={root / 'datasets'}",
            f"data.cache_dir={root / 'tokenized'}",
            f"data.synthetic.pairs={args.pairs}",
            f"data.batch_size={args.batch_size}",
            f"trainer.precision={precision}",
        ],
    )
    L.seed_everything(0, verbose=False)
    data_dir = resolve_dataset(cfg.data)
    spec = encoder_spec(cfg, data_dir)
    dm = build_datamodule(cfg, data_dir, spec)
    module = build_student(cfg, spec, CanonicalDataset(data_dir).scheme, ("val",))
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=dm)
    return timer.pairs / timer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {p: measure(p, args, Path(tmp)) for p in ("32-true", "bf16-mixed")}
    print(
        f"\nencoder={args.encoder} batch={args.batch_size} steps={args.steps} (after {args.warmup} warm-up)"
    )
    for precision, rate in results.items():
        print(f"{precision:>11}: {rate:8.1f} pairs/s")
    print(
        f"bf16-mixed / 32-true throughput ratio: {results['bf16-mixed'] / results['32-true']:.2f}"
    )


if __name__ == "__main__":
    main()
