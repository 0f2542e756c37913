"""The behaviour table as row indices into the dataset's queries and items tables.

Shared by the ProRBP neighbours and the click graph, so both apply the same rule for what a live
system would know: ``eval_queries="logs"`` keeps every query's log; ``"hidden"`` drops every log
row of a query that has no train pair (the val and test queries, since splits are by query), so
their own clicks can never reach a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import EVAL_QUERY_POLICIES, SPLITS
from relkd.errors import DataError


@dataclass(frozen=True)
class BehaviorLog:
    """One entry per log row (int64 arrays), and the table sizes the rows index into."""

    query_row: np.ndarray
    item_row: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    num_queries: int
    num_items: int

    @classmethod
    def empty(cls, num_queries: int, num_items: int) -> BehaviorLog:
        z = np.zeros(0, np.int64)
        return cls(z, z, z, z, num_queries, num_items)

    @classmethod
    def from_dataset(cls, dataset: CanonicalDataset, eval_queries: str = "logs") -> BehaviorLog:
        """The dataset's behaviour table (empty when it has none), filtered by ``eval_queries``."""
        if eval_queries not in EVAL_QUERY_POLICIES:
            raise ValueError(f"eval_queries must be one of {EVAL_QUERY_POLICIES}")
        queries = dataset.table("queries", ["query_id"]).column("query_id").combine_chunks()
        items = dataset.table("items", ["item_id"]).column("item_id").combine_chunks()
        if not dataset.has_table("behavior"):
            return cls.empty(len(queries), len(items))
        log = dataset.table("behavior", ["query_id", "item_id", "impressions", "clicks"])
        path = dataset.path("behavior")
        q_idx = pc.index_in(log.column("query_id"), value_set=queries)
        i_idx = pc.index_in(log.column("item_id"), value_set=items)
        for name, idx in (("query_id", q_idx), ("item_id", i_idx)):
            if idx.null_count:
                raise DataError(
                    f"{path}: column {name} has {idx.null_count} value(s) not in the dataset"
                )

        def ints(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
            return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)

        q_row, i_row = ints(q_idx), ints(i_idx)
        imp, clk = ints(log.column("impressions")), ints(log.column("clicks"))
        if eval_queries == "hidden":
            pairs = dataset.table("pairs", ["query_id", "split"])
            train = pc.equal(pairs.column("split"), SPLITS[0])
            train_queries = pc.unique(pc.filter(pairs.column("query_id"), train))
            keep = pc.is_in(log.column("query_id"), value_set=pa.array(train_queries))
            keep = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
            q_row, i_row, imp, clk = q_row[keep], i_row[keep], imp[keep], clk[keep]
        return cls(q_row, i_row, imp, clk, len(queries), len(items))
