"""The one ``relkd`` console script. Subcommands import their implementation lazily so that
``relkd --help`` and the data commands stay fast and never import torch needlessly."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from relkd.errors import RelkdError
from relkd.experiment_files import experiment_arg


class _Parser(argparse.ArgumentParser):
    """argparse with relkd's one-line errors: ``relkd: error: <command>: <message>`` and exit
    code 2, like every other refusal (argparse's default prints the whole usage first).
    Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"relkd: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _number(
    kind: Callable[[str], float], low: float | None = None, high: float | None = None
) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite ``kind`` (int or float) in ``[low, high]``: a value
    out of range is a usage error naming the option, not a silent nonsense run."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid ... value"
    return parse


POSITIVE_INT = _number(int, 1)
NONNEG_INT = _number(int, 0)
NONNEG_FLOAT = _number(float, 0.0)
UNIT_FLOAT = _number(float, 0.0, 1.0)


def _seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2] (pipeline and ablate)."""
    return [int(x) for x in text.split(",")]


def _add_seeds(parser: argparse.ArgumentParser, each: str) -> None:
    """``--seeds 0,1,2`` of pipeline and ablate: the file's seeds unless given."""
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        help=f"comma-separated, e.g. 0,1,2: {each} once per seed (mean ± std); "
        "default: the file's seeds",
    )


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, import, download and validate datasets")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    synth = dsub.add_parser("synth", help="generate the embedded synthetic catalogue")
    synth.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    synth.add_argument(
        "--pairs", type=POSITIVE_INT, default=20_000, help="labelled query-item pairs"
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scheme", choices=["esci", "wands"], default="esci")
    synth.add_argument("--noise", type=UNIT_FLOAT, default=0.05, help="annotator noise rate")
    synth.add_argument(
        "--unlabeled-ratio",
        type=NONNEG_FLOAT,
        default=5.0,
        help="unlabelled pool size as a multiple of labelled pairs",
    )
    synth.add_argument(
        "--val-pairs",
        type=NONNEG_INT,
        default=0,
        help="more labelled pairs on held-out queries that join only the val split",
    )
    synth.add_argument(
        "--test-pairs",
        type=NONNEG_INT,
        default=0,
        help="more labelled pairs on held-out queries that join only the test split",
    )
    synth.add_argument("--overwrite", action="store_true")

    imp = dsub.add_parser("import", help="import a public or custom dataset into canonical form")
    isub = imp.add_subparsers(dest="source", required=True)
    esci = isub.add_parser("esci", help="Amazon Shopping Queries (ESCI) parquet files")
    esci.add_argument("src", type=Path, help="folder with shopping_queries_dataset_*.parquet")
    esci.add_argument("--out", required=True, type=Path)
    esci.add_argument("--locale", default="us", help="product_locale to keep (us, es, jp, or all)")
    esci.add_argument("--version", choices=["small", "large"], default="small")
    esci.add_argument("--val-fraction", type=float, default=0.1)
    esci.add_argument("--seed", type=int, default=0)
    esci.add_argument(
        "--on-empty",
        choices=["error", "drop"],
        default="error",
        help="empty product title or query text: error, or drop (counted in stats)",
    )
    esci.add_argument("--overwrite", action="store_true")
    wands = isub.add_parser(
        "wands", help="Wayfair WANDS folder (product.csv, query.csv, label.csv)"
    )
    wands.add_argument("src", type=Path)
    wands.add_argument("--out", required=True, type=Path)
    wands.add_argument("--val-fraction", type=float, default=0.1)
    wands.add_argument("--test-fraction", type=float, default=0.2)
    wands.add_argument("--seed", type=int, default=0)
    wands.add_argument(
        "--on-empty",
        choices=["error", "drop"],
        default="error",
        help="empty product name or query text: error, or drop (counted in stats)",
    )
    wands.add_argument("--overwrite", action="store_true")
    table = isub.add_parser("table", help="your own pairs/items/queries as CSV, JSONL or Parquet")
    table.add_argument("--pairs", required=True, type=Path)
    table.add_argument("--items", required=True, type=Path)
    table.add_argument("--queries", type=Path, default=None)
    table.add_argument("--behavior", type=Path, default=None)
    table.add_argument("--scheme", choices=["esci", "wands"], required=True)
    table.add_argument("--out", required=True, type=Path)
    table.add_argument("--val-fraction", type=float, default=0.1)
    table.add_argument("--test-fraction", type=float, default=0.1)
    table.add_argument("--seed", type=int, default=0)
    table.add_argument(
        "--on-empty",
        choices=["error", "drop"],
        default="error",
        help="empty item title or query text: error, or drop (counted in stats)",
    )
    table.add_argument("--overwrite", action="store_true")

    dl = dsub.add_parser("download", help="fetch ESCI or WANDS upstream files (needs internet)")
    dl.add_argument("dataset", choices=["esci", "wands"])
    dl.add_argument("--to", required=True, type=Path)

    val = dsub.add_parser("validate", help="check a dataset folder; exit 1 on any problem")
    val.add_argument("root", type=Path)


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    base = sub.add_parser("baseline", help="non-neural baselines")
    bsub = base.add_subparsers(dest="baseline", required=True)
    bm25 = bsub.add_parser("bm25", help="BM25 over item text, scored with the student metrics")
    bm25.add_argument("--data", required=True, type=Path)
    bm25.add_argument("--split", choices=["train", "val", "test"], default="test")
    bm25.add_argument(
        "--out",
        type=Path,
        default=None,
        help="metrics.json path, never inside DATA "
        "(default: runs/bm25/<DATA folder name>/<split>/metrics.json under the current directory)",
    )
    bm25.add_argument(
        "--k1", type=NONNEG_FLOAT, default=1.5, help="term-frequency saturation, >= 0"
    )
    bm25.add_argument("--b", type=UNIT_FLOAT, default=0.75, help="length normalisation, in [0, 1]")


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model from an experiment YAML")
    train.add_argument("experiment", type=experiment_arg())
    train.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. trainer.max_epochs=2")
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
    pipe = sub.add_parser(
        "pipeline",
        help="teacher -> annotate -> students -> one comparison table (reuses finished steps)",
    )
    pipe.add_argument(
        "pipeline",
        type=experiment_arg("pipeline"),
        help="a pipeline YAML, e.g. experiments/pipeline/quickstart.yaml",
    )
    _add_seeds(pipe, "train each student")
    pipe.add_argument(
        "overrides",
        nargs="*",
        help="dotlist overrides for every step, e.g. trainer.precision=bf16-mixed",
    )
    abl = sub.add_parser(
        "ablate",
        help="one experiment's variants x seeds as separate runs -> one results table "
        "(reuses finished runs)",
    )
    abl.add_argument(
        "ablation",
        type=experiment_arg("ablations"),
        help="an ablation YAML, e.g. experiments/ablations/mkd.yaml",
    )
    _add_seeds(abl, "run each variant")
    abl.add_argument("--jobs", type=POSITIVE_INT, default=1, help="runs at once (default 1)")
    abl.add_argument(
        "overrides",
        nargs="*",
        help="dotlist overrides for every run, after the file's, e.g. data.teacher_cache=DIR",
    )
    exp = sub.add_parser("export", help="export a student run for serving (ONNX)")
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("--format", default="onnx", choices=["onnx"])
    exp.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/export/onnx")
    exp.add_argument("--ckpt", default="best", help="best, last, or a checkpoint path")


def _add_teacher(sub: argparse._SubParsersAction) -> None:
    teacher = sub.add_parser("teacher", help="the LLM teacher: fine-tune it, write CoT targets")
    tsub = teacher.add_subparsers(dest="teacher_cmd", required=True)
    train = tsub.add_parser("train", help="fine-tune a teacher from an experiment YAML")
    train.add_argument("experiment", type=experiment_arg())
    train.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. teacher.mode=cot")
    cot = tsub.add_parser(
        "write-cot", help="ask an LLM for CoT targets with self-consistency (ELLM-rele)"
    )
    cot.add_argument("--model", required=True, help="Hugging Face causal LM id or local path")
    cot.add_argument("--data", required=True, type=Path, help="canonical dataset folder")
    cot.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    cot.add_argument(
        "--samples", type=POSITIVE_INT, default=5, help="k samples per pair (majority vote)"
    )
    cot.add_argument("--splits", default="train", help="comma-separated splits to annotate")
    cot.add_argument("--limit", type=POSITIVE_INT, default=None, help="at most this many pairs")
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
    _add_annotate(tsub)


def _add_annotate(tsub: argparse._SubParsersAction) -> None:
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


def _add_terms(sub: argparse._SubParsersAction) -> None:
    terms = sub.add_parser("terms", help="professional terms: the catalogue's term list")
    tsub = terms.add_subparsers(dest="terms_cmd", required=True)
    build = tsub.add_parser(
        "build", help="mine (or open) an experiment's term list; print its effect on titles"
    )
    build.add_argument(
        "experiment", nargs="?", default=None, help="default: experiments/quickstart.yaml"
    )
    build.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.terms.min_count=5"
    )


