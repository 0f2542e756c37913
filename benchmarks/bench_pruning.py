"""What pruning saves: the same Optuna study run without a pruner and with each pruner, side by
side in one process, on the embedded synthetic catalogue.

Every study draws its trials with the same TPE seed over the same space (the learning rate over
three decades, where most draws are poor, and the soft-KL-free hard-label student's label
smoothing), ``--trials`` finished trials of ``--epochs`` validation epochs each. Printed per
pruner: trials pruned, trial-epochs spent (validation epochs summed over trials, the cost
pruning cuts), the best val NDCG@10 reached, wall time, and the ratios to no pruning. Goal:
>= 50 % fewer trial-epochs at an equal best value. Nothing is asserted.

    python benchmarks/bench_pruning.py [--trials 12] [--epochs 4] [--pruners none,median,hyperband]
        [--pairs 2000] [--workdir DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from omegaconf import OmegaConf
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relkd.tune.study_setup import study_setup  # noqa: E402
from relkd.tune.study_worker import StudyWorker, trial_epochs  # noqa: E402


def tiny(workdir: Path, pairs: int, epochs: int) -> list[str]:
    """A 1-layer 32-wide BERT cross-encoder on ``pairs`` synthetic pairs: seconds per epoch."""
    values = {
        "data.dataset_root": workdir / "data" / "datasets",
        "data.cache_dir": workdir / "data" / "tokenized",
        "data.synthetic.pairs": pairs,
        "data.synthetic.val_pairs": 0,
        "data.synthetic.test_pairs": 0,
        "data.batch_size": 16,
        "data.eval_batch_size": 64,
        "model.encoder": "tiny-bert",
        "model.fallback_encoder": "null",
        "model.tiny_hidden_size": 32,
        "model.tiny_layers": 1,
        "model.tiny_heads": 2,
        "trainer.max_epochs": epochs,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": False,
        "early_stopping.enabled": False,
        "eval.bm25_baseline": False,
        "eval.splits": "[val]",
    }
    return [f"{k}={v}" for k, v in values.items()]


def run_study(workdir: Path, pruner: str, args: argparse.Namespace) -> dict[str, object]:
    body = {
        "name": f"prune-{pruner}",
        "output_dir": str(workdir / "studies"),
        "experiment": str(REPO / "experiments" / "quickstart.yaml"),
        "overrides": tiny(workdir, args.pairs, args.epochs),
        "trials": args.trials,
        "sampler": {"kind": "tpe", "seed": args.seed, "startup_trials": 4},
        "pruner": {"kind": pruner, "startup_trials": 3, "warmup_epochs": 1},
        "space": {
            "params": {
                "optim.lr": {"low": 1e-5, "high": 3e-2, "log": True},
                "loss.label_smoothing": {"low": 0.0, "high": 0.3},
            }
        },
    }
    path = workdir / f"{body['name']}.yaml"
    OmegaConf.save(OmegaConf.create(body), path)
    setup = study_setup(path)
    t0 = time.perf_counter()
    study = StudyWorker(setup, [], say=lambda s: print(f"  [{pruner}] {s}", flush=True)).run()
    seconds = time.perf_counter() - t0
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        "pruner": pruner,
        "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "trial-epochs": sum(trial_epochs(t) for t in trials),
        "best val NDCG@10": max(t.value for t in complete) if complete else float("nan"),
        "minutes": seconds / 60,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--pruners", default="none,median,hyperband")
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pruning-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir {workdir}; {args.trials} trials x {args.epochs} epochs per study", flush=True)
    rows = [run_study(workdir, name, args) for name in args.pruners.split(",")]
    base = next((r for r in rows if r["pruner"] == "none"), rows[0])
    print(
        "\n| pruner | trials | pruned | trial-epochs | vs none | best val NDCG@10 | "
        "Δ best vs none | minutes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        change = r["trial-epochs"] / base["trial-epochs"] - 1  # type: ignore[operator]
        delta = r["best val NDCG@10"] - base["best val NDCG@10"]  # type: ignore[operator]
        print(
            f"| {r['pruner']} | {r['trials']} | {r['pruned']} | {r['trial-epochs']} | "
            f"{change:+.0%} | {r['best val NDCG@10']:.4f} | {delta:+.4f} | {r['minutes']:.1f} |"
        )
    print("\ngoal: >= 50% fewer trial-epochs than none at an equal best value")


if __name__ == "__main__":
    main()
