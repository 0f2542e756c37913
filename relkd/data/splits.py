"""Query-level splits and popularity buckets shared by the generator and every loader."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from relkd.data.ids import stable_unit


def split_queries(
    query_ids: Sequence[str], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """Assign each query to one split; depends only on (query_id, seed), never on row order.

    Args:
        query_ids: distinct query ids.
        fractions: split name -> share, e.g. ``{"train": 0.8, "val": 0.1, "test": 0.1}``.
        seed: split seed recorded in the manifest.
    """
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ValueError(f"split fractions must be non-negative and sum > 0, got {fractions}")
    names = list(fractions)
    edges = np.cumsum([fractions[n] / total for n in names])
    out: dict[str, str] = {}
    for qid in query_ids:
        u = stable_unit(str(qid), seed)
        out[qid] = names[min(int(np.searchsorted(edges, u, side="right")), len(names) - 1)]
    return out


def popularity_buckets(
    query_ids: Sequence[str],
    frequency: Sequence[int] | np.ndarray,
    head: float = 0.1,
    torso: float = 0.3,
) -> dict[str, str]:
    """Head/torso/tail by frequency rank: the top ``head`` share of queries is head, the next
    ``torso`` share torso, the rest tail. Ties break by query id so the result is stable."""
    freq = np.asarray(frequency, dtype=np.int64)
    order = sorted(range(len(query_ids)), key=lambda i: (-int(freq[i]), str(query_ids[i])))
    n = len(order)
    n_head = max(1, round(n * head)) if n else 0
    n_torso = round(n * torso)
    out: dict[str, str] = {}
    for rank, i in enumerate(order):
        out[query_ids[i]] = (
            "head" if rank < n_head else "torso" if rank < n_head + n_torso else "tail"
        )
    return out
