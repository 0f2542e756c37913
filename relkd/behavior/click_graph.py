"""The query–item click graph and its metapath neighbours (BERM's k-order relevance).

The log is aggregated into sparse query x item matrices of impressions and clicks
(``scipy.sparse``; duplicates summed), and an edge is kept where a pair has at least
``min_clicks`` clicks. Metapath neighbours:

- ``qiq``: queries that share clicked items with a query (q -> i -> q');
- ``iqi``: items that share clicking queries with an item (i -> q -> i').

Weights are cosine similarities of the nodes' click vectors (each node's clicks L2-normalised
over the nodes of the other side), so a hub item does not make every pair of its queries
neighbours with weight 1. Order 1 is the top-k of ``X X^T`` (self excluded). Order 2 walks the
metapath twice over the order-1 top-k graph (``S1 S1``), excluding the node itself and its
order-1 neighbours, so each order adds new nodes; sparsifying to the top-k before the second
walk keeps it linear in the nodes (no dense n x n product). Ties are broken by node index, so
the lists are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from relkd.behavior.behavior_log import BehaviorLog

METAPATHS = ("qiq", "iqi")


@dataclass(frozen=True)
class Neighbors:
    """Top-k neighbour lists: ``index`` int32 [N, k] (-1 where a node has fewer), ``weight``
    float32 [N, k] (0 there)."""

    index: np.ndarray
    weight: np.ndarray


def _l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def top_k_rows(s: sp.csr_matrix, k: int) -> Neighbors:
    """Each row's ``k`` largest positive entries, by value desc then column asc."""
    s = sp.csr_matrix(s)
    s.eliminate_zeros()
    n = s.shape[0]
    index = np.full((n, k), -1, np.int32)
    weight = np.zeros((n, k), np.float32)
    if s.nnz == 0 or k == 0:
        return Neighbors(index, weight)
    rows = np.repeat(np.arange(n), np.diff(s.indptr))
    order = np.lexsort((s.indices, -s.data, rows))
    rank = np.arange(len(order)) - s.indptr[rows[order]]
    keep = order[rank < k]
    r, c = rows[keep], rank[rank < k]
    index[r, c] = s.indices[keep]
    weight[r, c] = s.data[keep]
    return Neighbors(index, weight)


def _as_sparse(nb: Neighbors, n: int) -> sp.csr_matrix:
    r, c = np.nonzero(nb.index >= 0)
    return sp.csr_matrix((nb.weight[r, c].astype(np.float64), (r, nb.index[r, c])), shape=(n, n))


class ClickGraph:
    """Sparse click graph over the dataset's query rows x item rows.

    Args:
        log: the behaviour log (:class:`BehaviorLog`, already filtered for val/test queries).
        min_clicks: clicks an aggregated (query, item) pair needs to be an edge.
    """

    def __init__(self, log: BehaviorLog, min_clicks: int = 1) -> None:
        if min_clicks < 1:
            raise ValueError("min_clicks must be >= 1")
        shape = (log.num_queries, log.num_items)
        idx = (log.query_row, log.item_row)
        self.impressions = sp.csr_matrix((log.impressions.astype(np.float64), idx), shape=shape)
        clicks = sp.csr_matrix((log.clicks.astype(np.float64), idx), shape=shape)
        clicks.sum_duplicates()
        self.impressions.sum_duplicates()
        clicks.data[clicks.data < min_clicks] = 0
        clicks.eliminate_zeros()
        self.clicks = clicks
        self.min_clicks = int(min_clicks)

    @property
    def shape(self) -> tuple[int, int]:
        return self.clicks.shape

    def ctr(self) -> sp.csr_matrix:
        """Click-through rate of every edge (clicks / impressions) as a sparse matrix."""
        imp = self.impressions.multiply(self.clicks > 0).tocsr()
        out = self.clicks.copy()
        out.data = out.data / np.maximum(np.asarray(imp[self.clicks.nonzero()]).ravel(), 1.0)
        return out

    def query_clicks(self) -> np.ndarray:
        """int64 [num_queries]: clicks on the query's edges."""
        return np.asarray(self.clicks.sum(axis=1)).ravel().astype(np.int64)

    def item_clicks(self) -> np.ndarray:
        """int64 [num_items]: clicks on the item's edges."""
        return np.asarray(self.clicks.sum(axis=0)).ravel().astype(np.int64)

    def metapath(self, kind: str, order: int, top_k: int) -> Neighbors:
        """Neighbours at exactly ``order`` (1 or 2) walks of metapath ``kind`` (qiq or iqi)."""
        if kind not in METAPATHS:
            raise ValueError(f"metapath must be one of {METAPATHS}, got {kind!r}")
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        x = _l2_rows(self.clicks if kind == "qiq" else sp.csr_matrix(self.clicks.T))
        n = x.shape[0]
        s1 = sp.csr_matrix(x @ x.T)
        s1.setdiag(0)
        first = top_k_rows(s1, top_k)
        if order == 1:
            return first
        a1 = _as_sparse(first, n)
        s2 = sp.csr_matrix(a1 @ a1)
        s2.setdiag(0)
        # exactly two walks: drop the order-1 neighbours
        s2 = s2 - s2.multiply(a1 > 0)
        return top_k_rows(sp.csr_matrix(s2), top_k)
