"""Writers of small files in exactly the upstream ESCI and WANDS formats, for loader tests.

ESCI: the two Shopping Queries parquet files with the upstream columns and dtypes.
WANDS: tab-separated ``product.csv`` / ``query.csv`` / ``label.csv`` with the upstream headers,
written the way pandas ``to_csv(sep="\\t")`` writes them (fields holding a quote, tab or newline
are wrapped in quotes with inner quotes doubled; NaN is an empty field; ratings are floats).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ESCI_EXAMPLES = "shopping_queries_dataset_examples.parquet"
ESCI_PRODUCTS = "shopping_queries_dataset_products.parquet"

ESCI_EXAMPLES_SCHEMA = pa.schema(
    [
        ("example_id", pa.int64()),
        ("query", pa.string()),
        ("query_id", pa.int64()),
        ("product_id", pa.string()),
        ("product_locale", pa.string()),
        ("esci_label", pa.string()),
        ("small_version", pa.int64()),
        ("large_version", pa.int64()),
        ("split", pa.string()),
    ]
)
ESCI_PRODUCTS_SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("product_title", pa.string()),
        ("product_description", pa.string()),
        ("product_bullet_point", pa.string()),
        ("product_brand", pa.string()),
        ("product_color", pa.string()),
        ("product_locale", pa.string()),
    ]
)
ESCI_LETTERS = ("E", "S", "C", "I")

# locale -> (first query_id, number of queries)
ESCI_LOCALES = {"us": (0, 24), "es": (100, 6), "jp": (200, 4)}


def esci_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Default ESCI examples and products.

    Per locale, query k (0-based within the locale) has 3 products; it is upstream ``test``
    when k % 4 == 3, and in the small version when k < 3/4 of the locale's queries (all are in
    the large version). Product ids ``B{k:03d}{j}`` recur across locales with locale-specific
    titles, so a wrong join shows. One product per locale is never referenced.
    """
    examples: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    example_id = 1000
    for locale, (q0, n) in ESCI_LOCALES.items():
        small_cut = (3 * n) // 4
        for k in range(n):
            qid = q0 + k
            for j in range(3):
                pid = f"B{k:03d}{j}"
                examples.append(
                    {
                        "example_id": example_id,
                        "query": f"{locale} query {k}",
                        "query_id": qid,
                        "product_id": pid,
                        "product_locale": locale,
                        "esci_label": ESCI_LETTERS[(k + j) % 4],
                        "small_version": int(k < small_cut),
                        "large_version": 1,
                        "split": "test" if k % 4 == 3 else "train",
                    }
                )
                example_id += 1
                products.append(esci_product(locale, pid))
        products.append(esci_product(locale, "UNUSED0001"))
    return examples, products


def esci_product(locale: str, pid: str, title: str | None = None) -> dict[str, Any]:
    return {
        "product_id": pid,
        "product_title": title if title is not None else f"{locale} title {pid}",
        "product_description": None if pid.endswith("1") else f"{locale} description {pid}",
        "product_bullet_point": f"{locale} bullet one\n{locale} bullet two",
        "product_brand": "Acme" if pid.endswith("0") else None,
        "product_color": "black",
        "product_locale": locale,
    }


