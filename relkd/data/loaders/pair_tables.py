"""Pair tables: de-duplication of judged pairs, the popularity proxy and buckets, split summaries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from relkd.data.splits import popularity_buckets

BUCKET_SOURCE_PROXY = "judged_pairs_per_query"


def dedup_pairs(
    table: pa.Table, *, id_col: str = "pair_id", label_col: str = "label"
) -> tuple[pa.Table, dict[str, int]]:
    """Collapse repeated (query_id, item_id) rows into one, deterministically.

    The winner's label is the majority among the group's non-null labels; a tie goes to the
    label of the lowest-id row among the tied labels. The kept row (and so the pair_id) is the
    group's lowest id. Returns the table and counts: ``duplicate_groups`` (pairs seen more than
    once), ``duplicate_rows_removed`` and ``conflicting_groups`` (groups with >1 distinct label).
    """
    n = table.num_rows
    info = {"duplicate_groups": 0, "duplicate_rows_removed": 0, "conflicting_groups": 0}
    if n == 0:
        return table, info
    q = pc.dictionary_encode(table.column("query_id").combine_chunks())
    i = pc.dictionary_encode(table.column("item_id").combine_chunks())
    key = q.indices.to_numpy().astype(np.int64) * (len(i.dictionary) + 1) + i.indices.to_numpy()
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    dup_rows = np.nonzero(counts[inverse] > 1)[0]
    if dup_rows.size == 0:
        return table, info
    ids = table.column(id_col).to_numpy()
    lab_enc = pc.dictionary_encode(table.column(label_col).combine_chunks())
    lab_idx = pc.fill_null(lab_enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    order = dup_rows[np.lexsort((ids[dup_rows], inverse[dup_rows]))]
    keep = np.ones(n, dtype=bool)
    keep[order] = False
    new_idx = lab_idx.copy()
    start = 0
    groups = inverse[order]
    while start < len(order):
        end = start
        while end < len(order) and groups[end] == groups[start]:
            end += 1
        rows = order[start:end]  # ascending id
        votes = Counter(int(lab_idx[r]) for r in rows if lab_idx[r] >= 0)
        keeper = rows[0]
        if votes:
            top = max(votes.values())
            tied = {lab for lab, c in votes.items() if c == top}
            winner = next(int(lab_idx[r]) for r in rows if lab_idx[r] in tied)
            new_idx[keeper] = winner
            if len(votes) > 1:
                info["conflicting_groups"] += 1
        keep[keeper] = True
        info["duplicate_groups"] += 1
        info["duplicate_rows_removed"] += len(rows) - 1
        start = end
    labels = pc.take(
        lab_enc.dictionary,
        pa.array(np.where(new_idx >= 0, new_idx, 0), mask=new_idx < 0),
    )
    idx = table.schema.get_field_index(label_col)
    table = table.set_column(idx, label_col, labels)
    return table.filter(pa.array(keep)), info


def frequency_proxy(pairs: pa.Table) -> dict[str, int]:
    """Judged (labelled) pairs per query: the popularity proxy for data without traffic."""
    labelled = pairs.filter(pc.is_valid(pairs.column("label")))
    return {
        row["values"]: int(row["counts"])
        for row in pc.value_counts(labelled.column("query_id")).to_pylist()
    }


def bucket_queries(
    query_ids: Sequence[str], frequency: Mapping[str, int]
) -> tuple[list[int], list[str]]:
    """Frequencies (0 where absent) and head/torso/tail buckets for ``query_ids``."""
    freq = [int(frequency.get(q, 0)) for q in query_ids]
    buckets = popularity_buckets(list(query_ids), np.asarray(freq, dtype=np.int64))
    return freq, [buckets[q] for q in query_ids]


def split_summary(pairs: pa.Table) -> dict[str, dict[str, int]]:
    """Pairs and distinct queries per split, for the manifest stats."""
    out: dict[str, dict[str, int]] = {"pairs": {}, "queries": {}}
    for split in ("train", "val", "test"):
        sub = pairs.filter(pc.equal(pairs.column("split"), split))
        out["pairs"][split] = sub.num_rows
        out["queries"][split] = len(pc.unique(sub.column("query_id")))
    return out


def sort_table(table: pa.Table, key: str) -> pa.Table:
    return table.take(pc.sort_indices(table, [(key, "ascending")]))


__all__ = [
    "BUCKET_SOURCE_PROXY",
    "bucket_queries",
    "dedup_pairs",
    "frequency_proxy",
    "sort_table",
    "split_summary",
]
