"""Verdict-first scoring with and without the shared prompt prefix, side by side in one process.

The teacher of ``experiments/teacher/smollm2.yaml`` (SmolLM2-135M-Instruct through its chat
template; untrained LoRA, so the weights are the instruct model's) scores the same pairs of the
embedded synthetic catalogue in length-sorted batches, as ``relkd teacher annotate`` and the
teacher's val/test evaluation do, once running each batch's shared prefix (the system turn and
the instruction) a single time (relkd/nets/shared_prefix.py) and once with the plain forward pass.
The two alternate over ``--rounds`` so that a busy machine slows both alike; it prints pairs/s of
each, their ratio, the shared prefix's length against the prompt length, and the largest
difference between the two paths' label logits (a correctness check).

    python benchmarks/bench_shared_prefix.py [--config experiments/teacher/smollm2.yaml] \\
        [--pairs 256] [--batch-size 32] [--rounds 2] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.prompt_collator import PromptCollator  # noqa: E402
from datamodules.prompt_store import PromptStore  # noqa: E402
from relkd.config import compose  # noqa: E402
from relkd.data.canonical_dataset import CanonicalDataset  # noqa: E402
from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset  # noqa: E402
from relkd.nets.shared_prefix import shared_prefix_length  # noqa: E402
from relkd.runs.teacher_factory import build_teacher, prompt_spec, teacher_spec  # noqa: E402


def score(net: torch.nn.Module, batches: list[dict[str, torch.Tensor]], share: bool):
    net.share_prefix = share
    start = time.perf_counter()
    with torch.inference_mode():
        logits = torch.cat([net.predict(b).logits for b in batches])
    return time.perf_counter() - start, logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "experiments/teacher/smollm2.yaml"))
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_dataset(SynthConfig(pairs=max(1000, args.pairs), seed=0), work / "ds")
        cfg = compose(Path(args.config), [f"data.cache_dir={work / 'cache'}"])
        scheme = CanonicalDataset(work / "ds").scheme
        spec = teacher_spec(cfg, work / "ds")
        pspec = prompt_spec(cfg, scheme, spec)
        parts = build_teacher(cfg, spec, scheme, pspec, ("val", "test"))
        store = PromptStore.open_or_build(
            work / "ds", parts.tokenizer, pspec, cache_dir=work / "prompts"
        )
        net = parts.module.net.eval()
        lengths = store.prompt_lengths()
        rng = np.random.default_rng(0)
        rows = rng.choice(len(lengths), size=min(args.pairs, len(lengths)), replace=False)
        rows = rows[np.argsort(-lengths[rows], kind="stable")]  # as the annotator batches
        collate = PromptCollator(store, with_response=False)
        batches = [
            collate(rows[i : i + args.batch_size]) for i in range(0, len(rows), args.batch_size)
        ]
        prefix = [shared_prefix_length(b["input_ids"], b["attention_mask"]) for b in batches]
        mean_len = float(np.mean(lengths[rows]))
        print(
            f"{cfg.teacher.model}, {len(rows)} pairs, batch {args.batch_size}, "
            f"{torch.get_num_threads()} threads: prompts {mean_len:.0f} tokens on average, "
            f"shared prefix {min(prefix)}-{max(prefix)} tokens"
        )
        score(net, batches[:1], True)  # warm-up
        times = {True: 0.0, False: 0.0}
        out = {}
        for _ in range(args.rounds):
            for share in (False, True):
                took, out[share] = score(net, batches, share)
                times[share] += took
        n = len(rows) * args.rounds
        plain, shared = n / times[False], n / times[True]
        diff = float((out[True] - out[False]).abs().max())
        print(f"plain forward   {plain:7.2f} pairs/s")
        print(f"shared prefix   {shared:7.2f} pairs/s   ratio {shared / plain:.2f}x")
        print(f"max |label logit difference| {diff:.2e}")


if __name__ == "__main__":
    main()
