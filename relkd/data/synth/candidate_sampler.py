"""Candidate items per query, drawn so every label grade is well represented.

Each query draws its pairs from five *sources* whose labels the rules fix in advance:

- ``exact``: same-type items satisfying every stated aspect (Exact),
- ``near``: same-type items with a conflict (Substitute),
- ``equivalent``: items of an equivalent type (Substitute),
- ``complement``: items of an accessory / complementary type (Complement),
- ``random``: items of unrelated types (Irrelevant).

Labelled pairs follow a judged-set mix (many exact and near misses, like the pools LLM or human
annotators see); the unlabelled pool follows a retrieval-like mix with more noise. When a
source runs dry (a very specific tail query has few exact items) its share spills to the
neighbouring sources, so each query still gets exactly its requested number of pairs.

Work is vectorised per product type: the exact/near split is a [queries x items] boolean
matrix of that type, and sampling without replacement is a random-key partial sort (matrix
sources) or a random stride through the pool with a step coprime to its size (large pools).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relkd.data.synth.item_generator import ItemTable
from relkd.data.synth.query_builder import QueryTable
from relkd.data.synth.relevance_rules import (
    EXACT,
    MATCH,
    attributes_aspect,
    esci_label,
    stated_aspect,
)
from relkd.data.synth.taxonomy import COMPLEMENT, EQUIVALENT, SAME, UNRELATED, Taxonomy
from relkd.errors import DataError

SOURCES: tuple[str, ...] = ("exact", "near", "equivalent", "complement", "random")
LABELLED_MIX = (0.44, 0.12, 0.08, 0.12, 0.24)
UNLABELLED_MIX = (0.2, 0.2, 0.08, 0.1, 0.42)
# share of irrelevant draws that are lexical distractors: unrelated items sharing a stated
# brand or attribute value with the query, as a keyword retriever would surface them
DISTRACTOR_SHARE = 0.6
NEAR_PULL = 1.0  # near misses sharing s stated aspects are drawn ~(1 + s) times as often


@dataclass
class Candidates:
    query: np.ndarray  # int32 query row
    item: np.ndarray  # int32 item row
    labelled: np.ndarray  # bool
    source: np.ndarray  # int8 index into SOURCES


def primes_above(n: int, count: int = 32) -> np.ndarray:
    """``count`` primes larger than ``n``: stride steps coprime with every pool size <= n."""
    out: list[int] = []
    x = max(n, 2) + 1
    while len(out) < count:
        if all(x % d for d in range(2, int(x**0.5) + 1)):
            out.append(x)
        x += 1
    return np.array(out, dtype=np.int64)


def fill_quotas(quota: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Per-row takes <= capacity summing to the quota total (when capacity allows).

    Shortfalls spill the way a judge pool would: missing exact items are replaced half by
    near misses and half by random items, missing equivalents by near misses, missing
    complements by random items, then whatever is still missing by any spare capacity.
    """
    quota = quota.astype(np.int64)
    take = np.minimum(quota, cap)
    short = quota - take
    extra_near = (short[:, 0] + 1) // 2 + short[:, 2]
    extra_random = short[:, 0] // 2 + short[:, 3]
    want_near = take[:, 1] + short[:, 1] + extra_near
    take[:, 1] = np.minimum(want_near, cap[:, 1])
    want_random = take[:, 4] + short[:, 4] + extra_random + (want_near - take[:, 1])
    take[:, 4] = np.minimum(want_random, cap[:, 4])
    remaining = quota.sum(1) - take.sum(1)
    for s in (1, 2, 3, 0, 4):
        add = np.minimum(remaining, cap[:, s] - take[:, s])
        take[:, s] += add
        remaining -= add
    return take


