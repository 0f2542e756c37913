"""Teacher SFT step throughput (pairs/s), variants side by side in one process.

Variants, all on the same prompts of the same synthetic dataset and the same backbone:

- ``full``: full fine-tuning of the verbalizer classifier (the embedded preset);
- ``lora``: LoRA r=16 on query/value instead;
- ``full, all logits``: the naive way: LM-head logits at every position, then the answer
  position picked (what ``logits_to_keep`` avoids);
- ``full, no echo``: without the query repeated after the item (shorter prompts);
- ``full, frozen emb+2``: full fine-tuning with the embeddings and the two lowest layers frozen;
- ``multitask``: full fine-tuning with the CoT explanation as a second target (longer sequences);
- ``full, bf16-mixed`` (with ``--bf16``): ``full`` under bf16 autocast
  (``trainer.precision=bf16-mixed``); on a CPU without native bf16 it is some 25x slower, so it
  is opt-in; on a GPU it is the default.

Ratios are printed against ``full``, so they hold on a noisy machine. ``--profile`` also prints
where the ``full`` variant's timed steps spend their time (torch.profiler, top ops by self CPU
time). Usage:

    python benchmarks/bench_teacher_step.py [--model minilm-causal] [--steps 12] [--warmup 2] [--bf16]
        [--profile] [--variants full lora ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptStore
from lightning_modules.teacher_sft_module import TeacherSFTModule
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.nets.causal_lm_teacher import CausalLMTeacher
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.teacher_factory import build_teacher, prompt_spec, teacher_spec

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "experiments" / "teacher" / "embedded.yaml"
VARIANTS: dict[str, list[str]] = {
    "full": [],
    "lora": ["teacher.finetune=lora"],
    "full, all logits": [],
    "full, no echo": ["teacher.prompt.echo_query=false"],
    "full, frozen emb+2": ["teacher.freeze=['embeddings', 'layer\\.[01]\\.']"],
    "multitask": ["teacher.mode=multitask", "loss.weights.cot_lm=0.5"],
    "full, bf16-mixed": [],
}


def measure(name: str, args: argparse.Namespace, root: Path) -> tuple[float, float]:
    """(pairs/s, mean tokens per row) over ``args.steps`` optimiser steps after a warm-up."""
    cfg = compose(
        EMBEDDED,
        [
            f"teacher.model={args.model}",
            f"data.dataset_root={root / 'datasets'}",
            f"data.cache_dir={root / 'cache'}",
            f"data.synthetic.pairs={args.pairs}",
            *VARIANTS[name],
        ],
    )
    torch.manual_seed(0)
    data_dir = resolve_dataset(cfg.data)
    scheme = CanonicalDataset(data_dir).scheme
    spec = teacher_spec(cfg, data_dir)
    pspec = prompt_spec(cfg, scheme, spec)
    parts = build_teacher(cfg, spec, scheme, pspec, ("val",))
    store = PromptStore.open_or_build(data_dir, parts.tokenizer, pspec, cache_dir=root / "cache")
    module = parts.module.train()
    net = module.net
    collate = PromptCollator(store, with_response=True)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    rng = np.random.default_rng(0)
    rows = rng.permutation(store.num_pairs)
    pairs = tokens = 0
    start = 0.0
    profiler: Any = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if args.profile and name == "full":
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                profiler.__enter__()
            start = time.perf_counter()
        batch = collate(rows[step * args.batch_size : (step + 1) * args.batch_size])
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "full, bf16-mixed")
        with autocast:
            loss = _step_loss(name, module, net, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step >= args.warmup:
            pairs += len(batch["labels"])
            tokens += int(batch["attention_mask"].sum())
    rate = pairs / (time.perf_counter() - start)
    if profiler is not None:
        profiler.__exit__(None, None, None)
        print(f"\n{name}: top ops by self CPU time over {args.steps} steps")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return rate, tokens / max(pairs, 1)


def _step_loss(
    name: str, module: TeacherSFTModule, net: CausalLMTeacher, batch: dict
) -> torch.Tensor:
    """One training step's loss; the ``all logits`` variant reads the full LM-head output."""
    if name == "full, all logits":
        logits = net.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        at = logits[torch.arange(len(logits)), batch["prompt_len"] - 1][:, net.verdict_ids]
        out = {"logits": at.float(), "verdict_mask": batch["prompt_len"] > 0}
    else:
        out = net(**{k: batch[k] for k in net.input_keys})
    return module.loss(out, batch).total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="minilm-causal")
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also time bf16-mixed autocast")
    parser.add_argument("--profile", action="store_true", help="profile the full variant")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all")
    args = parser.parse_args()
    names = [n for n in VARIANTS if args.bf16 or "bf16" not in n]
    if args.variants:
        names = [n for n in names if n in args.variants or n == "full"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: measure(name, args, Path(tmp)) for name in names}
    base = results["full"][0]
    print(
        f"\nmodel={args.model} batch={args.batch_size} steps={args.steps} (after {args.warmup} warm-up)"
    )
    print(f"{'variant':>20}  {'pairs/s':>8}  {'tokens/row':>10}  {'vs full':>7}")
    for name, (rate, tokens) in results.items():
        print(f"{name:>20}  {rate:8.1f}  {tokens:10.1f}  {rate / base:7.2f}")


if __name__ == "__main__":
    main()
