"""Student training throughput (pairs/s): relkd vs sentence-transformers' CrossEncoder, side by side.

relkd runs its real path, as ``relkd train`` does: ``QueryItemDataModule`` batches (pre-tokenized
store, length-bucketed sampler, numpy collation) into ``StudentModule`` under a Lightning Trainer
built from the experiment's ``trainer:`` section (``relkd.train.trainer_kwargs``: gradient
clipping, deterministic, log_every_n_steps, precision), with the TensorBoard logger and the
LearningRateMonitor that ``relkd train`` attaches; checkpointing and the progress bar are off.

sentence-transformers runs its own fit loop, ``CrossEncoder.old_fit`` (the pre-v4 ``fit``; the
new ``fit`` wraps the Hugging Face Trainer and needs the ``datasets`` package): its
``smart_batching_collate`` tokenizes each batch of InputExamples, then AdamW (torch default,
grouped weight decay), WarmupLinear schedule, gradient clipping at 1.0, and ``use_amp`` for
bf16-mixed (CPU autocast + GradScaler).

Same on both sides: the MiniLM-L6 weights, dropout, number of labels, the cross-entropy loss,
batch size, ``max_length``, precision and the pairs (each pair's query and item text decoded
from the store's tokens). By default (``--st-batches shuffled``) each loop batches the pairs its
own way: relkd length-buckets them, sentence-transformers takes plain shuffled batches (what its
users get), so the ratio includes the padding relkd avoids. ``--st-batches relkd`` gives
sentence-transformers relkd's very batches instead, which isolates the cost of a step.

Timing: steps after a warm-up, relkd and sentence-transformers alternating (A, B, A, B...) in one
process for ``--repeats`` rounds; the median of each side is reported, and the median of the
per-round ratios (each round's two sides ran back to back, so load on a shared machine hits both). ``torch.use_deterministic_algorithms`` is off for sentence-transformers (a
Lightning Trainer with ``deterministic`` sets it process-wide). Usage:

    python benchmarks/bench_vs_sentence_transformers.py [--steps 20] [--repeats 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from step_timer import StepTimer  # benchmarks/ (run as a script)

from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.nets.encoder_presets import minilm_path
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.student_factory import build_datamodule, build_student, encoder_spec
from relkd.train import trainer_kwargs

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("32-true", "bf16-mixed")


class Relkd:
    """relkd's student, DataModule and Trainer settings, built once and fitted per round."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.cfg = compose(
            REPO / "experiments" / "quickstart.yaml",
            [
                "model.encoder=minilm",
                f"data.dataset_root={root / 'datasets'}",
                f"data.cache_dir={root / 'tokenized'}",
                f"data.synthetic.pairs={args.pairs}",
                f"data.batch_size={args.batch_size}",
                f"data.max_length={args.max_length}",
                *args.override,
            ],
        )
        L.seed_everything(0, verbose=False)
        self.data_dir = resolve_dataset(self.cfg.data)
        spec = encoder_spec(self.cfg, self.data_dir)
        self.dm = build_datamodule(self.cfg, self.data_dir, spec)
        self.scheme = CanonicalDataset(self.data_dir).scheme
        self.module = build_student(self.cfg, spec, self.scheme, ("val",))
        self.dm.prepare_data()
        self.dm.setup("fit")

    def batches(self, n: int) -> list[np.ndarray]:
        """The first ``n`` batches (store rows) of an epoch of relkd's training sampler."""
        out = []
        for rows in self.dm.train_sampler(num_replicas=1, rank=0):
            out.append(np.asarray(self.dm.rows("train"))[np.asarray(rows)])
            if len(out) == n:
                break
        return out

    def run(self, precision: str, log_dir: Path) -> tuple[float, float]:
        """(pairs/s, padded tokens per pair) over the timed steps."""
        a = self.args
        kwargs = trainer_kwargs(self.cfg.trainer)
        kwargs.update(
            accelerator="cpu",
            devices=1,
            precision=precision,
            max_epochs=-1,
            max_steps=a.warmup + a.steps,
            limit_val_batches=0,
            enable_progress_bar=False,
        )
        timer = StepTimer(a.warmup)
        trainer = L.Trainer(
            **kwargs,
            logger=TensorBoardLogger(save_dir=str(log_dir), name="bench", default_hp_metric=False),
            callbacks=[LearningRateMonitor(logging_interval="step"), timer],
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
        )
        trainer.fit(self.module, datamodule=self.dm)
        return timer.pairs / timer.elapsed, timer.tokens / max(timer.pairs, 1)


