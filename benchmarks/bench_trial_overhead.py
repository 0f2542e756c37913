"""What a tune trial costs besides its training: the same study of ``--trials`` near-empty trials
(a 1-layer 32-wide BERT, ``--batches`` training batches of one epoch, val evaluated once) run
by a worker that trains each trial inside its own process (``in_process: true``, the default)
and by one that starts a process per trial (``in_process: false``, what DDP trials need), side
by side in one run. Printed per mode: seconds per trial (the worker's own timing, from the
trials' ``seconds`` user attribute), the mean of all but the first trial (the first in-process
trial pays the imports the per-process mode pays every time), and the ratio. Nothing asserted.

    python benchmarks/bench_trial_overhead.py [--trials 5] [--batches 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import optuna
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_pruning import tiny  # noqa: E402
from relkd.tune.study_setup import study_setup  # noqa: E402
from relkd.tune.study_worker import StudyWorker  # noqa: E402


def run(workdir: Path, in_process: bool, trials: int, batches: int) -> list[float]:
    name = "in_process" if in_process else "process_per_trial"
    body = {
        "name": name,
        "experiment": str(REPO / "experiments" / "quickstart.yaml"),
        "output_dir": str(workdir / "studies"),
        "trials": trials,
        "in_process": in_process,
        "overrides": [*tiny(workdir, 1200, 1), f"trainer.limit_train_batches={batches}"],
        "pruner": {"kind": "none"},
        "sampler": {"kind": "random", "seed": 0},
        "space": {"params": {"optim.lr": {"low": 1e-4, "high": 1e-2, "log": True}}},
    }
    path = workdir / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create(body), path)
    setup = study_setup(path)
    study = StudyWorker(setup, [], say=lambda _: None).run()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [float(t.user_attrs["seconds"]) for t in done]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_trial_overhead_"))
    rows = {}
    for in_process in (False, True):
        rows[in_process] = run(workdir, in_process, args.trials, args.batches)
    print(f"{args.trials} trials of {args.batches} training batches each, in {workdir}")
    print(f"{'mode':<20} {'s per trial':>12} {'after the first':>16}  trials (s)")
    for in_process, seconds in rows.items():
        name = "in process" if in_process else "process per trial"
        rest = statistics.mean(seconds[1:]) if len(seconds) > 1 else float("nan")
        listed = " ".join(f"{s:.1f}" for s in seconds)
        print(f"{name:<20} {statistics.mean(seconds):>12.2f} {rest:>16.2f}  {listed}")
    apart, here = rows[False], rows[True]
    ratio = statistics.mean(apart[1:]) / statistics.mean(here[1:])
    print(f"process per trial / in process, after the first trial: {ratio:.2f}x")


if __name__ == "__main__":
    main()
