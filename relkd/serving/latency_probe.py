"""``serving.json``: what one pair costs a trained student, measured where the run lives.

A study with ``latency_objective: true`` minimises it beside quality, and ``relkd report`` draws
quality against it. The figure is the PyTorch forward over one eval batch of the run's own test
pairs (real lengths, dynamic padding, as the DataModule builds them), best of ``repeats`` timed
passes after a warm-up, divided by the batch's rows, on ``threads`` CPU threads. Tokenization is
not timed. It compares students measured on the same machine; ``benchmarks/bench_serving.py``
is the fuller serving benchmark (onnxruntime, candidate ranking).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from lightning_modules.student_module import NET_INPUTS
from relkd.artifacts.atomic_files import atomic_write_json
from relkd.serving.student_loader import load_student

SERVING_FILE = "serving.json"


@torch.inference_mode()
def measure_latency(
    run_dir: str | Path, batch: int = 32, repeats: int = 5, threads: int = 1
) -> dict[str, Any]:
    """Time the run's best checkpoint and write ``RUN_DIR/serving.json``; returns its content:
    ``{"ms_per_pair", "batch", "threads", "device", "params"}``."""
    run_dir = Path(run_dir)
    loaded = load_student(run_dir, "best")
    dm = loaded.datamodule()
    split = "test" if "test" in dm.test_splits else dm.test_splits[0]
    rows = next(iter(dm.loader(split, dm.eval_sampler(split))))
    keys = getattr(loaded.net, "input_keys", NET_INPUTS)
    inputs = {k: v[:batch] for k, v in rows.items() if k in keys and torch.is_tensor(v)}
    n = int(next(iter(inputs.values())).shape[0])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        loaded.net(**inputs)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            loaded.net(**inputs)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    result = {
        "ms_per_pair": best * 1e3 / n,
        "batch": n,
        "threads": threads,
        "device": "cpu",
        "params": sum(p.numel() for p in loaded.net.parameters()),
    }
    atomic_write_json(run_dir / SERVING_FILE, result)
    return result
