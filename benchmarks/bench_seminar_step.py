"""SEMINAR training-step time, side by side: what deduplicating the batch's queries and items
buys, and what PQ attention costs in a training step.

Builds the student of --experiment on the embedded default (its config, a teacher cache when
given), takes --steps + 1 training batches and times forward + backward + optimiser step on each
(the first is a warm-up) for:

- ``dedup``: the net as shipped, every distinct query, item and pair of the batch embedded once;
- ``every event``: the same net with deduplication switched off (each history event embedded on
  its own, as a direct implementation would);
- ``pq`` (with --init-from): ``attention: pq``, codebooks fitted first on the batches.

Printed: seconds per step and the ratio to ``dedup``. Nothing is asserted. Usage:

    python benchmarks/bench_seminar_step.py [--experiment experiments/seminar/pretrain.yaml]
        [--init-from RUN] [--teacher-cache DIR] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.nets.seminar import Seminar
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.student_factory import build_datamodule, build_student, encoder_spec


def every_event(keys: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Seminar._unique without the deduplication: ``fn`` on every position."""
    return fn(torch.arange(len(keys), device=keys.device))


def setup(experiment: str, overrides: list[str], steps: int) -> tuple[Any, list[dict]]:
    cfg = compose(experiment, overrides)
    data_dir = resolve_dataset(cfg.data)
    spec = encoder_spec(cfg, data_dir)
    dm = build_datamodule(cfg, data_dir, spec)
    dm.prepare_data()
    dm.setup("fit")
    module = build_student(cfg, spec, CanonicalDataset(data_dir).scheme, ("val",), data_dir)
    it = iter(dm.train_dataloader())
    return module, [next(it) for _ in range(steps + 1)]


def time_steps(module: Any, batches: list[dict]) -> float:
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], 1e-3)
    times = []
    for b in batches:
        t = time.perf_counter()
        module.loss(module(b), b).total.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / max(len(times) - 1, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="experiments/seminar/pretrain.yaml")
    p.add_argument("--init-from", default=None, help="a pretraining run: also time PQ attention")
    p.add_argument("--teacher-cache", default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    if args.teacher_cache:
        overrides.append(f"data.teacher_cache={args.teacher_cache}")
    if args.init_from:
        overrides.append(f"model.seminar.init_from={args.init_from}")
    module, batches = setup(args.experiment, overrides, args.steps)
    rows = {"dedup": time_steps(module, batches)}
    shipped = Seminar.__dict__["_unique"]  # the staticmethod itself
    Seminar._unique = staticmethod(every_event)  # type: ignore[method-assign]
    try:
        rows["every event"] = time_steps(module, batches)
    finally:
        Seminar._unique = shipped  # type: ignore[method-assign]
    if args.init_from:
        pq_module, pq_batches = setup(
            args.experiment, [*overrides, "model.seminar.attention=pq"], args.steps
        )
        t = time.perf_counter()
        pq_module.net.prepare_fit(iter(pq_batches))
        print(f"PQ codebooks fitted in {time.perf_counter() - t:.1f} s")
        rows["pq"] = time_steps(pq_module, pq_batches)
    print(f"{args.experiment}, {args.steps} steps, {torch.get_num_threads()} thread(s)")
    for name, secs in rows.items():
        print(f"{name:12s} {secs:7.3f} s/step  {secs / rows['dedup']:5.2f}x dedup")


if __name__ == "__main__":
    main()
