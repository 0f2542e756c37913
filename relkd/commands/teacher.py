"""``relkd teacher train|write-cot|annotate|cache``: the LLM teacher and its cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from relkd.commands.arguments import NONNEG_FLOAT, POSITIVE_INT
from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    teacher = sub.add_parser("teacher", help="the LLM teacher: fine-tune it, write CoT targets")
    tsub = teacher.add_subparsers(dest="teacher_cmd", required=True)
    train = tsub.add_parser("train", help="fine-tune a teacher from an experiment YAML")
    train.add_argument("experiment", type=experiment_arg())
    train.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. teacher.mode=cot")
    cot = tsub.add_parser(
        "write-cot", help="ask an LLM for CoT targets with self-consistency (ELLM-rele)"
    )
    cot.add_argument(
        "--model",
        required=True,
        help="a teacher preset (smollm2-135m-instruct, minilm-causal), a .gguf file, or any "
        "Hugging Face causal LM id or local path",
    )
    cot.add_argument("--data", required=True, type=Path, help="canonical dataset folder")
    cot.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    cot.add_argument(
        "--samples", type=POSITIVE_INT, default=5, help="k samples per pair (majority vote)"
    )
    cot.add_argument("--splits", default="train", help="comma-separated splits to annotate")
    cot.add_argument(
        "--limit",
        type=POSITIVE_INT,
        default=None,
        help="a random sample of this many pairs (seeded by --seed) over the whole split",
    )
    cot.add_argument("--temperature", type=NONNEG_FLOAT, default=0.7)
    cot.add_argument("--max-new-tokens", type=POSITIVE_INT, default=64)
    cot.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    cot.add_argument(
        "--decoding",
        choices=["free", "guided"],
        default="free",
        help="free: sample text and parse it; guided: sample only the slot answers",
    )
    cot.add_argument("--seed", type=int, default=0)
    cot.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    cot.add_argument("--trust-remote-code", action="store_true")
    cot.add_argument("--overwrite", action="store_true")
    cot.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("data_cache/tokenized"),
        help="where a GGUF model is converted once (data.cache_dir of experiments/base.yaml: "
        "the teacher runs' converted folder is reused)",
    )
    ann = tsub.add_parser(
        "annotate",
        help="label pairs with a trained teacher into a resumable, shardable teacher cache",
    )
    ann.add_argument("run_dir", type=Path, help="a `relkd teacher train` run (or its adapter/)")
    ann.add_argument("--data", type=Path, default=None, help="dataset folder (default: the run's)")
    ann.add_argument("--splits", default="train,val,test", help="labelled splits to annotate")
    ann.add_argument("--pool", action="store_true", help="also the unlabelled pool")
    ann.add_argument(
        "--pool-ratio",
        type=NONNEG_FLOAT,
        default=None,
        metavar="R",
        help="only a fixed, nested subset of the pool: R x the labelled train pairs (implies "
        "--pool; matches data.pool_ratio; a larger R later adds the missing pairs)",
    )
    ann.add_argument(
        "--out",
        type=Path,
        default=None,
        help="cache folder (default: RUN_DIR/teacher_cache/<dataset>)",
    )
    ann.add_argument("--backend", default="hf", help="inference backend (hf)")
    ann.add_argument(
        "--shard",
        default="0/1",
        help="i/n: annotate shard i of n (by pair_id); env: from SLURM_ARRAY_TASK_ID/COUNT or "
        "torchrun's RANK/WORLD_SIZE",
    )
    ann.add_argument("--batch-size", type=POSITIVE_INT, default=32)
    ann.add_argument(
        "--part-size", type=POSITIVE_INT, default=2048, help="pairs per committed part"
    )
    ann.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    ann.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ann.add_argument(
        "--hidden",
        default="none",
        choices=["none", "last", "mean"],
        help="also store a pooled hidden state (fp16) for intermediate-layer distillation",
    )
    ann.add_argument("--no-cot", action="store_true", help="verdicts only, no CoT text")
    ann.add_argument(
        "--max-new-tokens", type=POSITIVE_INT, default=None, help="CoT budget override"
    )
    ann.add_argument(
        "--limit", type=POSITIVE_INT, default=None, help="at most this many pairs (smoke runs)"
    )
    ann.add_argument("--prompt-cache", type=Path, default=Path("data_cache/prompts"))
    ann.add_argument("--no-finalize", action="store_true", help="unsharded: skip finalize")
    ann.add_argument("--quiet", action="store_true", help="no progress output")
    ann.add_argument(
        "--force",
        action="store_true",
        help="fingerprint differs: write a new versioned cache (OUT.v2, ...) beside the old one",
    )
    cache = tsub.add_parser("cache", help="teacher cache maintenance")
    csub = cache.add_subparsers(dest="cache_cmd", required=True)
    fin = csub.add_parser(
        "finalize", help="check every pair is present once and build the read-optimised layout"
    )
    fin.add_argument("cache", type=Path)
    fin.add_argument("--data", type=Path, default=None, help="dataset folder (default: recorded)")
    stat = csub.add_parser("status", help="shards, committed pairs and finalize state of a cache")
    stat.add_argument("cache", type=Path)
    train.set_defaults(func=train_command)
    cot.set_defaults(func=write_cot_command)
    ann.set_defaults(func=annotate_command)
    fin.set_defaults(func=finalize_command)
    stat.set_defaults(func=status_command)


def train_command(args: argparse.Namespace) -> int:
    from relkd.train import train_from_cli

    train_from_cli(args.experiment, args.overrides, task="teacher")
    return 0


def write_cot_command(args: argparse.Namespace) -> int:
    from relkd.teacher.cot_writer import write_cot_from_args

    write_cot_from_args(args)
    return 0


def annotate_command(args: argparse.Namespace) -> int:
    from relkd.teacher.annotate_runner import annotate, options_from_args

    res = annotate(options_from_args(args))
    if res.finalized:
        tail = "; finalized"
    elif args.limit is not None:
        tail = "; not finalized (--limit covers part of the request)"
    else:
        tail = "; run `relkd teacher cache finalize` when every shard is done"
    print(
        f"{res.cache}: {res.annotated} pairs annotated ({res.pairs_per_s:.1f} pairs/s), "
        f"{res.skipped} already cached, {res.requested} requested{tail}"
    )
    return 0


def finalize_command(args: argparse.Namespace) -> int:
    from relkd.teacher_cache.cache_finalizer import finalize_cache

    final = finalize_cache(args.cache, args.data)
    print(f"{args.cache}: finalized, {final['rows']} pairs from {final['parts']} parts")
    return 0


def status_command(args: argparse.Namespace) -> int:
    from relkd.teacher_cache.cache_writer import cache_status

    print(cache_status(args.cache))
    return 0
