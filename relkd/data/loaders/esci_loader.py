"""Amazon Shopping Queries (ESCI) -> canonical dataset.

Reads the two upstream files in ``src``:

- ``shopping_queries_dataset_examples.parquet``: example_id, query, query_id, product_id,
  product_locale, esci_label (E/S/C/I), small_version, large_version, split (train/test);
- ``shopping_queries_dataset_products.parquet``: product_id, product_title,
  product_description, product_bullet_point, product_brand, product_color, product_locale.

Examples join products on (product_locale, product_id). ``pair_id`` is the upstream
``example_id``. With one locale selected ``item_id`` is the upstream ``product_id`` and
``query_id`` the upstream ``query_id``; with ``locale="all"`` both are prefixed with the locale
(``"us:B07..."``, ``"us:123"``) because ASINs recur across marketplaces. Upstream ``test``
stays ``test``; ``val`` is carved out of the upstream ``train`` queries by query with the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import ESCI
from relkd.data.loaders.column_checks import (
    blank_mask,
    blank_to_null,
    check_unique,
    int_column,
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
from relkd.data.loaders.table_files import parquet_columns, read_parquet
from relkd.data.splits import split_queries
from relkd.errors import ConfigError, DataError

EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
EXAMPLE_COLUMNS = (
    "example_id",
    "query",
    "query_id",
    "product_id",
    "product_locale",
    "esci_label",
    "small_version",
    "large_version",
    "split",
)
PRODUCT_COLUMNS = (
    "product_id",
    "product_title",
    "product_description",
    "product_bullet_point",
    "product_brand",
    "product_color",
    "product_locale",
)
LOCALES = ("us", "es", "jp")
VERSIONS = ("small", "large")
# ESCI's one-letter labels -> canonical names (full names are accepted as they are).
ESCI_LABEL_MAP = {
    "E": "Exact",
    "S": "Substitute",
    "C": "Complement",
    "I": "Irrelevant",
    **{name: name for name in ESCI.labels},
}
UPSTREAM_SPLITS = ("train", "test")


def _check_columns(path: Path, required: tuple[str, ...]) -> None:
    present = parquet_columns(path)
    missing = [c for c in required if c not in present]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the file has {present}")


def import_esci(
    src: str | Path,
    out: str | Path,
    *,
    locale: str = "us",
    version: str = "small",
    val_fraction: float = 0.1,
    seed: int = 0,
    on_empty: str = "error",
    overwrite: bool = False,
    name: str | None = None,
) -> CanonicalDataset:
    """Import the upstream ESCI parquet files in ``src`` into a canonical dataset at ``out``.

    Args:
        locale: ``us``, ``es``, ``jp`` or ``all`` (ids then carry a ``"<locale>:"`` prefix).
        version: ``small`` keeps rows with ``small_version == 1``, ``large`` those with
            ``large_version == 1``.
        val_fraction: share of upstream-train *queries* moved to ``val``.
        on_empty: ``error`` (default) raises on an empty product title or query text;
            ``drop`` drops the affected pairs and records the counts in the stats.
    """
    if locale not in (*LOCALES, "all"):
        raise ConfigError(
            f"option locale (--locale) must be one of {[*LOCALES, 'all']}, got {locale!r}"
        )
    if version not in VERSIONS:
        raise ConfigError(
            f"option version (--version) must be one of {list(VERSIONS)}, got {version!r}"
        )
    check_on_empty(on_empty)
    check_fractions(val_fraction=val_fraction)
    src = Path(src)
    hint = "fetch it with `relkd data download esci --to DIR`"
    ex_path = require_file(src / EXAMPLES_FILE, hint)
    pr_path = require_file(src / PRODUCTS_FILE, hint)
    guard_out(out, [ex_path, pr_path])
    inputs = input_hashes([ex_path, pr_path])
    stats: dict[str, int] = {}

    pairs = _read_examples(ex_path, locale, version, on_empty, stats)
    joined, products = _join_products(pairs, pr_path, ex_path, locale, on_empty, stats)
    pairs_t = _split_pairs(joined, val_fraction, seed, stats)
    queries, items = _queries_and_items(joined, products, pairs_t)
    stats["queries"] = queries.num_rows
    stats["items"] = items.num_rows

    summary = split_summary(pairs_t)
    return CanonicalDataset.write(
        out,
        {"items": items, "queries": queries, "pairs": pairs_t},
        name=name or f"esci-{locale}-{version}",
        label_scheme="esci",
        source={
            "kind": "esci",
            "params": {
                "locale": locale,
                "version": version,
                "val_fraction": val_fraction,
                "seed": seed,
                "on_empty": on_empty,
                "id_prefix": "<locale>:" if locale == "all" else None,
            },
            "inputs": inputs,
        },
        stats=manifest_stats(stats, pairs_t, summary, BUCKET_SOURCE_PROXY),
        overwrite=overwrite,
    )


def _read_examples(
    ex_path: Path, locale: str, version: str, on_empty: str, stats: dict[str, int]
) -> pa.Table:
    """The examples of the locale and version as pair rows (pair_id, query_id, item_id, label,
    upstream_split, text, locale, product_id), checked: one text and one split per query, no
    empty query (or dropped, with ``on_empty`` drop)."""
    _check_columns(ex_path, EXAMPLE_COLUMNS)
    ex = read_parquet(ex_path, EXAMPLE_COLUMNS)
    stats["examples_read"] = ex.num_rows
    ex_locale = string_ids(ex, "product_locale", ex_path)
    if locale != "all":
        keep = pc.equal(ex_locale, locale)
        ex = ex.filter(keep)
        stats["examples_dropped_locale"] = stats["examples_read"] - ex.num_rows
    else:
        stats["examples_dropped_locale"] = 0
    version_col = f"{version}_version"
    in_version = pc.fill_null(
        pc.equal(int_column(ex, version_col, ex_path, nullable=True), 1), False
    )
    n_before = ex.num_rows
    ex = ex.filter(in_version)
    stats["examples_dropped_version"] = n_before - ex.num_rows
    if ex.num_rows == 0:
        raise DataError(
            f"{ex_path}: no examples left after locale={locale!r} and {version_col} == 1"
        )

    example_id = int_column(ex, "example_id", ex_path)
    check_unique(example_id, ex_path, "example_id")
    labels = map_labels(
        ex.column("esci_label"), ESCI, ex_path, "esci_label", mapping=ESCI_LABEL_MAP
    )
    upstream_split = text_column(ex.column("split"), ex_path, "split")
    bad_split = ~np.asarray(
        pc.fill_null(pc.is_in(upstream_split, value_set=pa.array(UPSTREAM_SPLITS)), False)
    )
    if bad_split.any():
        vals = sorted({str(v) for v in pc.filter(upstream_split, pa.array(bad_split)).to_pylist()})
        raise DataError(
            f"{ex_path}: column 'split' has {int(bad_split.sum())} row(s) with values "
            f"{examples(vals)}; expected {list(UPSTREAM_SPLITS)}"
        )
    locale_arr = string_ids(ex, "product_locale", ex_path)
    raw_qid = string_ids(ex, "query_id", ex_path)
    raw_pid = string_ids(ex, "product_id", ex_path)
    if locale == "all":
        query_id = pc.binary_join_element_wise(locale_arr, raw_qid, ":")
        item_id = pc.binary_join_element_wise(locale_arr, raw_pid, ":")
    else:
        query_id, item_id = raw_qid, raw_pid
    query_text = text_column(ex.column("query"), ex_path, "query")
    pairs = pa.table(
        {
            "pair_id": example_id,
            "query_id": query_id,
            "item_id": item_id,
            "label": labels,
            "upstream_split": upstream_split,
            "text": query_text,
            "locale": locale_arr,
            "product_id": raw_pid,
        }
    )

    # a query id names one query: one text and one upstream split
    per_query = pairs.group_by("query_id").aggregate(
        [("text", "count_distinct"), ("upstream_split", "count_distinct")]
    )
    for col, what in (("text", "query"), ("upstream_split", "split")):
        multi = per_query.filter(pc.greater(per_query.column(f"{col}_count_distinct"), 1))
        if multi.num_rows:
            ids = sorted(multi.column("query_id").to_pylist())
            raise DataError(
                f"{ex_path}: column {what!r} differs within {multi.num_rows} query_id(s), "
                f"e.g. {examples(ids)}; a query must have one {what}"
            )

    empty_q = blank_mask(pairs.column("text"), ex_path, "query")
    if empty_q.any():
        ids = sorted({*pc.filter(pairs.column("query_id"), pa.array(empty_q)).to_pylist()})
        if on_empty == "error":
            raise DataError(
                f"{ex_path}: column 'query' is empty for {len(ids)} query_id(s) "
                f"({int(empty_q.sum())} example(s)), e.g. {examples(ids)}; "
                "pass --on-empty drop (on_empty='drop') to drop them"
            )
        pairs = pairs.filter(pa.array(~empty_q))
    stats["empty_query_pairs_dropped"] = int(empty_q.sum())
    return pairs


def _join_products(
    pairs: pa.Table, pr_path: Path, ex_path: Path, locale: str, on_empty: str, stats: dict[str, int]
) -> tuple[pa.Table, pa.Table]:
    """(the pairs joined to their product's flags, the products as items): every referenced
    product must exist; empty titles are an error or dropped with their pairs."""
    _check_columns(pr_path, PRODUCT_COLUMNS)
    wanted = pc.unique(pairs.column("product_id"))
    flt = pc.field("product_id").isin(wanted)
    if locale != "all":
        flt = flt & (pc.field("product_locale") == locale)
    try:
        products = pads.dataset(pr_path, format="parquet").to_table(
            columns=list(PRODUCT_COLUMNS), filter=flt
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{pr_path}: cannot read as Parquet ({exc})") from None
    products = require_columns(products, pr_path, PRODUCT_COLUMNS)
    pr_locale = string_ids(products, "product_locale", pr_path)
    pr_pid = string_ids(products, "product_id", pr_path)
    pr_key = pc.binary_join_element_wise(pr_locale, pr_pid, ":")
    check_unique(pr_key, pr_path, "product_id (within product_locale)")
    title = text_column(products.column("product_title"), pr_path, "product_title")
    products = pa.table(
        {
            "item_id": (
                pc.binary_join_element_wise(pr_locale, pr_pid, ":") if locale == "all" else pr_pid
            ),
            "title": title,
            "description": blank_to_null(
                products.column("product_description"), pr_path, "product_description"
            ),
            "brand": blank_to_null(products.column("product_brand"), pr_path, "product_brand"),
            "color": blank_to_null(products.column("product_color"), pr_path, "product_color"),
            "bullet_point": blank_to_null(
                products.column("product_bullet_point"), pr_path, "product_bullet_point"
            ),
            "locale": pr_locale,
            "product_id": pr_pid,
            "_found": pa.array(np.ones(products.num_rows, dtype=bool)),
            "_empty_title": pa.array(blank_mask(title, pr_path, "product_title")),
        }
    )
    # join only the flags; the item columns come from ``products`` (one row per item)
    joined = pairs.join(
        products.select(["locale", "product_id", "_found", "_empty_title"]),
        keys=["locale", "product_id"],
        join_type="left outer",
    )
    found = np.asarray(pc.fill_null(joined.column("_found"), False).to_numpy(zero_copy_only=False))
    if not found.all():
        missing = sorted(
            {
                f"{loc}:{pid}"
                for loc, pid in zip(
                    pc.filter(joined.column("locale"), pa.array(~found)).to_pylist(),
                    pc.filter(joined.column("product_id"), pa.array(~found)).to_pylist(),
                    strict=True,
                )
            }
        )
        raise DataError(
            f"{pr_path}: column 'product_id' lacks {len(missing)} product(s) referenced by "
            f"{int((~found).sum())} example(s) in {ex_path.name}, e.g. {examples(missing)} "
            "(as product_locale:product_id)"
        )
    empty_t = np.asarray(
        pc.fill_null(joined.column("_empty_title"), False).to_numpy(zero_copy_only=False)
    )
    n_empty_items = 0
    if empty_t.any():
        ids = sorted({*pc.filter(joined.column("item_id"), pa.array(empty_t)).to_pylist()})
        n_empty_items = len(ids)
        if on_empty == "error":
            raise DataError(
                f"{pr_path}: column 'product_title' is empty for {len(ids)} product(s) used by "
                f"{int(empty_t.sum())} example(s), e.g. {examples(ids)}; "
                "pass --on-empty drop (on_empty='drop') to drop those pairs"
            )
        joined = joined.filter(pa.array(~empty_t))
    stats["empty_title_items_dropped"] = n_empty_items
    stats["empty_title_pairs_dropped"] = int(empty_t.sum())
    if joined.num_rows == 0:
        raise DataError(f"{ex_path}: no examples left after dropping empty texts")
    return joined, products


def _split_pairs(
    joined: pa.Table, val_fraction: float, seed: int, stats: dict[str, int]
) -> pa.Table:
    """De-duplicated pairs with their split: upstream test stays test; a seeded share of the
    upstream train queries becomes val."""
    pair_cols = ["pair_id", "query_id", "item_id", "label", "upstream_split"]
    pairs_t, dedup = dedup_pairs(joined.select(pair_cols))
    stats.update(dedup)
    train_q = pc.unique(
        pc.filter(pairs_t.column("query_id"), pc.equal(pairs_t.column("upstream_split"), "train"))
    ).to_pylist()
    assign = split_queries(
        sorted(train_q), {"train": 1.0 - val_fraction, "val": val_fraction}, seed
    )
    val_q = pa.array(sorted(q for q, s in assign.items() if s == "val"), pa.string())
    split = pc.if_else(
        pc.equal(pairs_t.column("upstream_split"), "test"),
        "test",
        pc.if_else(pc.is_in(pairs_t.column("query_id"), value_set=val_q), "val", "train"),
    )
    pairs_t = pairs_t.select(["pair_id", "query_id", "item_id", "label"]).append_column(
        "split", split
    )
    pairs_t = sort_table(pairs_t, "pair_id")
    stats["pairs_kept"] = pairs_t.num_rows
    return pairs_t


def _queries_and_items(
    joined: pa.Table, products: pa.Table, pairs_t: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """The queries (with popularity buckets) and the items the kept pairs use."""
    # the first row of each kept query (ids were checked to have one text and one locale)
    q_ids = pc.unique(pairs_t.column("query_id"))
    q_first = joined.take(pc.index_in(q_ids, value_set=joined.column("query_id")))
    freq, buckets = bucket_queries(q_ids.to_pylist(), frequency_proxy(pairs_t))
    queries = sort_table(
        pa.table(
            {
                "query_id": q_first.column("query_id"),
                "text": q_first.column("text"),
                "bucket": pa.array(buckets, pa.string()),
                "frequency": pa.array(freq, pa.int64()),
                "locale": q_first.column("locale"),
            }
        ),
        "query_id",
    )
    item_cols = ["item_id", "title", "description", "brand", "color", "bullet_point", "locale"]
    used = pc.is_in(products.column("item_id"), value_set=pc.unique(pairs_t.column("item_id")))
    items = sort_table(products.filter(used).select(item_cols), "item_id")
    return queries, items