class SentenceTransformers:
    """``sentence_transformers.CrossEncoder`` on the same MiniLM, trained with its own loop."""

    def __init__(self, relkd: Relkd, args: argparse.Namespace) -> None:
        from sentence_transformers import CrossEncoder, InputExample

        self.args = args
        self.model = CrossEncoder(
            minilm_path(),
            num_labels=relkd.scheme.num_labels,
            max_length=args.max_length,
            device="cpu",
        )
        store = relkd.dm.store
        tok = self.model.tokenizer

        def texts(kind: str, rows: np.ndarray) -> list[str]:
            tokens, offsets = store.view(f"{kind}_tokens"), store.view(f"{kind}_offsets")
            return [
                tok.decode(np.asarray(tokens[offsets[r] : offsets[r + 1]], np.int64).tolist())
                for r in rows
            ]

        n = args.warmup + args.steps
        if args.st_batches == "relkd":
            self.batches = relkd.batches(n)
        else:
            rng = np.random.default_rng(0)
            rows = rng.permutation(np.asarray(relkd.dm.rows("train")))[: n * args.batch_size]
            self.batches = list(rows.reshape(n, args.batch_size))
        rows = np.concatenate(self.batches)
        q = texts("query", np.asarray(store.view("query_row")[rows], np.int64))
        i = texts("item", np.asarray(store.view("item_row")[rows], np.int64))
        labels = np.asarray(store.view("label")[rows], np.int64)
        self.examples = [
            InputExample(texts=[a, b], label=int(y)) for a, b, y in zip(q, i, labels, strict=True)
        ]
        self.batch_index = []
        start = 0
        for batch in self.batches:
            self.batch_index.append(list(range(start, start + len(batch))))
            start += len(batch)

    def run(self, precision: str) -> tuple[float, float]:
        """(pairs/s, padded tokens per pair) over the timed steps."""
        from torch.utils.data import DataLoader

        a = self.args
        calls: list[float] = []
        tokens: list[int] = []

        def pre_hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
            calls.append(time.perf_counter())
            tokens.append(int(kwargs["input_ids"].numel()))

        handle = self.model.model.register_forward_pre_hook(pre_hook, with_kwargs=True)
        loader = DataLoader(self.examples, batch_sampler=self.batch_index)  # type: ignore[arg-type]
        deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)
        try:
            self.model.old_fit(
                loader,
                epochs=1,
                warmup_steps=max(1, len(self.batch_index) // 10),
                use_amp=precision == "bf16-mixed",
                show_progress_bar=False,
            )
            end = time.perf_counter()
        finally:
            handle.remove()
            torch.use_deterministic_algorithms(deterministic)
        pairs = sum(len(b) for b in self.batch_index[a.warmup :])
        return pairs / (end - calls[a.warmup]), sum(tokens[a.warmup :]) / pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--st-batches", choices=("relkd", "shuffled"), default="shuffled")
    parser.add_argument(
        "--override", nargs="*", default=[], help="extra relkd config overrides (key=value)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        relkd = Relkd(args, root)
        st = SentenceTransformers(relkd, args)
        rates: dict[tuple[str, str], list[float]] = {}
        width: dict[tuple[str, str], float] = {}
        for _ in range(args.repeats):
            for precision in args.precisions:
                for side, run in (
                    ("relkd", lambda p: relkd.run(p, root / "logs")),
                    ("sentence-transformers", st.run),
                ):
                    rate, tokens = run(precision)
                    rates.setdefault((side, precision), []).append(rate)
                    width[(side, precision)] = tokens
    t = relkd.cfg.trainer
    print(
        f"\nMiniLM-L6 ({minilm_path()}), batch {args.batch_size}, max_length {args.max_length}, "
        f"{args.steps} timed steps after {args.warmup} warm-up, median of {args.repeats} "
        f"interleaved rounds, torch {torch.__version__}, threads {torch.get_num_threads()}\n"
        f"relkd trainer: deterministic={t.deterministic} gradient_clip_val={t.gradient_clip_val} "
        f"log_every_n_steps={t.log_every_n_steps} compile={t.compile} "
        f"attn={relkd.cfg.model.attn_implementation} fused={relkd.cfg.optim.fused}; "
        f"sentence-transformers batches: {args.st_batches}; overrides: {args.override or '-'}"
    )
    print(f"{'precision':>11}  {'side':>22}  {'pairs/s':>8}  {'tokens/pair':>11}  rounds")
    for precision in args.precisions:
        med = {}
        for side in ("relkd", "sentence-transformers"):
            r = rates[(side, precision)]
            med[side] = statistics.median(r)
            runs = " ".join(f"{x:.1f}" for x in r)
            print(
                f"{precision:>11}  {side:>22}  {med[side]:8.1f}  "
                f"{width[(side, precision)]:11.1f}  {runs}"
            )
        ratio = med["relkd"] / med["sentence-transformers"]
        pairs = zip(
            rates[("relkd", precision)], rates[("sentence-transformers", precision)], strict=True
        )
        per_round = [a / b for a, b in pairs]
        print(
            f"{precision:>11}  {'relkd / s-t ratio':>22}  {ratio:8.2f}  (median of per-round "
            f"ratios {statistics.median(per_round):.2f}: {' '.join(f'{x:.2f}' for x in per_round)})"
        )


if __name__ == "__main__":
    main()