def _smallest_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` smallest keys per row, in increasing key order."""
    if k < keys.shape[1]:
        idx = np.argpartition(keys, k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(keys.shape[1]), keys.shape).copy()
    order = np.argsort(np.take_along_axis(keys, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def _stride_sample(
    pool: np.ndarray, k: np.ndarray, rng: np.random.Generator, primes: np.ndarray
) -> np.ndarray:
    """[rows, max k] distinct pool members per row (columns >= k are junk, masked later)."""
    n = len(pool)
    kmax = int(k.max()) if len(k) else 0
    if kmax == 0 or n == 0:
        return np.zeros((len(k), kmax), dtype=np.int32)
    start = rng.integers(0, n, len(k))
    step = primes[rng.integers(0, len(primes), len(k))] % n
    pos = (start[:, None] + np.arange(kmax)[None, :] * step[:, None]) % n
    return pool[pos]


@dataclass
class AtomIndex:
    """Items by stated-aspect atom (a brand, or an attribute key=value): CSR layout."""

    offsets: np.ndarray  # int64 [n_atoms + 1]
    items: np.ndarray  # int32, items of atom a at offsets[a]:offsets[a+1]
    key_offset: np.ndarray  # int64 [n_keys]: atom code of (k, v) = key_offset[k] + v
    brand_offset: int  # atom code of brand b = brand_offset + b


def build_atom_index(tax: Taxonomy, items: ItemTable) -> AtomIndex:
    sizes = np.array([len(v) for v in tax.key_values], dtype=np.int64)
    key_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    brand_offset = int(sizes.sum())
    n_atoms = brand_offset + len(tax.brands)
    rows, cols = np.nonzero(items.attrs >= 0)
    atom = np.concatenate(
        [key_offset[cols] + items.attrs[rows, cols], brand_offset + items.brand.astype(np.int64)]
    )
    item = np.concatenate([rows, np.arange(len(items))]).astype(np.int32)
    order = np.argsort(atom, kind="stable")
    offsets = np.searchsorted(atom[order], np.arange(n_atoms + 1))
    return AtomIndex(offsets.astype(np.int64), item[order], key_offset, brand_offset)


def _query_atoms(queries: QueryTable, rows: np.ndarray, index: AtomIndex) -> np.ndarray:
    """[rows, 4] atom codes a query states (brand + up to 3 attributes), -1 padded."""
    slots = queries.slots[rows].astype(np.int64)
    attr = np.where(slots >= 0, index.key_offset[np.maximum(slots, 0)] + queries.values[rows], -1)
    brand = queries.brand[rows].astype(np.int64)
    brand = np.where(brand >= 0, index.brand_offset + brand, -1)
    return np.concatenate([brand[:, None], attr], axis=1)


def _random_source(
    k: np.ndarray,
    atoms: np.ndarray,
    unrelated: np.ndarray,
    is_unrelated: np.ndarray,
    index: AtomIndex,
    rng: np.random.Generator,
    primes: np.ndarray,
) -> np.ndarray:
    """[rows, max k] distinct unrelated items per row in random order (junk beyond k).

    A DISTRACTOR_SHARE of each row comes from the posting list of one atom the query states,
    the rest uniformly; uniform picks that repeat a distractor are dropped, which leaves at
    least k valid picks because the uniform draw alone has k distinct items.
    """
    n_rows = len(k)
    kmax = int(k.max())
    n_stated = (atoms >= 0).sum(1)
    kd = np.where(n_stated > 0, rng.binomial(k, DISTRACTOR_SHARE), 0)
    # one stated atom per row, uniformly among the stated ones
    pick = np.floor(rng.random(n_rows) * np.maximum(n_stated, 1)).astype(np.int64)
    order = np.argsort(atoms < 0, axis=1, kind="stable")  # stated atoms first
    atom = np.take_along_axis(atoms, order, axis=1)[np.arange(n_rows), pick]
    atom = np.maximum(atom, 0)
    lo, size = index.offsets[atom], index.offsets[atom + 1] - index.offsets[atom]
    kdmax = int(kd.max())
    if kdmax:
        start = rng.integers(0, np.iinfo(np.int64).max, n_rows) % np.maximum(size, 1)
        step = primes[rng.integers(0, len(primes), n_rows)] % np.maximum(size, 1)
        j = np.arange(kdmax)[None, :]
        pos = lo[:, None] + (start[:, None] + j * step[:, None]) % np.maximum(size, 1)[:, None]
        dist = index.items[np.minimum(pos, len(index.items) - 1)]
        dvalid = (j < np.minimum(kd, size)[:, None]) & is_unrelated[dist]
    else:
        dist = np.zeros((n_rows, 0), dtype=np.int32)
        dvalid = np.zeros((n_rows, 0), dtype=bool)
    uni = _stride_sample(unrelated, k, rng, primes)
    uvalid = np.arange(kmax)[None, :] < k[:, None]
    if kdmax:
        row_key = np.arange(n_rows, dtype=np.int64)[:, None] * (len(is_unrelated) + 1)
        uvalid &= ~np.isin(row_key + uni, (row_key + dist)[dvalid])
    cand = np.concatenate([dist, uni], axis=1)
    valid = np.concatenate([dvalid, uvalid], axis=1)
    keep = valid & (np.cumsum(valid, axis=1) <= k[:, None])
    keys = np.where(keep, rng.random(keep.shape, dtype=np.float32), 2.0)
    return np.take_along_axis(cand, _smallest_k(keys, kmax), axis=1)


def sample_candidates(
    tax: Taxonomy,
    items: ItemTable,
    queries: QueryTable,
    labelled: np.ndarray,
    unlabelled: np.ndarray,
    rng: np.random.Generator,
) -> Candidates:
    """Draw ``labelled[q]`` + ``unlabelled[q]`` distinct items for every query ``q``."""
    primes = primes_above(len(items))
    index = build_atom_index(tax, items)
    out_q: list[np.ndarray] = []
    out_i: list[np.ndarray] = []
    out_l: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    item_type = items.type.astype(np.int64)
    for t in np.unique(queries.type).tolist():
        qrows = np.flatnonzero(queries.type == t)
        rel = tax.relation[t][item_type]
        same = np.flatnonzero(rel == SAME)
        pools = {
            2: np.flatnonzero(rel == EQUIVALENT).astype(np.int32),
            3: np.flatnonzero(rel == COMPLEMENT).astype(np.int32),
            4: np.flatnonzero(rel == UNRELATED).astype(np.int32),
        }
        # the exact/near split of this type's items for each query, by the label rules
        a_brand = stated_aspect(queries.brand[qrows][:, None], items.brand[same][None, :])
        a_model = stated_aspect(queries.model[qrows][:, None], items.model[same][None, :])
        by_key = np.ascontiguousarray(items.attrs[same].T)  # [keys, items of this type]
        q_values = [queries.values[qrows, j][:, None] for j in range(queries.slots.shape[1])]
        i_values = [
            by_key[np.maximum(queries.slots[qrows, j], 0)] for j in range(queries.slots.shape[1])
        ]
        a_attr = attributes_aspect(q_values, i_values)
        exact = esci_label(np.zeros(a_brand.shape, np.int8), a_brand, a_model, a_attr) == EXACT
        # near misses sharing more stated aspects come first, as a retriever would rank them
        shared = (a_brand == MATCH).astype(np.float32) + (a_model == MATCH)
        for q, i in zip(q_values, i_values, strict=True):
            shared += (q >= 0) & (i == q)
        del i_values, a_attr

        n_exact = exact.sum(axis=1)
        cap = np.stack(
            [
                n_exact,
                len(same) - n_exact,
                *(np.full(len(qrows), len(pools[s])) for s in (2, 3, 4)),
            ],
            axis=1,
        ).astype(np.int64)
        lab = labelled[qrows]
        unl = unlabelled[qrows]
        lab_take = fill_quotas(rng.multinomial(lab, LABELLED_MIX), cap)
        unl_take = fill_quotas(rng.multinomial(unl, UNLABELLED_MIX), cap - lab_take)
        total = lab_take + unl_take
        if not np.array_equal(total.sum(1), lab + unl):
            raise DataError(
                f"synth config: items {len(items)} is too small for "
                f"{int((lab + unl).max())} pairs per query; raise items or lower unlabeled_ratio"
            )

        keys = rng.random(exact.shape, dtype=np.float32) if len(same) else None
        for s in range(5):
            k = total[:, s]
            kmax = int(k.max())
            if kmax == 0:
                continue
            if s == 0:
                assert keys is not None
                chosen = same[_smallest_k(np.where(exact, keys, 2.0), kmax)]
            elif s == 1:
                assert keys is not None
                near_keys = np.where(exact, 2.0, keys / (1.0 + NEAR_PULL * shared))
                chosen = same[_smallest_k(near_keys, kmax)]
            elif s == 4:
                chosen = _random_source(
                    k,
                    _query_atoms(queries, qrows, index),
                    pools[4],
                    rel == UNRELATED,
                    index,
                    rng,
                    primes,
                )
            else:
                chosen = _stride_sample(pools[s], k, rng, primes)
            col = np.arange(kmax)[None, :]
            valid = col < k[:, None]
            out_q.append(np.broadcast_to(qrows[:, None], chosen.shape)[valid].astype(np.int32))
            out_i.append(chosen[valid].astype(np.int32))
            out_l.append((col < lab_take[:, s : s + 1])[valid])
            out_s.append(np.full(int(valid.sum()), s, dtype=np.int8))
    return Candidates(
        query=np.concatenate(out_q),
        item=np.concatenate(out_i),
        labelled=np.concatenate(out_l),
        source=np.concatenate(out_s),
    )
