"""Your own tables -> canonical dataset.

Pairs, items and optional queries and behaviour files in CSV, TSV, JSON Lines or Parquet
(chosen by extension). The accepted columns are documented in ``docs/data_formats.md``;
in short:

- pairs: ``query_id``, ``item_id``, ``label`` (empty = unlabelled), optional ``pair_id``
  (else :func:`relkd.data.ids.stable_pair_id`), ``split`` (else made by query with the seed),
  ``query`` (query text, when there is no queries file), ``aspect_*``, ``clean_label``;
- items: ``item_id``, ``title``, optional ``description``, ``brand``, ``color``, ``category``,
  ``product_type``, ``attributes`` (JSON object); other columns are kept as they are;
- queries: ``query_id``, ``text`` (or ``query``), optional ``frequency`` (buckets by it) or
  ``bucket``; other columns are kept;
- behavior: ``query_id``, ``item_id``, ``impressions``, ``clicks``, optional ``user_id``,
  ``timestamp`` (unix seconds or ISO 8601), ``position`` (1-based).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.ids import stable_pair_id
from relkd.data.label_scheme import LabelScheme, get_label_scheme
from relkd.data.loaders.column_checks import (
    blank_mask,
    blank_to_null,
    cast_failures,
    check_unique,
    int_column,
    is_text_type,
    missing_refs,
    require_columns,
    string_ids,
    text_column,
)
from relkd.data.loaders.label_mapping import manifest_stats, map_labels
from relkd.data.loaders.loader_options import (
    check_fractions,
    check_on_empty,
    examples,
    guard_out,
    input_hashes,
)
from relkd.data.loaders.pair_tables import (
    BUCKET_SOURCE_PROXY,
    bucket_queries,
    dedup_pairs,
    frequency_proxy,
    sort_table,
    split_summary,
)
from relkd.data.loaders.table_files import read_table_file
from relkd.data.schema import ASPECTS, BUCKETS, SPLITS
from relkd.data.splits import split_queries
from relkd.errors import DataError

ITEM_TEXT_COLUMNS = ("description", "brand", "color", "category", "product_type")
PAIR_EXTRA_KNOWN = (*(f"aspect_{a}" for a in ASPECTS), "clean_label")
SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}


def _label_votes(table: pa.Table, path: Path, scheme: Any, pair_id: pa.Array) -> pa.Array:
    """``label_votes`` as JSON-object strings ({label: count}); objects in JSON Lines or Parquet
    structs are serialised. Malformed votes name the file, the column and the pair."""
    from relkd.data.label_votes import votes_to_distribution

    col = table.column("label_votes")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        values = blank_to_null(col, path, "label_votes").to_pylist()
    else:
        # a struct column has every row's keys; keys a row did not give are null there
        values = [
            None if v is None else json.dumps({k: c for k, c in dict(v).items() if c is not None})
            for v in col.to_pylist()
        ]
    votes_to_distribution(values, scheme, path, pair_id.to_pylist())
    return pa.array(values, pa.string())


def _attributes(table: pa.Table, path: Path) -> pa.Array:
    """``attributes`` as JSON-object strings: nested values (JSON Lines objects, Parquet
    structs/maps) are serialised; strings must already be JSON objects."""
    col = table.column("attributes")
    is_map = pa.types.is_map(col.type)
    values = col.to_pylist()
    out: list[str | None] = []
    bad: list[int] = []
    unserialisable: list[int] = []
    for row, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            out.append(None)
            continue
        if is_map and isinstance(value, list):
            value = dict(value)  # a Parquet map column: a list of (key, value) pairs
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                bad.append(row + 1)
                continue
        if not isinstance(value, dict):
            bad.append(row + 1)
            continue
        try:
            out.append(
                json.dumps(
                    {k: v for k, v in value.items() if v is not None},
                    ensure_ascii=False,
                    sort_keys=True,
                    allow_nan=False,
                )
                if value
                else None
            )
        except (TypeError, ValueError):
            unserialisable.append(row + 1)
    if bad:
        raise DataError(
            f"{path}: column 'attributes' must hold JSON objects (e.g. "
            f'{{"material": "oak"}}); {len(bad)} row(s) do not (data rows {examples(bad)})'
        )
    if unserialisable:
        raise DataError(
            f"{path}: column 'attributes' holds values that are not JSON (such as bytes, dates, "
            f"NaN or non-text keys) in {len(unserialisable)} row(s) (data rows "
            f"{examples(unserialisable)}); use strings, numbers, booleans, lists and objects"
        )
    return pa.array(out, pa.string())


def _split_column(pairs: pa.Table, path: Path) -> pa.Array:
    raw = text_column(pairs.column("split"), path, "split")
    blank = blank_mask(raw, path, "split")
    if blank.any():
        rows = np.nonzero(blank)[0] + 1
        raise DataError(
            f"{path}: column 'split' is empty in {len(rows)} row(s) (data rows "
            f"{examples(rows.tolist())}); give every row a split or drop the column"
        )
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(raw))
    enc = pc.dictionary_encode(norm.combine_chunks())
    mapped, bad = [], {}
    counts = {r["values"]: r["counts"] for r in pc.value_counts(norm).to_pylist()}
    for value in enc.dictionary.to_pylist():
        value = SPLIT_ALIASES.get(value, value)
        mapped.append(value)
        if value not in SPLITS:
            bad[value] = counts.get(value, 0)
    if bad:
        raise DataError(
            f"{path}: column 'split' has unknown value(s) {bad}; expected one of "
            f"{list(SPLITS)} (aliases {SPLIT_ALIASES})"
        )
    split = pc.take(pa.array(mapped, pa.string()), enc.indices)
    per_query = (
        pa.table({"query_id": pairs.column("query_id"), "split": split})
        .group_by("query_id")
        .aggregate([("split", "count_distinct")])
    )
    spanning = per_query.filter(pc.greater(per_query.column("split_count_distinct"), 1))
    if spanning.num_rows:
        ids = sorted(spanning.column("query_id").to_pylist())
        raise DataError(
            f"{path}: column 'split' puts {len(ids)} query_id(s) in more than one split, e.g. "
            f"{examples(ids)}; splits must be made by query"
        )
    return split


# ISO 8601 forms the Arrow string -> timestamp cast reads: date, optional time (hours, minutes,
# seconds, up to 9 fraction digits) and an optional UTC offset (Z, +hh:mm, +hhmm or +hh)
ISO_TIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?$"
)
ISO_OFFSET = r"[T ][0-9:.]+(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
UNIX_SECONDS = r"^-?[0-9]+$"
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _floor_seconds(counts: pa.ChunkedArray | pa.Array, per_second: int) -> pa.Array:
    """int64 counts of ``1 / per_second`` s since the epoch -> whole seconds, rounded down."""
    vals = pc.fill_null(counts.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    null = np.asarray(pc.is_null(counts).to_numpy(zero_copy_only=False), dtype=bool)
    return pa.array(np.floor_divide(vals, per_second), pa.int64(), mask=null)


def _timestamp(table: pa.Table, path: Path) -> pa.Array:
    """``timestamp`` as int64 unix seconds, sub-second parts floored: integers are taken as they
    are; text may be integers or ISO 8601 times (with ``Z`` or a ``+hh:mm`` offset: converted to
    UTC; without: taken as UTC); Arrow timestamps (zoned: UTC; naive: taken as UTC) and dates
    are converted."""
    col = table.column("timestamp")
    try:
        if pa.types.is_timestamp(col.type):
            return _floor_seconds(col.cast(pa.int64()), PER_SECOND[col.type.unit])
        if pa.types.is_date32(col.type):
            return pc.multiply(col.cast(pa.int32()).cast(pa.int64()), 86_400)
        if pa.types.is_date64(col.type):
            return _floor_seconds(col.cast(pa.int64()), 1_000)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"{path}: column 'timestamp' of type {col.type} cannot be read as unix seconds ({exc})"
        ) from None
    if not is_text_type(col.type):
        return int_column(table, "timestamp", path, nullable=True)
    col = pc.utf8_trim_whitespace(blank_to_null(col, path, "timestamp"))
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    numeric = pc.fill_null(pc.match_substring_regex(col, UNIX_SECONDS), False)
    offset = pc.and_(
        pc.invert(numeric), pc.fill_null(pc.match_substring_regex(col, ISO_OFFSET), False)
    )
    naive = pc.invert(pc.or_(numeric, offset))
    null = pa.scalar(None, pa.string())
    parts = (
        (numeric, pa.int64(), UNIX_SECONDS, 1),
        (offset, pa.timestamp("ns", "UTC"), ISO_TIME, PER_SECOND["ns"]),
        (naive, pa.timestamp("ns"), ISO_TIME, PER_SECOND["ns"]),
    )
    seconds = []
    bad = np.zeros(len(col), dtype=bool)
    for mask, typ, shape, per_second in parts:
        values = pc.if_else(mask, col, null)
        try:
            seconds.append(_floor_seconds(values.cast(typ), per_second))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad |= cast_failures(values, typ, shape)
    if bad.any():
        values = pc.filter(col, pa.array(bad)).to_pylist()
        raise DataError(
            f"{path}: column 'timestamp' must hold unix seconds (integers) or ISO 8601 times "
            f"(e.g. 2024-01-01T12:00:00Z; between 1677 and 2262 when given as text); "
            f"{len(values)} value(s) are neither, e.g. {examples(values)}"
        )
    return pc.coalesce(*seconds)


def _queries_from_file(
    path: Path, on_empty: str, stats: dict[str, Any]
) -> tuple[pa.Table, set[str]]:
    table = require_columns(read_table_file(path), path, ("query_id", "text"), {"text": ("query",)})
    qid = string_ids(table, "query_id", path)
    check_unique(qid, path, "query_id")
    table = table.set_column(table.schema.get_field_index("query_id"), "query_id", qid)
    text = text_column(table.column("text"), path, "text")
    table = table.set_column(table.schema.get_field_index("text"), "text", text)
    empty = blank_mask(text, path, "text")
    if empty.any() and on_empty == "error":
        ids = pc.filter(qid, pa.array(empty)).to_pylist()
        raise DataError(
            f"{path}: column 'text' is empty for {len(ids)} query(s), e.g. {examples(ids)}; "
            "pass --on-empty drop (on_empty='drop') to drop them with their pairs"
        )
    stats["empty_query_queries_dropped"] = int(empty.sum())
    return table.filter(pa.array(~empty)), set(pc.filter(qid, pa.array(empty)).to_pylist())


def _queries_from_pairs(
    pairs: pa.Table, path: Path, on_empty: str, stats: dict[str, Any]
) -> tuple[pa.Table, set[str]]:
    text = blank_to_null(pairs.column("query"), path, "query")
    qt = pa.table({"query_id": pairs.column("query_id"), "text": text})
    per_q = qt.group_by("query_id").aggregate([("text", "count_distinct")])
    multi = per_q.filter(pc.greater(per_q.column("text_count_distinct"), 1))
    if multi.num_rows:
        ids = sorted(multi.column("query_id").to_pylist())
        raise DataError(
            f"{path}: column 'query' has more than one text for {len(ids)} query_id(s), e.g. "
            f"{examples(ids)}"
        )
    texts = (
        qt.filter(pc.is_valid(qt.column("text")))
        .group_by("query_id", use_threads=False)
        .aggregate([("text", "first")])
    )
    texts = texts.rename_columns(["query_id", "text"])
    all_q = pc.unique(pairs.column("query_id"))
    _, empty_ids = missing_refs(all_q, texts.column("query_id"))
    if empty_ids and on_empty == "error":
        raise DataError(
            f"{path}: column 'query' is empty for {len(empty_ids)} query_id(s), e.g. "
            f"{examples(empty_ids)}; pass --on-empty drop (on_empty='drop') to drop their pairs"
        )
    stats["empty_query_queries_dropped"] = len(empty_ids)
    return texts, set(empty_ids)


def _behavior(path: Path, stats: dict[str, Any]) -> pa.Table:
    table = require_columns(
        read_table_file(path), path, ("query_id", "item_id", "impressions", "clicks")
    )
    cols: dict[str, Any] = {
        "query_id": string_ids(table, "query_id", path),
        "item_id": string_ids(table, "item_id", path),
        "impressions": int_column(table, "impressions", path, minimum=0),
        "clicks": int_column(table, "clicks", path, minimum=0),
    }
    over = pc.greater(cols["clicks"], cols["impressions"])
    n_over = pc.sum(over).as_py() or 0
    if n_over:
        rows = (np.nonzero(np.asarray(over.to_numpy(zero_copy_only=False)))[0] + 1).tolist()
        raise DataError(
            f"{path}: column 'clicks' exceeds 'impressions' in {n_over} row(s) (data rows "
            f"{examples(rows)})"
        )
    if "user_id" in table.column_names:
        cols["user_id"] = blank_to_null(table.column("user_id"), path, "user_id")
    if "timestamp" in table.column_names:
        cols["timestamp"] = _timestamp(table, path)
    if "position" in table.column_names:
        cols["position"] = int_column(table, "position", path, nullable=True, minimum=1)
    ignored = [c for c in table.column_names if c not in cols]
    if ignored:
        stats["behavior_columns_ignored"] = ignored
    stats["behavior_rows_read"] = table.num_rows
    return pa.table(cols)


def _popularity_columns(queries: pa.Table, path: Path | None, stats: dict[str, Any]) -> pa.Table:
    """``bucket`` / ``frequency`` must be filled for every query or empty for all: an all-empty
    column counts as absent (listed in ``queries_empty_columns_ignored``); a partly empty one is
    a DataError, since filling the gaps would invent popularity. ``frequency`` may be partly
    empty when ``bucket`` is given: it is then kept as it is (null where empty), not used."""
    source = {
        "bucket": "the buckets are taken from it",
        "frequency": "the buckets are computed from it",
    }
    fallback = {
        "bucket": "buckets then come from 'frequency' or, without it, the judged-pairs proxy",
        "frequency": "buckets then come from the judged-pairs proxy",
    }
    empty_cols = []
    for col in ("bucket", "frequency"):
        if col not in queries.column_names:
            continue
        arr = queries.column(col)
        blank = blank_mask(arr, path, col)
        if pa.types.is_floating(arr.type):  # NaN: how pandas writes a missing number
            blank |= np.asarray(pc.fill_null(pc.is_nan(arr), True), dtype=bool)
        if blank.all():
            queries = queries.drop_columns([col])
            empty_cols.append(col)
        elif blank.any() and (col == "bucket" or "bucket" not in queries.column_names):
            ids = pc.filter(queries.column("query_id"), pa.array(blank)).to_pylist()
            raise DataError(
                f"{path}: column {col!r} is empty for {len(ids)} of {queries.num_rows} "
                f"query(s), e.g. {examples(ids)}; {source[col]}, so fill it for every query "
                f"or leave it empty for all ({fallback[col]})"
            )
    if empty_cols:
        stats["queries_empty_columns_ignored"] = empty_cols
    return queries


def import_table(
    pairs: str | Path,
    items: str | Path,
    out: str | Path,
    *,
    scheme: str,
    queries: str | Path | None = None,
    behavior: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    on_empty: str = "error",
    overwrite: bool = False,
    name: str | None = None,
) -> CanonicalDataset:
    """Import your own pairs/items (and optional queries/behaviour) files into ``out``.

    Args:
        scheme: label scheme name (``esci`` or ``wands``); labels may be names or aliases, in
            any letter case; an empty label means unlabelled.
        val_fraction, test_fraction: query shares when the pairs have no ``split`` column.
        on_empty: ``error`` (default) raises on an empty item title or query text; ``drop``
            drops those items/queries with their pairs and behaviour rows, counting them.
    """
    label_scheme = get_label_scheme(scheme)
    check_on_empty(on_empty)
    check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
    pairs_path, items_path = Path(pairs), Path(items)
    queries_path = Path(queries) if queries is not None else None
    behavior_path = Path(behavior) if behavior is not None else None
    in_paths = [p for p in (pairs_path, items_path, queries_path, behavior_path) if p is not None]
    for p in in_paths:
        if not p.is_file():
            raise DataError(f"{p}: file not found")
    guard_out(out, in_paths)
    inputs = input_hashes(in_paths)
    stats: dict[str, Any] = {}

    items_t, dropped_i = _items_table(items_path, on_empty, stats)
    pr, pairs_t = _pairs_table(pairs_path, label_scheme, stats)
    queries_t, dropped_q, q_ref_path = _queries_table(queries_path, pr, pairs_path, on_empty, stats)
    refs = _References(queries_t, dropped_q, q_ref_path, items_t, dropped_i, items_path)
    pairs_t = _drop_unreferenced(pairs_t, refs, pairs_path, stats)
    pairs_t = _assign_splits(pairs_t, pairs_path, val_fraction, test_fraction, seed, stats)
    queries_t, bucket_source = _bucketed_queries(queries_t, pairs_t, queries_path, stats)
    items_t = sort_table(items_t, "item_id")
    stats["queries"] = queries_t.num_rows
    stats["items"] = items_t.num_rows

    tables = {"items": items_t, "queries": queries_t, "pairs": pairs_t}
    if behavior_path is not None:
        tables["behavior"] = _behavior_table(behavior_path, refs._replace(queries=queries_t), stats)

    summary = split_summary(pairs_t)
    return CanonicalDataset.write(
        out,
        tables,
        name=name or Path(out).name,
        label_scheme=label_scheme.name,
        source={
            "kind": "table",
            "params": {
                "scheme": label_scheme.name,
                "pairs": str(pairs_path),
                "items": str(items_path),
                "queries": str(queries_path) if queries_path else None,
                "behavior": str(behavior_path) if behavior_path else None,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "seed": seed,
                "on_empty": on_empty,
            },
            "inputs": inputs,
        },
        stats=manifest_stats(stats, pairs_t, summary, bucket_source),
        overwrite=overwrite,
    )


def _items_table(items_path: Path, on_empty: str, stats: dict[str, Any]) -> tuple[pa.Table, set]:
    """(the items file as items, the ids of items dropped for an empty title)."""
    it = require_columns(read_table_file(items_path), items_path, ("item_id", "title"))
    stats["items_read"] = it.num_rows
    item_id = string_ids(it, "item_id", items_path)
    check_unique(item_id, items_path, "item_id")
    title = text_column(it.column("title"), items_path, "title")
    i_cols: dict[str, Any] = {"item_id": item_id, "title": title}
    for col in ITEM_TEXT_COLUMNS:
        if col in it.column_names:
            i_cols[col] = blank_to_null(it.column(col), items_path, col)
    if "attributes" in it.column_names:
        i_cols["attributes"] = _attributes(it, items_path)
    for col in it.column_names:
        i_cols.setdefault(col, it.column(col))
    items_t = pa.table(i_cols)
    empty_title = blank_mask(title, items_path, "title")
    if empty_title.any() and on_empty == "error":
        ids = pc.filter(item_id, pa.array(empty_title)).to_pylist()
        raise DataError(
            f"{items_path}: column 'title' is empty for {len(ids)} item(s), e.g. "
            f"{examples(ids)}; pass --on-empty drop (on_empty='drop') to drop them with their pairs"
        )
    stats["empty_title_items_dropped"] = int(empty_title.sum())
    items_t = items_t.filter(pa.array(~empty_title))
    return items_t, set(pc.filter(item_id, pa.array(empty_title)).to_pylist())


def _pairs_table(
    pairs_path: Path, label_scheme: LabelScheme, stats: dict[str, Any]
) -> tuple[pa.Table, pa.Table]:
    """(the pairs file as read, with string query ids; the pairs table: pair_id, query_id,
    item_id, label, and split, known extras and label votes where the file has them)."""
    pr = require_columns(read_table_file(pairs_path), pairs_path, ("query_id", "item_id", "label"))
    stats["pair_rows_read"] = pr.num_rows
    p_qid = string_ids(pr, "query_id", pairs_path)
    p_iid = string_ids(pr, "item_id", pairs_path)
    labels = map_labels(
        pr.column("label"),
        label_scheme,
        pairs_path,
        "label",
        allow_unlabelled=True,
        case_insensitive=True,
    )
    if "pair_id" in pr.column_names:
        pair_id = int_column(pr, "pair_id", pairs_path, minimum=0)
        check_unique(pair_id, pairs_path, "pair_id")
        stats["pair_id_source"] = "pairs.pair_id"
    else:
        pair_id = pa.array(
            [
                stable_pair_id(q, i)
                for q, i in zip(p_qid.to_pylist(), p_iid.to_pylist(), strict=True)
            ],
            pa.int64(),
        )
        stats["pair_id_source"] = "stable_pair_id(query_id, item_id)"
    p_cols: dict[str, Any] = {
        "pair_id": pair_id,
        "query_id": p_qid,
        "item_id": p_iid,
        "label": labels,
    }
    pr = pr.set_column(pr.schema.get_field_index("query_id"), "query_id", p_qid)
    if "split" in pr.column_names:
        p_cols["split"] = _split_column(pr, pairs_path)
    for col in PAIR_EXTRA_KNOWN:
        if col in pr.column_names:
            p_cols[col] = blank_to_null(pr.column(col), pairs_path, col)
    if "label_votes" in pr.column_names:
        p_cols["label_votes"] = _label_votes(pr, pairs_path, label_scheme, pair_id)
    ignored = [c for c in pr.column_names if c not in p_cols and c != "query"]
    if ignored:
        stats["pairs_columns_ignored"] = ignored
    pairs_t = pa.table(p_cols)
    return pr, pairs_t


def _queries_table(
    queries_path: Path | None, pr: pa.Table, pairs_path: Path, on_empty: str, stats: dict[str, Any]
) -> tuple[pa.Table, set, Path]:
    """(the queries, from the queries file or the pairs' query column; the ids dropped for an
    empty text; the file their ids are checked against)."""
    if queries_path is not None:
        queries_t, dropped_q = _queries_from_file(queries_path, on_empty, stats)
        q_ref_path = queries_path
        if "query" in pr.column_names:
            stats["pairs_query_column_ignored"] = True
    elif "query" in pr.column_names:
        queries_t, dropped_q = _queries_from_pairs(pr, pairs_path, on_empty, stats)
        q_ref_path = pairs_path
    else:
        raise DataError(
            f"{pairs_path}: no query text: pass a queries file (--queries) or add a 'query' "
            "column to the pairs"
        )
    return queries_t, dropped_q, q_ref_path


class _References(NamedTuple):
    """What pair and behaviour rows must refer to, and the ids dropped for empty texts."""

    queries: pa.Table
    dropped_q: set
    q_ref_path: Path
    items: pa.Table
    dropped_i: set
    items_path: Path


def _drop_unreferenced(
    pairs_t: pa.Table, refs: _References, pairs_path: Path, stats: dict[str, Any]
) -> pa.Table:
    """Pairs whose query or item was dropped for an empty text go with it; an id that is
    nowhere is an error naming the file."""
    queries_t, dropped_q, q_ref_path, items_t, dropped_i, items_path = refs
    n_pairs = pairs_t.num_rows
    drop = np.zeros(n_pairs, dtype=bool)
    for col, known, dropped, ref_path in (
        ("query_id", queries_t.column("query_id"), dropped_q, q_ref_path),
        ("item_id", items_t.column("item_id"), dropped_i, items_path),
    ):
        bad, missing = missing_refs(pairs_t.column(col), known)
        unknown = [v for v in missing if v not in dropped]
        if unknown:
            col_name = "query" if ref_path == pairs_path else col
            raise DataError(
                f"{ref_path}: column {col_name!r} lacks {len(unknown)} {col}(s) used by "
                f"{pairs_path.name}, e.g. {examples(unknown)}"
            )
        drop |= bad
    pairs_t = pairs_t.filter(pa.array(~drop))
    stats["empty_text_pairs_dropped"] = int(drop.sum())
    return pairs_t


def _assign_splits(
    pairs_t: pa.Table,
    pairs_path: Path,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    stats: dict[str, Any],
) -> pa.Table:
    """De-duplicated pairs with a split: the file's own, or queries drawn with the seed
    (unlabelled-only queries go to train); unlabelled pairs outside train are dropped."""
    pairs_t, dedup = dedup_pairs(pairs_t)
    stats.update(dedup)
    if pairs_t.num_rows == 0:
        raise DataError(f"{pairs_path}: no pairs left to import")

    if "split" not in pairs_t.column_names:
        # queries with labelled pairs are split with the seed; unlabelled-only queries are the
        # pool for teacher annotation and go to train
        labelled_q = pc.unique(
            pc.filter(pairs_t.column("query_id"), pc.is_valid(pairs_t.column("label")))
        )
        assign = split_queries(
            sorted(labelled_q.to_pylist()),
            {
                "train": 1.0 - val_fraction - test_fraction,
                "val": val_fraction,
                "test": test_fraction,
            },
            seed,
        )
        split = pc.fill_null(
            pc.take(
                pa.array(list(assign.values()), pa.string()),
                pc.index_in(
                    pairs_t.column("query_id"), value_set=pa.array(list(assign), pa.string())
                ),
            ),
            "train",
        )
        pairs_t = pairs_t.add_column(4, "split", split)  # after pair_id, query_id, item_id, label
        stats["split_source"] = "split_queries(seed)"
    else:
        stats["split_source"] = "pairs.split"
    # only train may hold unlabelled pairs (val/test are for evaluation)
    unlabelled_eval = pc.and_(
        pc.is_null(pairs_t.column("label")), pc.not_equal(pairs_t.column("split"), "train")
    )
    n_unlabelled_eval = pc.sum(unlabelled_eval).as_py() or 0
    pairs_t = pairs_t.filter(pc.invert(unlabelled_eval))
    stats["unlabelled_pairs_dropped_outside_train"] = n_unlabelled_eval
    if pairs_t.num_rows == 0:
        raise DataError(f"{pairs_path}: no pairs left to import")
    pairs_t = sort_table(pairs_t, "pair_id")
    stats["pairs_kept"] = pairs_t.num_rows
    return pairs_t


def _bucketed_queries(
    queries_t: pa.Table, pairs_t: pa.Table, queries_path: Path | None, stats: dict[str, Any]
) -> tuple[pa.Table, str]:
    """(the queries with a popularity bucket and frequency, from the file's bucket or
    frequency column or else from the pairs; where the buckets came from)."""
    bucket_source = BUCKET_SOURCE_PROXY
    queries_t = _popularity_columns(queries_t, queries_path, stats)
    q_ids = queries_t.column("query_id").to_pylist()
    if "bucket" in queries_t.column_names:
        bucket = text_column(queries_t.column("bucket"), queries_path, "bucket")
        ok = pc.fill_null(pc.is_in(bucket, value_set=pa.array(BUCKETS)), False)
        if not pc.all(ok).as_py():
            bad = sorted({str(v) for v in pc.filter(bucket, pc.invert(ok)).to_pylist()})
            raise DataError(
                f"{queries_path}: column 'bucket' has value(s) {bad}; expected {list(BUCKETS)}"
            )
        queries_t = queries_t.set_column(
            queries_t.schema.get_field_index("bucket"), "bucket", bucket
        )
        if "frequency" in queries_t.column_names:
            freq = int_column(queries_t, "frequency", queries_path, nullable=True, minimum=0)
            queries_t = queries_t.set_column(
                queries_t.schema.get_field_index("frequency"), "frequency", freq
            )
        bucket_source = "queries.bucket"
    elif "frequency" in queries_t.column_names:
        freq = int_column(queries_t, "frequency", queries_path, minimum=0)
        freq_list, buckets = bucket_queries(q_ids, dict(zip(q_ids, freq.to_pylist(), strict=True)))
        queries_t = queries_t.set_column(
            queries_t.schema.get_field_index("frequency"),
            "frequency",
            pa.array(freq_list, pa.int64()),
        ).append_column("bucket", pa.array(buckets, pa.string()))
        bucket_source = "queries.frequency"
    else:
        freq_list, buckets = bucket_queries(q_ids, frequency_proxy(pairs_t))
        queries_t = queries_t.append_column("bucket", pa.array(buckets, pa.string())).append_column(
            "frequency", pa.array(freq_list, pa.int64())
        )
    used_q = pc.unique(pairs_t.column("query_id"))
    stats["queries_without_pairs"] = int(
        queries_t.num_rows
        - (pc.sum(pc.is_in(queries_t.column("query_id"), value_set=used_q)).as_py() or 0)
    )
    return sort_table(queries_t, "query_id"), bucket_source


def _behavior_table(behavior_path: Path, refs: _References, stats: dict[str, Any]) -> pa.Table:
    """The behaviour rows whose query and item are kept (rows of dropped ones go with them)."""
    queries_t, dropped_q, q_ref_path, items_t, dropped_i, items_path = refs
    beh = _behavior(behavior_path, stats)
    n_beh = beh.num_rows
    for col, known, dropped, ref_path in (
        ("query_id", queries_t.column("query_id"), dropped_q, q_ref_path),
        ("item_id", items_t.column("item_id"), dropped_i, items_path),
    ):
        bad, missing = missing_refs(beh.column(col), known)
        unknown = [v for v in missing if v not in dropped]
        if unknown:
            raise DataError(
                f"{behavior_path}: column {col!r} has {len(unknown)} id(s) not in "
                f"{ref_path.name}, e.g. {examples(unknown)}"
            )
        beh = beh.filter(pa.array(~bad))
    stats["behavior_rows_dropped_empty_text"] = n_beh - beh.num_rows
    stats["behavior_rows_kept"] = beh.num_rows
    return beh
