"""Behaviour neighbours (ProRBP): what users clicked for a query, and what they searched to
find an item, read from the search log.

Per (query, item) the log's impressions and clicks are summed; a pair is a high-confidence
neighbour when it has at least ``min_impressions`` impressions and a CTR of at least ``min_ctr``
(ProRBP keeps pairs with >= 100 impressions and CTR >= 0.2 in a production log). Neighbours are
ranked by CTR, then clicks, then impressions, then row (deterministic).

- ``query_neighbors(q, exclude_item=i, k)``: the items clicked for query ``q``;
- ``item_neighbors(i, exclude_query=q, k)``: the queries that led to clicks on item ``i``.

The target pair is never its own neighbour: judging (q, i), ``i`` is excluded from q's list and
``q`` from i's list, so a pair's own clicks never reach its own prompt.

What a live system would have (``eval_queries``): a teacher annotates pairs of queries that
already have logs, so by default (``logs``) every query's log is used. ``hidden`` drops every
log row of val and test queries before aggregation: they get no query-side neighbours and never
appear as item-side neighbours, which measures how much the evaluation queries' own logs help.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relkd.behavior.behavior_log import EVAL_QUERY_POLICIES, BehaviorLog
from relkd.data.canonical_dataset import CanonicalDataset

__all__ = ["EVAL_QUERY_POLICIES", "BehaviorNeighbors"]


@dataclass(frozen=True)
class _Csr:
    """Ranked neighbour lists: rows of ``owner`` are ``targets[offsets[r]:offsets[r + 1]]``."""

    offsets: np.ndarray  # int64 [owners + 1]
    targets: np.ndarray  # int64

    def take(self, owner: int, exclude: int, k: int) -> list[int]:
        out = []
        for t in self.targets[self.offsets[owner] : self.offsets[owner + 1]]:
            if t != exclude:
                out.append(int(t))
                if len(out) == k:
                    break
        return out


def _csr(owner: np.ndarray, target: np.ndarray, n_owners: int) -> _Csr:
    counts = np.bincount(owner, minlength=n_owners)
    offsets = np.zeros(n_owners + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return _Csr(offsets=offsets, targets=target.astype(np.int64))


class BehaviorNeighbors:
    """High-confidence behaviour neighbours of queries and items (rows of the dataset tables).

    Args:
        query_row, item_row: int arrays, one entry per log row (rows of queries/items tables).
        impressions, clicks: int arrays per log row.
        num_queries, num_items: table sizes.
        min_impressions, min_ctr: the confidence thresholds (ProRBP's m and c).
    """

    def __init__(
        self,
        query_row: np.ndarray,
        item_row: np.ndarray,
        impressions: np.ndarray,
        clicks: np.ndarray,
        num_queries: int,
        num_items: int,
        min_impressions: int = 1,
        min_ctr: float = 0.2,
    ) -> None:
        if min_impressions < 1:
            raise ValueError("min_impressions must be >= 1")
        if not 0.0 <= min_ctr <= 1.0:
            raise ValueError("min_ctr must be in [0, 1]")
        q = np.asarray(query_row, np.int64)
        i = np.asarray(item_row, np.int64)
        key = q * num_items + i
        uniq, inv = np.unique(key, return_inverse=True)
        weights = {"minlength": len(uniq)}
        imp = np.bincount(inv, np.asarray(impressions, np.float64), **weights).astype(np.float64)
        clk = np.bincount(inv, np.asarray(clicks, np.float64), **weights).astype(np.float64)
        pq, pi = uniq // num_items, uniq % num_items
        ctr = np.divide(clk, imp, out=np.zeros_like(clk), where=imp > 0)
        keep = (imp >= min_impressions) & (ctr >= min_ctr) & (clk > 0)
        pq, pi, imp, clk, ctr = pq[keep], pi[keep], imp[keep], clk[keep], ctr[keep]
        self.num_pairs = int(keep.sum())
        # rank: owner, then CTR desc, clicks desc, impressions desc, target asc
        by_query = np.lexsort((pi, -imp, -clk, -ctr, pq))
        self._queries = _csr(pq[by_query], pi[by_query], num_queries)
        by_item = np.lexsort((pq, -imp, -clk, -ctr, pi))
        self._items = _csr(pi[by_item], pq[by_item], num_items)

    @classmethod
    def from_dataset(
        cls,
        dataset: CanonicalDataset,
        min_impressions: int = 1,
        min_ctr: float = 0.2,
        eval_queries: str = "logs",
    ) -> BehaviorNeighbors:
        """Neighbours from a dataset's behaviour table (see the module docstring for
        ``eval_queries``). A dataset without one has no neighbours."""
        log = BehaviorLog.from_dataset(dataset, eval_queries)
        return cls(
            log.query_row,
            log.item_row,
            log.impressions,
            log.clicks,
            log.num_queries,
            log.num_items,
            min_impressions,
            min_ctr,
        )

    def query_neighbors(self, query_row: int, exclude_item: int, k: int) -> list[int]:
        """Up to ``k`` item rows clicked for ``query_row``, best first, never ``exclude_item``."""
        return self._queries.take(query_row, exclude_item, k) if k > 0 else []

    def item_neighbors(self, item_row: int, exclude_query: int, k: int) -> list[int]:
        """Up to ``k`` query rows that led to clicks on ``item_row``, never ``exclude_query``."""
        return self._items.take(item_row, exclude_query, k) if k > 0 else []
