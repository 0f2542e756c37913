"""Wayfair WANDS -> canonical dataset.

Reads the upstream ``dataset/`` folder: ``product.csv``, ``query.csv`` and ``label.csv``. The
files are TAB-separated despite the ``.csv`` names and were written with CSV quoting (a field
containing ``"`` is wrapped in quotes with the quote doubled, e.g. ``"fawkes 36"" vanity"``);
see :func:`relkd.data.loaders.table_files.read_delimited`.

- Repeated (query_id, product_id) label rows are collapsed deterministically: majority label,
  ties to the lowest ``id`` row among the tied labels; ``pair_id`` is the group's lowest ``id``.
- WANDS has no splits: queries are split train/val/test with the seed.
- ``product_features`` (``attr:value|attr:value``) becomes the ``attributes`` JSON object; see
  :func:`parse_features` for malformed entries. The raw string is kept as ``features_raw``.
- Every product is kept as an item (the full catalogue); queries without labels are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import WANDS
from relkd.data.loaders.column_checks import (
    blank_mask,
    blank_to_null,
    check_unique,
    float_column,
    int_column,
    missing_refs,
    require_columns,
    string_ids,
)
from relkd.data.loaders.label_mapping import manifest_stats, map_labels
from relkd.data.loaders.loader_options import (
    check_fractions,
    check_on_empty,
    examples,
    guard_out,
    input_hashes,
    require_file,
)
from relkd.data.loaders.pair_tables import (
    BUCKET_SOURCE_PROXY,
    bucket_queries,
    dedup_pairs,
    frequency_proxy,
    sort_table,
    split_summary,
)
from relkd.data.loaders.table_files import read_delimited
from relkd.data.splits import split_queries
from relkd.errors import DataError

PRODUCT_FILE = "product.csv"
QUERY_FILE = "query.csv"
LABEL_FILE = "label.csv"
PRODUCT_COLUMNS = (
    "product_id",
    "product_name",
    "product_class",
    "category_hierarchy",
    "product_description",
    "product_features",
)
PRODUCT_ALIASES = {"category_hierarchy": ("category hierarchy",)}
RATING_COLUMNS = ("rating_count", "average_rating", "review_count")
QUERY_COLUMNS = ("query_id", "query")
LABEL_COLUMNS = ("id", "query_id", "product_id", "label")
UNPARSED_KEY = "_unparsed"


def parse_features(raw: str | None) -> tuple[str | None, int, int]:
    """``attr:value|attr:value`` -> (JSON object string or None, malformed entries, repeated keys).

    - Entries split on ``|``; key and value split on the first ``:``; both are stripped
      (``"producttype : slow cooker"`` -> ``{"producttype": "slow cooker"}``). Empty entries
      (e.g. from a trailing ``|``) are skipped.
    - A repeated key keeps every value, joined with ``|`` in file order.
    - A malformed entry (no ``:`` or an empty key, e.g. ``" : gray wood"``) is not dropped: the
      stripped raw entries are kept, ``|``-joined, under the key ``"_unparsed"``.
    All values are strings. No features at all -> None (null).
    """
    if raw is None or not raw.strip():
        return None, 0, 0
    attrs: dict[str, str] = {}
    unparsed: list[str] = []
    repeated = 0
    for entry in raw.split("|"):
        if not entry.strip():
            continue
        key, sep, value = entry.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            unparsed.append(entry.strip())
            continue
        if key in attrs:
            attrs[key] = f"{attrs[key]}|{value}"
            repeated += 1
        else:
            attrs[key] = value
    if unparsed:
        attrs[UNPARSED_KEY] = "|".join(unparsed)
    if not attrs:
        return None, len(unparsed), repeated
    return json.dumps(attrs, ensure_ascii=False, sort_keys=True), len(unparsed), repeated


def _top_category(hierarchy: str | None) -> str | None:
    if hierarchy is None:
        return None
    for part in hierarchy.split("/"):
        if part.strip():
            return part.strip()
    return None


def import_wands(
    src: str | Path,
    out: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    on_empty: str = "error",
    overwrite: bool = False,
    name: str = "wands",
) -> CanonicalDataset:
    """Import the upstream WANDS ``dataset/`` folder ``src`` into a canonical dataset at ``out``.

    Args:
        val_fraction, test_fraction: query shares for val and test (train keeps the rest).
        on_empty: ``error`` (default) raises on an empty product name or query text; ``drop``
            drops those products/queries with their label rows and records the counts.
    """
    check_on_empty(on_empty)
    check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
    src = Path(src)
    hint = "fetch it with `relkd data download wands --to DIR`"
    paths = _WandsFiles(
        require_file(src / PRODUCT_FILE, hint),
        require_file(src / QUERY_FILE, hint),
        require_file(src / LABEL_FILE, hint),
    )
    guard_out(out, list(paths))
    inputs = input_hashes(list(paths))
    stats: dict[str, int] = {}
    read = _read(paths, stats)
    read = _drop_empty_texts(read, paths, on_empty, stats)
    pairs, pair_q = _split_pairs(read.pairs, val_fraction, test_fraction, seed, stats)
    queries_t = _queries_table(read, pairs, pair_q, paths.queries, stats)
    items = _items_table(read, paths.products, stats)
    stats["items"] = items.num_rows
    stats["queries"] = queries_t.num_rows

    summary = split_summary(pairs)
    return CanonicalDataset.write(
        out,
        {"items": items, "queries": queries_t, "pairs": pairs},
        name=name,
        label_scheme="wands",
        source={
            "kind": "wands",
            "params": {
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "seed": seed,
                "on_empty": on_empty,
            },
            "inputs": inputs,
        },
        stats=manifest_stats(stats, pairs, summary, BUCKET_SOURCE_PROXY),
        overwrite=overwrite,
    )


class _WandsFiles(NamedTuple):
    products: Path
    queries: Path
    labels: Path


@dataclass
class _WandsTables:
    """The three files read and checked: products and queries with their id columns, and the
    label rows as pairs (pair_id, query_id, item_id, label)."""

    products: pa.Table
    pid: pa.ChunkedArray
    queries: pa.Table
    qid: pa.ChunkedArray
    pairs: pa.Table


def _read(paths: _WandsFiles, stats: dict[str, int]) -> _WandsTables:
    """Read the three files, check their columns, ids and references."""
    p_path, q_path, l_path = paths
    products = require_columns(
        read_delimited(p_path, "\t"), p_path, PRODUCT_COLUMNS, PRODUCT_ALIASES
    )
    queries = require_columns(read_delimited(q_path, "\t"), q_path, QUERY_COLUMNS)
    labels = require_columns(read_delimited(l_path, "\t"), l_path, LABEL_COLUMNS)
    stats["products_read"] = products.num_rows
    stats["queries_read"] = queries.num_rows
    stats["label_rows_read"] = labels.num_rows

    pid = string_ids(products, "product_id", p_path)
    check_unique(pid, p_path, "product_id")
    qid = string_ids(queries, "query_id", q_path)
    check_unique(qid, q_path, "query_id")
    row_id = int_column(labels, "id", l_path)
    check_unique(row_id, l_path, "id")
    l_qid = string_ids(labels, "query_id", l_path)
    l_pid = string_ids(labels, "product_id", l_path)
    label = map_labels(labels.column("label"), WANDS, l_path, "label")
    pairs = pa.table({"pair_id": row_id, "query_id": l_qid, "item_id": l_pid, "label": label})

    bad_q, missing_q = missing_refs(l_qid, qid)
    if missing_q:
        raise DataError(
            f"{q_path}: column 'query_id' lacks {len(missing_q)} query id(s) used by "
            f"{int(bad_q.sum())} row(s) of {l_path.name}, e.g. {examples(missing_q)}"
        )
    bad_p, missing_p = missing_refs(l_pid, pid)
    if missing_p:
        raise DataError(
            f"{p_path}: column 'product_id' lacks {len(missing_p)} product id(s) used by "
            f"{int(bad_p.sum())} row(s) of {l_path.name}, e.g. {examples(missing_p)}"
        )
    return _WandsTables(products, pid, queries, qid, pairs)


def _drop_empty_texts(
    read: _WandsTables, paths: _WandsFiles, on_empty: str, stats: dict[str, int]
) -> _WandsTables:
    """Products without a name and queries without text: an error, or dropped (``on_empty``
    drop) with their label rows."""
    products, pid, queries, qid, pairs = (
        read.products,
        read.pid,
        read.queries,
        read.qid,
        read.pairs,
    )
    empty_title = blank_mask(products.column("product_name"), paths.products, "product_name")
    empty_query = blank_mask(queries.column("query"), paths.queries, "query")
    for mask, path, col, ids, what in (
        (empty_title, paths.products, "product_name", pid, "product"),
        (empty_query, paths.queries, "query", qid, "query"),
    ):
        if mask.any() and on_empty == "error":
            bad = pc.filter(ids, pa.array(mask)).to_pylist()
            raise DataError(
                f"{path}: column {col!r} is empty for {len(bad)} {what}(s), e.g. "
                f"{examples(bad)}; pass --on-empty drop (on_empty='drop') to drop them "
                "with their label rows"
            )
    n_rows = pairs.num_rows
    dropped_items = pc.filter(pid, pa.array(empty_title))
    dropped_queries = pc.filter(qid, pa.array(empty_query))
    pairs = pairs.filter(
        pc.invert(
            pc.or_(
                pc.is_in(pairs.column("item_id"), value_set=dropped_items),
                pc.is_in(pairs.column("query_id"), value_set=dropped_queries),
            )
        )
    )
    stats["empty_title_items_dropped"] = int(empty_title.sum())
    stats["empty_query_queries_dropped"] = int(empty_query.sum())
    stats["empty_text_pairs_dropped"] = n_rows - pairs.num_rows
    return _WandsTables(
        products.filter(pa.array(~empty_title)),
        pc.filter(pid, pa.array(~empty_title)),
        queries.filter(pa.array(~empty_query)),
        pc.filter(qid, pa.array(~empty_query)),
        pairs,
    )


def _split_pairs(
    pairs: pa.Table, val_fraction: float, test_fraction: float, seed: int, stats: dict[str, int]
) -> tuple[pa.Table, list[str]]:
    """De-duplicated pairs with their split (queries drawn with the seed), and the queries that
    have pairs."""
    pairs, dedup = dedup_pairs(pairs)
    stats.update(dedup)
    pair_q = pc.unique(pairs.column("query_id")).to_pylist()
    assign = split_queries(
        sorted(pair_q),
        {
            "train": 1.0 - val_fraction - test_fraction,
            "val": val_fraction,
            "test": test_fraction,
        },
        seed,
    )
    q_list = pa.array(list(assign), pa.string())
    s_list = pa.array(list(assign.values()), pa.string())
    split = pc.take(s_list, pc.index_in(pairs.column("query_id"), value_set=q_list))
    pairs = sort_table(pairs.append_column("split", split), "pair_id")
    stats["pairs_kept"] = pairs.num_rows
    return pairs, pair_q


def _queries_table(
    read: _WandsTables,
    pairs: pa.Table,
    pair_q: list[str],
    q_path: Path,
    stats: dict[str, int],
) -> pa.Table:
    """The queries that have pairs, with their popularity bucket and class."""
    queries, qid = read.queries, read.qid
    used = np.asarray(
        pc.is_in(qid, value_set=pa.array(pair_q, pa.string())).to_numpy(zero_copy_only=False)
    )
    stats["queries_without_labels_dropped"] = int((~used).sum())
    queries = queries.filter(pa.array(used))
    qid = pc.filter(qid, pa.array(used))
    freq, buckets = bucket_queries(qid.to_pylist(), frequency_proxy(pairs))
    q_cols = {
        "query_id": qid,
        "text": queries.column("query"),
        "bucket": pa.array(buckets, pa.string()),
        "frequency": pa.array(freq, pa.int64()),
    }
    if "query_class" in queries.column_names:
        q_cols["query_class"] = blank_to_null(queries.column("query_class"), q_path, "query_class")
    return sort_table(pa.table(q_cols), "query_id")


def _items_table(read: _WandsTables, p_path: Path, stats: dict[str, int]) -> pa.Table:
    """The products as items: title, description, top category, type, parsed attributes,
    hierarchy and ratings."""
    products, pid = read.products, read.pid
    attrs, n_malformed, n_products_malformed, n_repeated = [], 0, 0, 0
    for raw in products.column("product_features").to_pylist():
        obj, malformed, repeated = parse_features(raw)
        attrs.append(obj)
        n_malformed += malformed
        n_products_malformed += bool(malformed)
        n_repeated += repeated
    stats["features_malformed_entries"] = n_malformed
    stats["features_products_with_malformed"] = n_products_malformed
    stats["features_repeated_keys"] = n_repeated
    hierarchy = blank_to_null(products.column("category_hierarchy"), p_path, "category_hierarchy")
    i_cols = {
        "item_id": pid,
        "title": products.column("product_name"),
        "description": blank_to_null(
            products.column("product_description"), p_path, "product_description"
        ),
        "category": pa.array([_top_category(h) for h in hierarchy.to_pylist()], pa.string()),
        "product_type": blank_to_null(products.column("product_class"), p_path, "product_class"),
        "attributes": pa.array(attrs, pa.string()),
        "category_hierarchy": hierarchy,
        "features_raw": blank_to_null(
            products.column("product_features"), p_path, "product_features"
        ),
    }
    for col in RATING_COLUMNS:
        if col in products.column_names:
            i_cols[col] = (
                float_column(products, col, p_path)
                if col == "average_rating"
                else int_column(products, col, p_path, nullable=True, minimum=0)
            )
    return sort_table(pa.table(i_cols), "item_id")