def write_esci(
    folder: Path,
    examples: list[dict[str, Any]] | None = None,
    products: list[dict[str, Any]] | None = None,
    *,
    drop_columns: dict[str, list[str]] | None = None,
) -> Path:
    """Write the two ESCI parquet files into ``folder``; ``drop_columns`` maps ``examples`` /
    ``products`` to columns to leave out (for missing-column tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    if examples is None or products is None:
        default_ex, default_pr = esci_rows()
        examples = default_ex if examples is None else examples
        products = default_pr if products is None else products
    drop_columns = drop_columns or {}
    for rows, schema, name, key in (
        (examples, ESCI_EXAMPLES_SCHEMA, ESCI_EXAMPLES, "examples"),
        (products, ESCI_PRODUCTS_SCHEMA, ESCI_PRODUCTS, "products"),
    ):
        table = pa.Table.from_pylist(rows, schema=schema)
        for col in drop_columns.get(key, []):
            table = table.drop_columns([col])
        pq.write_table(table, folder / name)
    return folder


# ----------------------------------------------------------------------------- WANDS

WANDS_PRODUCT_HEADER = [
    "product_id",
    "product_name",
    "product_class",
    "category hierarchy",
    "product_description",
    "product_features",
    "rating_count",
    "average_rating",
    "review_count",
]
WANDS_QUERY_HEADER = ["query_id", "query", "query_class"]
WANDS_LABEL_HEADER = ["id", "query_id", "product_id", "label"]
WANDS_LABELS = ("Exact", "Partial", "Irrelevant")

QUOTED_DESCRIPTION = 'solid oak, 24" wide; "heirloom" finish'
QUOTED_QUERY = 'fawkes 36" blue vanity'
FEATURES = (
    "overallwidth-sidetoside:64.7|producttype : slow cooker| : gray wood|color:red|"
    "color:blue|malformedentry|"
)


def wands_rows() -> tuple[list[list[Any]], list[list[Any]], list[list[Any]]]:
    """Default WANDS products, queries and label rows (lists in header order).

    20 products; 12 queries x 4 products each (48 pairs). Three query-product pairs are repeated
    (52 label rows in all):
    (q0, p1): ids 1000 Partial, 1001 Exact, 5001 Exact -> majority Exact, pair_id 1000, conflict;
    (q1, p2): ids 9001 Partial, 9002 Irrelevant -> tie, lowest id wins: Partial, conflict;
    (q2, p3): ids 1003 Exact, 14001 Exact -> Exact, pair_id 1003, no conflict.
    """
    products: list[list[Any]] = []
    for p in range(20):
        products.append(
            [
                p,
                f"product {p}",
                "Beds" if p % 2 else "Teen Lounge Furniture|Accent Chairs",
                "Furniture / Bedroom Furniture / Beds" if p % 3 else "Browse By Brand / All-Clad",
                QUOTED_DESCRIPTION if p == 0 else ("" if p == 5 else f"description {p}"),
                FEATURES if p == 0 else ("" if p == 6 else f"material:oak|colour : c{p}"),
                "" if p == 7 else f"{10.0 * p:.1f}",
                "" if p == 7 else "4.5",
                "" if p == 7 else f"{5.0 * p:.1f}",
            ]
        )
    queries: list[list[Any]] = []
    for q in range(12):
        text = QUOTED_QUERY if q == 4 else f"query {q}"
        queries.append([q, text, "" if q == 5 else "Beds"])
    labels: list[list[Any]] = []
    row_id = 0
    for q in range(12):
        for j in range(4):
            p = (q + j) % 20
            labels.append([row_id, q, p, WANDS_LABELS[(q + j) % 3]])
            row_id += 1
    labels = [r for r in labels if (r[1], r[2]) not in {(0, 1), (1, 2), (2, 3)}]
    labels += [
        [5001, 0, 1, "Exact"],
        [1000, 0, 1, "Partial"],
        [1001, 0, 1, "Exact"],
        [9001, 1, 2, "Partial"],
        [9002, 1, 2, "Irrelevant"],
        [1003, 2, 3, "Exact"],
        [14001, 2, 3, "Exact"],
    ]
    return products, queries, labels


def _write_tsv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_wands(
    folder: Path,
    products: list[list[Any]] | None = None,
    queries: list[list[Any]] | None = None,
    labels: list[list[Any]] | None = None,
    *,
    product_header: list[str] | None = None,
    query_header: list[str] | None = None,
    label_header: list[str] | None = None,
) -> Path:
    """Write ``product.csv``, ``query.csv`` and ``label.csv`` (tab-separated) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    d_products, d_queries, d_labels = wands_rows()
    _write_tsv(
        folder / "product.csv",
        product_header or WANDS_PRODUCT_HEADER,
        d_products if products is None else products,
    )
    _write_tsv(
        folder / "query.csv",
        query_header or WANDS_QUERY_HEADER,
        d_queries if queries is None else queries,
    )
    _write_tsv(
        folder / "label.csv",
        label_header or WANDS_LABEL_HEADER,
        d_labels if labels is None else labels,
    )
    return folder


# ----------------------------------------------------------------------------- helpers


def hash_tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove a loader left its inputs alone)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
