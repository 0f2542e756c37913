"""Store rows of pair_ids: the tokenized and prompt stores keep the dataset's pair order, so a
pair is found by its id, never assumed to sit at a fixed row."""

from __future__ import annotations

from typing import Any

import numpy as np


def rows_of(store: Any, pair_ids: np.ndarray) -> np.ndarray:
    """The row of each of ``pair_ids`` in ``store`` (a tokenized or prompt store), -1 where the
    store lacks the pair."""
    pair_ids = np.asarray(pair_ids, dtype=np.int64)
    store_pid = np.asarray(store.view("pair_id"), dtype=np.int64)
    if not len(store_pid):
        return np.full(len(pair_ids), -1, dtype=np.int64)
    order = np.argsort(store_pid, kind="stable")
    pos = np.clip(np.searchsorted(store_pid[order], pair_ids), 0, len(order) - 1)
    rows = order[pos]
    return np.where(store_pid[rows] == pair_ids, rows, -1).astype(np.int64)
