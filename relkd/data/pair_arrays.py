"""The per-pair integer arrays every store carries: ids, rows, label, split, bucket, aspects.

Computed with Arrow kernels from a canonical dataset (no Python object per pair) and shared by
the tokenized store and the prompt store, so both agree on what a pair row is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import ASPECT_VALUES, ASPECTS, BUCKETS, SPLITS
from relkd.errors import DataError

# name -> dtype of the arrays saved as <name>.npy
PAIR_ARRAYS: dict[str, str] = {
    "pair_id": "int64",
    "query_row": "int32",
    "item_row": "int32",
    "label": "int8",
    "split": "int8",
    "bucket": "int8",
}


def pq_column_names(dataset: CanonicalDataset, name: str) -> list[str]:
    """Column names of a dataset table, read from the Parquet footer only."""
    return pq.read_schema(dataset.path(name)).names


@dataclass
class PairArrays:
    """Pair rows of a dataset as arrays, in the dataset's pair order (optionally a subset).

    ``query_row``/``item_row`` index the queries/items tables; ``label`` is the class index in
    the scheme (-1 = unlabelled); ``split`` and ``bucket`` index SPLITS and BUCKETS; ``aspects``
    is int8 [pairs, 4] into ASPECT_VALUES (-1 missing), or None without aspect_* columns;
    ``dataset_row`` is each pair's row in ``pairs.parquet``; ``label_dist`` is float32
    [pairs, K] annotator distributions from the ``label_votes`` column (NaN rows without votes),
    or None without that column.
    """

    pair_id: np.ndarray
    query_row: np.ndarray
    item_row: np.ndarray
    label: np.ndarray
    split: np.ndarray
    bucket: np.ndarray
    aspects: np.ndarray | None
    dataset_row: np.ndarray
    label_dist: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pair_id)

    @classmethod
    def of(cls, dataset: CanonicalDataset, labelled_only: bool = False) -> PairArrays:
        """Validate and encode the pairs table (every pair, or the labelled ones only)."""
        scheme = dataset.scheme
        queries = dataset.table("queries", ["query_id", "bucket"])
        items = dataset.table("items", ["item_id"])
        present = set(pq_column_names(dataset, "pairs"))
        aspect_cols = [f"aspect_{a}" for a in ASPECTS if f"aspect_{a}" in present]
        votes_col = ["label_votes"] if "label_votes" in present else []
        pairs = dataset.table(
            "pairs", ["pair_id", "query_id", "item_id", "label", "split", *aspect_cols, *votes_col]
        )
        query_ids = unique_keys(queries.column("query_id"), "queries", "query_id", dataset)
        item_ids = unique_keys(items.column("item_id"), "items", "item_id", dataset)

        path = dataset.path("pairs")
        pair_id = pairs.column("pair_id").to_numpy().astype(np.int64, copy=False)
        sorted_ids = np.sort(pair_id)
        dup = int(np.count_nonzero(sorted_ids[1:] == sorted_ids[:-1]))
        if dup:
            raise DataError(f"{path}: {dup} duplicate pair_id value(s); pair_id must be unique")
        del sorted_ids
        query_row = lookup(pairs.column("query_id"), query_ids, path, "query_id", "queries")
        item_row = lookup(pairs.column("item_id"), item_ids, path, "item_id", "items")
        label = codes(
            pairs.column("label"),
            [*scheme.labels, *scheme.aliases],
            [*range(scheme.num_labels), *(scheme.index(a) for a in scheme.aliases)],
            path,
            "label",
            nullable=True,
        )
        split = codes(pairs.column("split"), SPLITS, range(len(SPLITS)), path, "split")
        q_bucket = codes(
            queries.column("bucket"),
            BUCKETS,
            range(len(BUCKETS)),
            dataset.path("queries"),
            "bucket",
        )
        aspects = None
        if aspect_cols:
            aspects = np.full((pairs.num_rows, len(ASPECTS)), -1, dtype=np.int8)
            for j, a in enumerate(ASPECTS):
                col = f"aspect_{a}"
                if col in aspect_cols:
                    aspects[:, j] = codes(
                        pairs.column(col), ASPECT_VALUES, range(len(ASPECT_VALUES)), path, col, True
                    )
        label_dist = None
        if votes_col:
            from relkd.data.label_votes import votes_to_distribution

            label_dist = votes_to_distribution(
                pairs.column("label_votes").to_pylist(), scheme, path, pair_id
            )
        keep = np.flatnonzero(label >= 0) if labelled_only else np.arange(len(pair_id))
        return cls(
            pair_id=pair_id[keep],
            query_row=query_row[keep],
            item_row=item_row[keep],
            label=label[keep],
            split=split[keep],
            bucket=q_bucket[query_row][keep],
            aspects=None if aspects is None else aspects[keep],
            dataset_row=keep.astype(np.int64),
            label_dist=None if label_dist is None else label_dist[keep],
        )

    def save(self, out: Path) -> None:
        """Write ``<name>.npy`` for every pair array (and ``aspects.npy`` when present)."""
        for name, dtype in PAIR_ARRAYS.items():
            np.save(out / f"{name}.npy", np.ascontiguousarray(getattr(self, name), dtype=dtype))
        if self.aspects is not None:
            np.save(out / "aspects.npy", np.ascontiguousarray(self.aspects, dtype=np.int8))
        if self.label_dist is not None:
            np.save(out / "label_dist.npy", np.ascontiguousarray(self.label_dist, np.float32))


def unique_keys(col: pa.ChunkedArray, table: str, key: str, dataset: CanonicalDataset) -> pa.Array:
    arr = col.combine_chunks()
    if pc.count_distinct(arr).as_py() != len(arr) or arr.null_count:
        raise DataError(f"{dataset.path(table)}: column {key} has duplicate or null values")
    return arr


def lookup(col: pa.ChunkedArray, keys: pa.Array, path: Path, name: str, table: str) -> np.ndarray:
    idx = pc.index_in(col, value_set=keys)
    if idx.null_count:
        raise DataError(f"{path}: {idx.null_count} pair(s) have a {name} not found in {table}")
    return idx.to_numpy().astype(np.int32, copy=False)


def codes(
    col: pa.ChunkedArray,
    names: Any,
    values: Any,
    path: Path,
    column: str,
    nullable: bool = False,
) -> np.ndarray:
    """Map a string column to small int codes via ``names -> values``; null -> -1 if nullable."""
    names = list(names)
    lut = np.asarray([*list(values), -1], dtype=np.int8)
    idx = pc.index_in(col, value_set=pa.array(names, pa.string()))
    bad = pc.and_(pc.is_valid(col), pc.is_null(idx))
    n_bad = pc.sum(bad).as_py() or 0
    if n_bad:
        example = pc.filter(col, bad)[0].as_py()
        raise DataError(
            f"{path}: column {column} has {n_bad} value(s) outside {names}, e.g. {example!r}"
        )
    if not nullable and col.null_count:
        raise DataError(f"{path}: column {column} has {col.null_count} null value(s)")
    return lut[pc.fill_null(idx, len(names)).to_numpy()]
