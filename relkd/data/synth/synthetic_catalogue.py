"""The embedded synthetic catalogue: `relkd data synth` and the default training dataset.

Pipeline (each stage in its own module): taxonomy -> items -> queries (popularity first) ->
split by query -> candidate pairs per query -> rule labels and aspect facts -> annotator
noise -> behaviour logs -> canonical tables. Python loops run only over items and queries;
every per-pair step is a numpy array operation, and string columns are built by Arrow
``take`` from small dictionaries, so a million labelled pairs (six million rows with the
unlabelled pool) take well under two minutes on two cores.

The output is a pure function of the config: same config and seed, same Parquet bytes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import LABEL_SCHEMES, get_label_scheme
from relkd.data.schema import ASPECT_VALUES, BUCKETS, SPLITS
from relkd.data.splits import split_queries
from relkd.data.synth.annotator_noise import apply_annotator_noise
from relkd.data.synth.behavior_simulator import BehaviorLog, simulate_behavior
from relkd.data.synth.candidate_sampler import SOURCES, sample_candidates
from relkd.data.synth.item_generator import ItemTable, generate_items
from relkd.data.synth.query_builder import TERM_KINDS, QueryTable, build_queries
from relkd.data.synth.relevance_rules import (
    attributes_aspect,
    category_aspect,
    esci_label,
    item_slot_values,
    scheme_label,
    stated_aspect,
)
from relkd.data.synth.taxonomy import RELATIONS, Taxonomy, build_taxonomy
from relkd.errors import DataError

DATASET_NAME = "synthetic"
MIN_ITEMS = 16_000  # enough items per type for realistic exact / near-miss pools at small N
PAIRS_PER_QUERY = 20
ESCI_LABELS = LABEL_SCHEMES["esci"].labels

# independent random streams per stage, so changing one stage never reshuffles another
STREAM = {"items": 1, "queries": 2, "candidates": 3, "noise": 4, "behavior": 5, "order": 6}


class SynthConfigError(DataError, ValueError):
    """A SynthConfig field is out of range; the message names the field."""


MAX_PAIRS = 50_000_000  # labelled + unlabelled pairs the in-memory generator will build


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the generator; every field is recorded in the manifest.

    Attributes:
        pairs: labelled query-item pairs, split train / val / test by ``split_fractions``.
        val_pairs, test_pairs: more labelled pairs, on more queries, that join only the val /
            test split: held-out evaluation queries that grow the evaluation splits without
            growing the training data (the pool and the train split keep ``pairs``' size).
            With both 0 the dataset is the one ``pairs`` alone describes, byte for byte.
        seed: seeds every random stream and the query split; an integer >= 0.
        scheme: label scheme, ``esci`` or ``wands``.
        noise: share of labelled pairs whose label an "annotator" flips.
        unlabeled_ratio: unlabelled pool size as a multiple of ``pairs`` (train queries only).
        items: catalogue size; default max(16000, pairs // 10).
        queries: number of queries; default (every labelled pair) / 20, at least min(that, 10).
        behavior_per_pair: behaviour rows (impressions) per labelled pair (of every split);
            0 = no logs.
        positions: result-list length shown per session.
        position_eta: examination probability 1 / position**eta.
        split_fractions: train / val / test shares of queries.
    """

    pairs: int = 20_000
    seed: int = 0
    scheme: str = "esci"
    noise: float = 0.05
    unlabeled_ratio: float = 5.0
    val_pairs: int = 0
    test_pairs: int = 0
    items: int | None = None
    queries: int | None = None
    behavior_per_pair: float = 2.0
    positions: int = 8
    position_eta: float = 1.0
    split_fractions: tuple[float, float, float] = field(default=(0.8, 0.1, 0.1))

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SynthConfigError:
            return SynthConfigError(f"synth config: {name} {why}, got {getattr(self, name)!r}")

        if not _is_int(self.pairs) or self.pairs <= 0:
            raise bad("pairs", "must be a positive integer")
        if not _is_int(self.seed) or self.seed < 0:
            raise bad("seed", "must be an integer >= 0")
        if self.scheme not in LABEL_SCHEMES:
            raise bad("scheme", f"must be one of {sorted(LABEL_SCHEMES)}")
        for name in ("val_pairs", "test_pairs"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "must be an integer >= 0")
        if not _is_real(self.noise) or not 0.0 <= self.noise <= 1.0:
            raise bad("noise", "must be in [0, 1]")
        if not _is_real(self.unlabeled_ratio) or self.unlabeled_ratio < 0:
            raise bad("unlabeled_ratio", "must be a finite number >= 0")
        total = (self.pairs + self.val_pairs + self.test_pairs) + self.pairs * self.unlabeled_ratio
        if total > MAX_PAIRS:
            labelled = self.pairs + self.val_pairs + self.test_pairs
            name = "pairs" if labelled > MAX_PAIRS / 2 else "unlabeled_ratio"
            raise bad(
                name,
                f"makes {total:,.0f} pairs in all (labelled + pool); the generator holds them in "
                f"memory, at most {MAX_PAIRS:,}",
            )
        if self.items is not None and (not _is_int(self.items) or self.items < 1):
            raise bad("items", "must be a positive integer or None")
        if self.queries is not None and (
            not _is_int(self.queries) or not 1 <= self.queries <= self.labelled_pairs
        ):
            raise bad("queries", "must be an integer in [1, labelled pairs] or None")
        if not _is_real(self.behavior_per_pair) or self.behavior_per_pair < 0:
            raise bad("behavior_per_pair", "must be a finite number >= 0")
        if not _is_int(self.positions) or self.positions < 1:
            raise bad("positions", "must be a positive integer")
        if not _is_real(self.position_eta) or self.position_eta < 0:
            raise bad("position_eta", "must be a finite number >= 0")
        fr = self.split_fractions
        if len(fr) != 3 or any(not _is_real(f) or f < 0 for f in fr) or fr[0] <= 0:
            raise bad("split_fractions", "must be three shares >= 0 with train > 0")

    @property
    def n_items(self) -> int:
        return self.items if self.items is not None else max(MIN_ITEMS, self.pairs // 10)

    @property
    def labelled_pairs(self) -> int:
        """Every labelled pair: ``pairs`` plus the held-out val and test pairs."""
        return self.pairs + self.val_pairs + self.test_pairs

    @property
    def n_queries(self) -> int:
        if self.queries is not None:
            return self.queries
        total = self.labelled_pairs
        return max(min(total, 10), round(total / PAIRS_PER_QUERY))

    def query_shares(self) -> dict[str, float]:
        """Each split's share of the queries: ``split_fractions`` of ``pairs``, plus the
        held-out pairs on val and test (the same as ``split_fractions`` when there are none)."""
        extra = {"train": 0, "val": self.val_pairs, "test": self.test_pairs}
        if not self.val_pairs and not self.test_pairs:
            return dict(zip(SPLITS, self.split_fractions, strict=True))
        total = sum(self.split_fractions)
        return {
            name: (share / total * self.pairs + extra[name]) / self.labelled_pairs
            for name, share in zip(SPLITS, self.split_fractions, strict=True)
        }

    @property
    def n_unlabeled(self) -> int:
        return math.ceil(self.unlabeled_ratio * self.pairs - 1e-9)

    def params(self) -> dict[str, Any]:
        out = asdict(self)
        out["split_fractions"] = list(self.split_fractions)
        return out


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return (
        isinstance(x, (int, float, np.integer, np.floating))
        and not isinstance(x, bool)
        and math.isfinite(x)
    )


class StageTimer:
    """Wall time per stage, for benchmarks; never written into the dataset."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def _stream(cfg: SynthConfig, stage: str) -> np.random.Generator:
    # the whole seed (SeedSequence takes integers of any size): seeds that differ only above
    # bit 32 get different streams
    return np.random.default_rng(np.random.SeedSequence([int(cfg.seed), STREAM[stage]]))


def _strings(
    codes: np.ndarray, names: list[str] | tuple[str, ...], mask: np.ndarray | None = None
) -> pa.Array:
    """A string column from integer codes: Arrow ``take`` on a small dictionary."""
    idx = pa.array(codes.astype(np.int32, copy=False), mask=mask)
    return pa.array(list(names), type=pa.string()).take(idx)


def _allocate(total: int, weights: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Integers >= ``minimum`` proportional to ``weights`` summing exactly to ``total``."""
    n = len(weights)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    base = min(minimum, total // n)
    out += base
    rest = total - base * n
    share = weights / weights.sum() * rest
    out += np.floor(share).astype(np.int64)
    remainder = rest - int(out.sum() - base * n)
    if remainder:
        frac = share - np.floor(share)
        out[np.argsort(-frac, kind="stable")[:remainder]] += 1
    return out


def generate_dataset(
    cfg: SynthConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    timer: StageTimer | None = None,
    row_group_size: int = 256_000,
) -> CanonicalDataset:
    """Generate the catalogue described by ``cfg`` and write it as a canonical dataset."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file, not a folder; a dataset needs a folder of its own")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(
            f"{out}: already exists and is not empty; pass overwrite (--overwrite) to replace it"
        )
    timer = timer or StageTimer()
    tables, stats = build_tables(cfg, timer.lap)
    ds = CanonicalDataset.write(
        out,
        tables,
        name=DATASET_NAME,
        label_scheme=cfg.scheme,
        source={"kind": "synthetic", "params": cfg.params()},
        stats=stats,
        overwrite=overwrite,
        row_group_size=row_group_size,
    )
    timer.lap("write")
    return ds


@dataclass
class PairArrays:
    """Every pair as integer codes, grouped by query; row order is pair_id order."""

    query: np.ndarray  # int32 query row
    item: np.ndarray  # int32 item row
    labelled: np.ndarray  # bool
    source: np.ndarray  # int8 candidate source (SOURCES)
    split: np.ndarray  # int8 index into SPLITS
    relation: np.ndarray  # int8 type relation (RELATIONS)
    aspects: dict[str, np.ndarray]  # aspect name -> int8 code (ASPECT_VALUES)
    esci: np.ndarray  # int8 true esci grade
    clean: np.ndarray  # int8 rule label in the scheme
    label: np.ndarray  # int8 noisy label in the scheme (meaningful where labelled)


def build_tables(
    cfg: SynthConfig, lap: Callable[[str], None] = lambda _: None
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """All canonical tables and the manifest stats, in memory."""
    tax = build_taxonomy()
    scheme = get_label_scheme(cfg.scheme)
    items = generate_items(tax, cfg.n_items, _stream(cfg, "items"), random.Random(cfg.seed * 7 + 1))
    lap("items")
    queries = build_queries(
        tax, items, cfg.n_queries, _stream(cfg, "queries"), random.Random(cfg.seed * 7 + 2)
    )
    lap("queries")
    rng = _stream(cfg, "candidates")
    q_split, lab_counts, unl_counts = _plan_pairs(cfg, queries, rng)
    lap("splits")
    cand = sample_candidates(tax, items, queries, lab_counts, unl_counts, rng)
    # group by query (table order), random order within a query so position leaks nothing
    jitter = _stream(cfg, "order").integers(0, 2**31, len(cand.query))
    order = np.argsort(cand.query.astype(np.int64) << 31 | jitter, kind="stable")
    lap("candidates")
    pairs = _label_pairs(
        cfg, tax, items, queries, cand.query[order], cand.item[order], cand.labelled[order]
    )
    pairs.source = cand.source[order]
    pairs.split = q_split[pairs.query]
    lap("labels")
    behavior = None
    n_rows = round(cfg.behavior_per_pair * cfg.labelled_pairs)
    if n_rows > 0:
        behavior = simulate_behavior(
            pairs.query,
            pairs.item,
            pairs.esci,
            queries.frequency,
            tax.type_category[queries.type],
            items.brand,
            [np.array(tax.category_brands(c)) for c in range(len(tax.categories))],
            n_rows=n_rows,
            positions=cfg.positions,
            eta=cfg.position_eta,
            rng=_stream(cfg, "behavior"),
        )
    lap("behavior")
    tables = _arrow_tables(tax, scheme.labels, items, queries, pairs, behavior)
    stats = _stats(cfg, tax.summary(), len(items), queries, q_split, pairs, behavior, scheme.labels)
    lap("tables")
    return tables, stats


def _plan_pairs(
    cfg: SynthConfig, queries: QueryTable, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split queries; labelled pairs on every query, the unlabelled pool on train queries only."""
    names = list(SPLITS)
    split_of = split_queries(queries.query_ids, cfg.query_shares(), cfg.seed)
    q_split = np.array([names.index(split_of[q]) for q in queries.query_ids], dtype=np.int8)
    weights = rng.uniform(0.6, 1.4, len(queries))  # judged pool sizes vary by query
    lab_counts = _allocate(cfg.labelled_pairs, weights, minimum=1)
    train = q_split == 0
    if cfg.n_unlabeled and not train.any():
        raise SynthConfigError(
            f"synth config: pairs {cfg.pairs} gives {len(queries)} queries and none fell in "
            "train; raise pairs (or set unlabeled_ratio 0)"
        )
    unl_counts = np.zeros(len(queries), dtype=np.int64)
    unl_counts[train] = _allocate(cfg.n_unlabeled, weights[train])
    return q_split, lab_counts, unl_counts


def _label_pairs(
    cfg: SynthConfig,
    tax: Taxonomy,
    items: ItemTable,
    queries: QueryTable,
    pq: np.ndarray,
    pi: np.ndarray,
    labelled: np.ndarray,
) -> PairArrays:
    """Aspect facts and rule labels for every pair, then annotator noise on the labelled ones."""
    relation = tax.relation[queries.type[pq], items.type[pi]]
    brand = stated_aspect(queries.brand[pq], items.brand[pi])
    model = stated_aspect(queries.model[pq], items.model[pi])
    attrs = attributes_aspect(
        list(queries.values[pq].T), item_slot_values(items.attrs, pi, queries.slots[pq])
    )
    esci = esci_label(relation, brand, model, attrs)
    clean = scheme_label(esci, cfg.scheme)
    label = clean.copy()
    rows = np.flatnonzero(labelled)
    label[rows] = apply_annotator_noise(
        clean[rows], get_label_scheme(cfg.scheme).num_labels, cfg.noise, _stream(cfg, "noise")
    )
    return PairArrays(
        query=pq,
        item=pi,
        labelled=labelled,
        source=np.zeros(0, dtype=np.int8),
        split=np.zeros(0, dtype=np.int8),
        relation=relation,
        aspects={
            "category": category_aspect(relation),
            "brand": brand,
            "model": model,
            "attributes": attrs,
        },
        esci=esci,
        clean=clean,
        label=label,
    )


def _arrow_tables(
    tax: Taxonomy,
    labels: tuple[str, ...],
    items: ItemTable,
    queries: QueryTable,
    pairs: PairArrays,
    behavior: BehaviorLog | None,
) -> dict[str, pa.Table]:
    """Canonical Arrow tables; id and low-cardinality string columns are dictionary takes."""
    type_names = [t.name for t in tax.types]
    item_ids = pa.array(items.item_ids, type=pa.string())
    query_ids = pa.array(queries.query_ids, type=pa.string())
    color_k = tax.key_index("color")
    color = items.attrs[:, color_k]
    tables = {
        "items": pa.table(
            {
                "item_id": item_ids,
                "title": pa.array(items.titles, type=pa.string()),
                "description": pa.array(items.descriptions, type=pa.string()),
                "brand": _strings(items.brand, [b for _, b in tax.brands]),
                "color": _strings(np.maximum(color, 0), tax.key_values[color_k], mask=color < 0),
                "category": _strings(items.category, [c.name for c in tax.categories]),
                "product_type": _strings(items.type, type_names),
                "attributes": pa.array(items.attributes_json, type=pa.string()),
            }
        ),
        "queries": pa.table(
            {
                "query_id": query_ids,
                "text": pa.array(queries.texts, type=pa.string()),
                "bucket": pa.array(queries.buckets, type=pa.string()),
                "frequency": pa.array(queries.frequency, type=pa.int64()),
                "product_type": _strings(queries.type, type_names),
                "intent": pa.array(queries.intents, type=pa.string()),
            }
        ),
        "pairs": pa.table(
            {
                "pair_id": pa.array(np.arange(len(pairs.query), dtype=np.int64)),
                "query_id": query_ids.take(pa.array(pairs.query)),
                "item_id": item_ids.take(pa.array(pairs.item)),
                "label": _strings(pairs.label, labels, mask=~pairs.labelled),
                "split": _strings(pairs.split, SPLITS),
                **{
                    f"aspect_{name}": _strings(code, ASPECT_VALUES)
                    for name, code in pairs.aspects.items()
                },
                "clean_label": _strings(pairs.clean, labels),
                "type_relation": _strings(pairs.relation, RELATIONS),
            }
        ),
    }
    if behavior is not None:
        users = pa.array([f"u{j:06d}" for j in range(behavior.n_users)], type=pa.string())
        tables["behavior"] = pa.table(
            {
                "query_id": query_ids.take(pa.array(behavior.query)),
                "item_id": item_ids.take(pa.array(behavior.item)),
                "impressions": pa.array(np.ones(len(behavior.query), dtype=np.int64)),
                "clicks": pa.array(behavior.clicks),
                "user_id": users.take(pa.array(behavior.user)),
                "timestamp": pa.array(behavior.timestamp),
                "position": pa.array(behavior.position),
            }
        )
    return tables


def _share(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {k: round(v / total, 6) for k, v in counts.items()}


def _counts(codes: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, int]:
    bins = np.bincount(codes.astype(np.int64), minlength=len(names))
    return {n: int(c) for n, c in zip(names, bins, strict=True)}


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 6) if len(values) else None


def _stats(
    cfg: SynthConfig,
    taxonomy: dict[str, int],
    n_items: int,
    queries: QueryTable,
    q_split: np.ndarray,
    pairs: PairArrays,
    behavior: BehaviorLog | None,
    labels: tuple[str, ...],
) -> dict[str, Any]:
    """Deterministic counts for the manifest (no timings: the manifest must be reproducible)."""
    lab = pairs.labelled
    buckets = list(BUCKETS)
    q_bucket = np.array([buckets.index(b) for b in queries.buckets], dtype=np.int8)
    p_bucket = q_bucket[pairs.query]
    label_dist = _counts(pairs.label[lab], labels)
    stats: dict[str, Any] = {
        "items": n_items,
        "queries": len(queries),
        "labelled_pairs": int(lab.sum()),
        "unlabelled_pairs": int((~lab).sum()),
        "label_distribution": label_dist,
        "label_share": _share(label_dist),
        "clean_label_distribution": _counts(pairs.clean[lab], labels),
        "unlabelled_clean_label_distribution": _counts(pairs.clean[~lab], labels),
        "esci_grade_distribution": _counts(pairs.esci[lab], ESCI_LABELS),
        "noise_rate": cfg.noise,
        "label_noise_disagreement": _mean(pairs.label[lab] != pairs.clean[lab]),
        "pairs_per_bucket": {
            b: {
                "labelled": int((lab & (p_bucket == i)).sum()),
                "unlabelled": int((~lab & (p_bucket == i)).sum()),
            }
            for i, b in enumerate(buckets)
        },
        "queries_per_bucket": _counts(q_bucket, buckets),
        "queries_per_split": _counts(q_split, SPLITS),
        "labelled_pairs_per_split": _counts(pairs.split[lab], SPLITS),
        "candidate_sources_labelled": _counts(pairs.source[lab], SOURCES),
        "query_type_terms_by_bucket": {
            b: _share(_counts(queries.term_kind[q_bucket == i], TERM_KINDS))
            for i, b in enumerate(buckets)
        },
        "misspelt_query_share_by_bucket": {
            b: _mean(queries.typos[q_bucket == i] > 0) for i, b in enumerate(buckets)
        },
        "taxonomy": taxonomy,
    }
    if behavior is not None:
        grade = pairs.esci[behavior.pair]
        stats["behavior"] = {
            "rows": len(behavior.clicks),
            "users": behavior.n_users,
            "clicks": int(behavior.clicks.sum()),
            "ctr_by_position": {
                str(p): _mean(behavior.clicks[behavior.position == p])
                for p in range(1, cfg.positions + 1)
            },
            "ctr_by_esci_grade": {
                name: _mean(behavior.clicks[grade == g]) for g, name in enumerate(ESCI_LABELS)
            },
        }
    return stats