def _add_daily(sub: argparse._SubParsersAction) -> None:
    """The daily loop beside ``ablate``: studies, reports and single-pair explanations."""
    tune = sub.add_parser(
        "tune",
        help="an Optuna study over distillation loss weights (resumable; many workers share "
        "one study through --storage)",
    )
    tune.add_argument(
        "study",
        type=experiment_arg("studies"),
        help="a study YAML or bundled name, e.g. experiments/studies/mkd_weights.yaml or mkd_weights",
    )
    tune.add_argument(
        "--storage",
        default=None,
        help="sqlite:///FILE, postgresql+psycopg://USER@HOST:PORT/DB or journal:FILE "
        "(default: the study YAML's, else sqlite under the study folder)",
    )
    tune.add_argument("--study-name", default=None, help="default: the study YAML's name")
    tune.add_argument(
        "--seed",
        type=int,
        default=None,
        help="the sampler's seed (default: the YAML's sampler.seed, else one per worker)",
    )
    tune.add_argument(
        "--trials", type=NONNEG_INT, default=None, help="finished trials the study should reach"
    )
    tune.add_argument(
        "--export-best",
        type=Path,
        default=None,
        metavar="OUT.yaml",
        help="write the best trial as an experiment YAML (no trials are run when given alone "
        "with --trials 0)",
    )
    tune.add_argument(
        "overrides",
        nargs="*",
        help="dotlist overrides for every trial, e.g. data.teacher_cache=DIR",
    )
    rep = sub.add_parser(
        "report", help="a Markdown + HTML report with figures from runs and ablation folders"
    )
    rep.add_argument("paths", type=Path, nargs="+", help="run folders and/or ablation folders")
    rep.add_argument("--out", type=Path, required=True, help="the report folder to write")
    exp = sub.add_parser(
        "explain", help="one query-item pair: the student's probabilities beside the teacher's CoT"
    )
    exp.add_argument("query", nargs="?", default=None)
    exp.add_argument("item", nargs="?", default=None, help="the item text")
    exp.add_argument("--run", type=Path, required=True, help="a student run folder")
    exp.add_argument(
        "--teacher", type=Path, default=None, help="a teacher run folder (or its cache folder)"
    )
    exp.add_argument("--pair-id", type=int, default=None, help="a pair of --data instead of text")
    exp.add_argument("--data", type=Path, default=None, help="dataset folder (default: the run's)")
    exp.add_argument("--ckpt", default="best", help="best, last, or a checkpoint path")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="relkd", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data(sub)
    _add_baseline(sub)
    _add_train(sub)
    _add_teacher(sub)
    _add_daily(sub)
    _add_terms(sub)
    graph = sub.add_parser("graph", help="the click graph (BERM neighbours, clicked/cold slices)")
    gsub = graph.add_subparsers(dest="graph_cmd", required=True)
    gbuild = gsub.add_parser("build", help="build the click graph an experiment reads")
    gbuild.add_argument("experiment", type=Path)
    gbuild.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.click_graph.top_k=4"
    )
    seqs = sub.add_parser("sequences", help="user histories from the behaviour log (SEMINAR)")
    ssub = seqs.add_subparsers(dest="sequences_cmd", required=True)
    sbuild = ssub.add_parser("build", help="build the user sequences an experiment reads")
    sbuild.add_argument("experiment", type=Path)
    sbuild.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.sequences.max_length=32"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Dispatch a parsed command; returns the process exit code."""
    if args.cmd == "data":
        if args.data_cmd == "synth":
            from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset

            cfg = SynthConfig(
                pairs=args.pairs,
                seed=args.seed,
                scheme=args.scheme,
                noise=args.noise,
                unlabeled_ratio=args.unlabeled_ratio,
                val_pairs=args.val_pairs,
                test_pairs=args.test_pairs,
            )
            ds = generate_dataset(cfg, args.out, overwrite=args.overwrite)
            print(
                f"wrote {ds.root}: "
                + ", ".join(f"{k}={v.rows}" for k, v in ds.manifest.tables.items())
            )
            return 0
        if args.data_cmd == "import":
            from relkd.data.loaders import import_dataset

            ds = import_dataset(args)
            print(
                f"wrote {ds.root}: "
                + ", ".join(f"{k}={v.rows}" for k, v in ds.manifest.tables.items())
            )
            for key, value in sorted(ds.manifest.stats.get("import", {}).items()):
                print(f"  {key}: {value}")
            return 0
        if args.data_cmd == "download":
            from relkd.data.loaders.download import download

            download(args.dataset, args.to)
            return 0
        if args.data_cmd == "validate":
            from relkd.data.validator import validate_dataset

            problems = validate_dataset(args.root)
            for problem in problems:
                print(f"ERROR {problem}", file=sys.stderr)
            if problems:
                print(f"{args.root}: {len(problems)} problem(s)", file=sys.stderr)
                return 1
            print(f"{args.root}: OK")
            return 0
    if args.cmd == "baseline" and args.baseline == "bm25":
        from relkd.baselines.bm25_baseline import run_bm25_baseline

        run_bm25_baseline(args.data, split=args.split, out=args.out, k1=args.k1, b=args.b)
        return 0
    if args.cmd == "graph" and args.graph_cmd == "build":
        from relkd.behavior.graph_build import build_graph_from_cli

        build_graph_from_cli(args.experiment, args.overrides)
        return 0
    if args.cmd == "sequences" and args.sequences_cmd == "build":
        from relkd.behavior.sequence_build import build_sequences_from_cli

        build_sequences_from_cli(args.experiment, args.overrides)
        return 0
    if args.cmd == "train":
        from relkd.train import train_from_cli

        train_from_cli(args.experiment, args.overrides)
        return 0
    if args.cmd == "teacher" and args.teacher_cmd == "train":
        from relkd.train import train_from_cli

        train_from_cli(args.experiment, args.overrides, task="teacher")
        return 0
    if args.cmd == "teacher" and args.teacher_cmd == "write-cot":
        from relkd.teacher.cot_writer import write_cot_from_args

        write_cot_from_args(args)
        return 0
    if args.cmd == "teacher" and args.teacher_cmd == "annotate":
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
    if args.cmd == "teacher" and args.teacher_cmd == "cache" and args.cache_cmd == "status":
        from relkd.teacher.cache_writer import cache_status

        print(cache_status(args.cache))
        return 0
    if args.cmd == "teacher" and args.teacher_cmd == "cache":
        from relkd.teacher.cache_finalizer import finalize_cache

        final = finalize_cache(args.cache, args.data)
        print(f"{args.cache}: finalized, {final['rows']} pairs from {final['parts']} parts")
        return 0
    if args.cmd == "terms" and args.terms_cmd == "build":
        from relkd.terms.build_cli import build_terms_from_cli

        print(build_terms_from_cli(args.experiment, args.overrides))
        return 0
    if args.cmd == "pipeline":
        from relkd.pipeline import run_pipeline

        print(run_pipeline(args.pipeline, args.overrides, seeds=args.seeds))
        return 0
    if args.cmd == "ablate":
        from relkd.ablate import run_ablation

        report = run_ablation(args.ablation, args.overrides, seeds=args.seeds, jobs=args.jobs)
        print(report.text)
        for failed in report.failed:
            print(
                f"relkd: error: {failed.variant.name!r} seed {failed.seed} failed "
                f"(exit {failed.returncode}); log: {failed.log}",
                file=sys.stderr,
            )
        return 1 if report.failed else 0
    if args.cmd == "tune":
        from relkd.tune import tune_from_args

        print(tune_from_args(args))
        return 0
    if args.cmd == "report":
        from relkd.report import build_report

        print(build_report(args.paths, args.out))
        return 0
    if args.cmd == "explain":
        from relkd.explain import explain_from_args

        print(explain_from_args(args))
        return 0
    if args.cmd == "export":
        from relkd.serving.onnx_export import export_from_cli

        print(export_from_cli(args.run_dir, out=args.out, ckpt=args.ckpt))
        return 0
    if args.cmd == "eval":
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
    raise AssertionError(f"unhandled command {args}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse cannot take positionals after an option that follows the first positional
        # (`relkd pipeline X.yaml --seeds 0,1 a.b=c`): late key=value overrides are overrides
        if (
            extra
            and hasattr(args, "overrides")
            and all("=" in e and not e.startswith("-") for e in extra)
        ):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help (0) or a usage error, already printed on one line (2)
        return int(exc.code or 0)
    try:
        return run(args)
    except RelkdError as exc:
        print(f"relkd: error: {one_line(str(exc))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """``message`` on one line: a wrapped third-party reason (a YAML parser's three-line
    position report) is joined with ``; `` so every refusal stays one ``relkd: error:`` line."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
