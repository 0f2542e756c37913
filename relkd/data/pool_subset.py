"""The deterministic, nested subset of the unlabelled pool a ``pool_ratio`` selects.

``relkd teacher annotate --pool-ratio R`` and ``QueryItemDataModule(pool_ratio=R)`` (config
``data.pool_ratio``) both take the pool pairs through :func:`pool_mask`, so the pairs a cache was
annotated for are exactly the pairs training draws. The pool pairs are ranked by a splitmix64
hash of their pair_id (the one the cache shards use) and the first ``round(R * labelled train
pairs)`` are kept: independent of row order, and nested (the 1x subset is inside the 2x one,
inside the 5x one).
"""

from __future__ import annotations

import math

import numpy as np

from relkd.errors import ConfigError


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed, well-spread hash of int64 ids (also what assigns pairs
    to teacher cache shards, relkd/teacher_cache/cache_writer.py)."""
    z = np.asarray(x, dtype=np.int64).view(np.uint64).copy()
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def pool_count(ratio: float, labelled_train: int) -> int:
    """How many pool pairs ``ratio`` asks for: ``round(ratio * labelled_train)``."""
    if not math.isfinite(ratio) or ratio < 0:
        raise ConfigError(f"pool ratio must be a finite number >= 0, got {ratio}")
    return round(ratio * labelled_train)


def pool_subset(pair_ids: np.ndarray, count: int) -> np.ndarray:
    """Bool mask over ``pair_ids`` (the pool) of the ``count`` pairs with the smallest splitmix64
    hash: the same pairs whatever the order of ``pair_ids``, and the first ``count`` of them
    are inside the first ``count + m``."""
    pid = np.asarray(pair_ids, dtype=np.int64)
    if not 0 <= count <= len(pid):
        raise ValueError(f"count must be in [0, {len(pid)}], got {count}")
    # splitmix64 is a bijection of 64-bit words: distinct ids never tie
    order = np.argsort(mix64(pid), kind="stable")
    mask = np.zeros(len(pid), dtype=bool)
    mask[order[:count]] = True
    return mask


def pool_mask(
    pair_id: np.ndarray, labelled: np.ndarray, train: np.ndarray, ratio: float | None
) -> np.ndarray:
    """Bool mask over all pairs of the pool pairs ``ratio`` selects: with None every unlabelled
    pair, else ``pool_count(ratio, labelled train pairs)`` of the unlabelled train pairs (a
    validated dataset has unlabelled pairs in train only). ``labelled``/``train``: per pair,
    whether it has a label / is in the train split.

    Raises ConfigError when the dataset has fewer unlabelled pairs than the ratio asks for.
    """
    labelled = np.asarray(labelled, dtype=bool)
    if ratio is None:
        return ~labelled
    train = np.asarray(train, dtype=bool)
    n_train = int(np.count_nonzero(labelled & train))
    count = pool_count(ratio, n_train)
    where = np.flatnonzero(~labelled & train)
    if count > len(where):
        raise ConfigError(
            f"pool ratio {ratio:g} asks for {count} pool pairs ({ratio:g} x {n_train} labelled "
            f"train pairs) but the dataset has only {len(where)} unlabelled train pairs"
        )
    out = np.zeros(len(labelled), dtype=bool)
    out[where[pool_subset(np.asarray(pair_id, dtype=np.int64)[where], count)]] = True
    return out
