"""The canonical table schemas every loader writes and every model reads.

A dataset folder holds four Parquet tables plus ``manifest.json``:

- ``items``: one row per item (``item_id`` unique).
- ``queries``: one row per query (``query_id`` unique) with its popularity ``bucket``.
- ``pairs``: query–item pairs keyed by a stable int64 ``pair_id``; ``label`` is null for the
  unlabelled pool; ``split`` is made by query (a query lives in exactly one split).
- ``behavior``: search-log rows (impressions, clicks), optionally per user and timestamp.

Required columns must be present with a compatible type; optional columns may be absent
(loaders for real data cannot fill them) and extra columns are kept untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = 1

SPLITS: tuple[str, ...] = ("train", "val", "test")
BUCKETS: tuple[str, ...] = ("head", "torso", "tail")
ASPECTS: tuple[str, ...] = ("category", "brand", "model", "attributes")
ASPECT_VALUES: tuple[str, ...] = ("match", "mismatch", "not_stated")


# The items table's text columns a model reads by default (data.item_fields): the students, the
# tokenized store, BM25 and the word-piece fallback tokenizer share this one list.
ITEM_TEXT_FIELDS: tuple[str, ...] = ("title", "brand", "color", "product_type", "description")

# What happens to the val/test queries' own behaviour rows (graph/neighbour builds): kept as logs,
# or hidden (the leak test).
EVAL_QUERY_POLICIES: tuple[str, ...] = ("logs", "hidden")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool = True
    nullable: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.parquet"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def required(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.required)

    def arrow_schema(self, present: list[str] | None = None) -> pa.Schema:
        """Arrow schema of the known columns (all, or only those in ``present``)."""
        cols = [c for c in self.columns if present is None or c.name in present]
        return pa.schema(
            [pa.field(c.name, c.type, nullable=c.nullable or not c.required) for c in cols]
        )


ITEMS = TableSchema(
    name="items",
    key=("item_id",),
    columns=(
        Column("item_id", pa.string(), doc="unique item id"),
        Column("title", pa.string(), doc="non-empty product title"),
        Column("description", pa.string(), required=False, nullable=True),
        Column("brand", pa.string(), required=False, nullable=True),
        Column("color", pa.string(), required=False, nullable=True),
        Column("category", pa.string(), required=False, nullable=True, doc="top-level category"),
        Column("product_type", pa.string(), required=False, nullable=True),
        Column(
            "attributes",
            pa.string(),
            required=False,
            nullable=True,
            doc='JSON object of attribute name to value, e.g. {"material": "oak"}',
        ),
    ),
)

QUERIES = TableSchema(
    name="queries",
    key=("query_id",),
    columns=(
        Column("query_id", pa.string(), doc="unique query id"),
        Column("text", pa.string(), doc="non-empty query text"),
        Column("bucket", pa.string(), doc="popularity bucket: head, torso or tail"),
        Column("frequency", pa.int64(), required=False, nullable=True, doc="search volume"),
    ),
)

PAIRS = TableSchema(
    name="pairs",
    key=("pair_id",),
    columns=(
        Column("pair_id", pa.int64(), doc="stable id shared by data, teacher cache and metrics"),
        Column("query_id", pa.string()),
        Column("item_id", pa.string()),
        Column(
            "label", pa.string(), nullable=True, doc="label name in the scheme; null = unlabelled"
        ),
        Column("split", pa.string(), doc="train, val or test; made by query"),
        *(
            Column(
                f"aspect_{a}",
                pa.string(),
                required=False,
                nullable=True,
                doc="ground-truth aspect fact: match, mismatch or not_stated",
            )
            for a in ASPECTS
        ),
        Column(
            "clean_label",
            pa.string(),
            required=False,
            nullable=True,
            doc="synthetic only: the rule label before annotator noise",
        ),
        Column(
            "label_votes",
            pa.string(),
            required=False,
            nullable=True,
            doc='annotator votes as JSON {label: count}, e.g. {"Exact": 2, "Substitute": 1}',
        ),
    ),
)

BEHAVIOR = TableSchema(
    name="behavior",
    key=(),
    columns=(
        Column("query_id", pa.string()),
        Column("item_id", pa.string()),
        Column("impressions", pa.int64()),
        Column("clicks", pa.int64()),
        Column("user_id", pa.string(), required=False, nullable=True),
        Column("timestamp", pa.int64(), required=False, nullable=True, doc="unix seconds"),
        Column("position", pa.int64(), required=False, nullable=True, doc="1-based rank shown"),
    ),
)

TABLES: dict[str, TableSchema] = {t.name: t for t in (ITEMS, QUERIES, PAIRS, BEHAVIOR)}
# ``behavior`` may be absent for datasets without logs (ESCI, WANDS); the rest are required.
REQUIRED_TABLES: tuple[str, ...] = ("items", "queries", "pairs")
