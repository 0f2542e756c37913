"""``relkd data validate``: every problem in a canonical dataset folder, not just the first.

:func:`validate_dataset` checks, in order, and keeps going after a failure wherever the later
checks still make sense:

1. the manifest: present, parseable, a known label scheme, the required tables listed;
2. each listed table file: present, sha256 equal to the manifest's (content changed or
   corrupt), a readable Parquet file, its row count equal to the manifest's;
3. columns: every required column present with a compatible type (see
   :mod:`relkd.data.schema`; e.g. ``large_string`` or dictionary-encoded strings pass for
   ``string``, any integer type for ``int64``);
4. values: null or empty ids; null, empty or whitespace-only ``items.title`` and
   ``queries.text``; duplicate keys (``pair_id``, ``item_id``, ``query_id``) and duplicate
   ``(query_id, item_id)`` pairs; ``label``/``clean_label`` values that are not canonical names
   of the manifest's scheme (aliases such as ESCI's ``E`` are input spellings, never stored);
   ``split`` outside :data:`~relkd.data.schema.SPLITS`; unlabelled pairs outside ``train``;
   split leakage (a query with pairs in more than one split); ``bucket`` outside
   :data:`~relkd.data.schema.BUCKETS`; ``aspect_*`` outside
   :data:`~relkd.data.schema.ASPECT_VALUES`; negative ``frequency``; behaviour rows with
   ``clicks < 0``, ``clicks > impressions`` or ``position < 1``;
5. referential integrity: every pair's and behaviour row's ``query_id`` is in ``queries``
   and ``item_id`` in ``items``.

Each problem is one line naming the file, the column and how many rows are affected, e.g.
``pairs.parquet: column label: 3 row(s) have unknown label(s) ['Foo'] for scheme esci ...``.
All checks are vectorised (pyarrow.compute / group_by), so a dataset with millions of pairs
validates in seconds; only the columns the checks need are decoded (the sha256 check covers the
bytes of the rest). Validation only reads: nothing is ever written into the folder.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relkd.data.label_scheme import LabelScheme, get_label_scheme
from relkd.data.manifest import MANIFEST_NAME, Manifest, sha256_file
from relkd.data.schema import (
    ASPECT_VALUES,
    ASPECTS,
    BUCKETS,
    REQUIRED_TABLES,
    SPLITS,
    TABLES,
    TableSchema,
)
from relkd.errors import DataError

# Columns each table's checks decode; other columns are only type-checked from the footer.
_CHECKED_COLUMNS: dict[str, tuple[str, ...]] = {
    "items": ("item_id", "title"),
    "queries": ("query_id", "text", "bucket", "frequency"),
    "pairs": (
        "pair_id",
        "query_id",
        "item_id",
        "label",
        "split",
        "clean_label",
        "label_votes",
        *(f"aspect_{a}" for a in ASPECTS),
    ),
    "behavior": ("query_id", "item_id", "impressions", "clicks", "position"),
}
_MAX_EXAMPLES = 5


def validate_dataset(root: str | Path) -> list[str]:
    """Every problem found in the dataset folder ``root``; an empty list means it is valid.

    Never raises for a malformed dataset (each defect becomes a message) and never writes.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a directory"]
    try:
        manifest = Manifest.load(root)
    except DataError as exc:
        return [str(exc)]
    except (TypeError, AttributeError, ValueError) as exc:
        # e.g. a JSON array instead of an object, or bytes that are not UTF-8.
        return [f"{root / MANIFEST_NAME}: corrupt manifest ({type(exc).__name__}: {exc})"]
    return _Validator(root, manifest).run()


def _rows(n: int) -> str:
    return f"{n} row(s)"


def _examples(values: pa.Array | pa.ChunkedArray) -> str:
    """Up to five distinct values, e.g. ``['Foo', 'Bar']`` (with ``...`` when there are more)."""
    uniq = pc.unique(values)
    shown = uniq.slice(0, _MAX_EXAMPLES).to_pylist()
    return repr(shown) if len(uniq) <= _MAX_EXAMPLES else repr(shown)[:-1] + ", ...]"


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    """Rows where a boolean mask is true (nulls count as false)."""
    return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)


def _type_ok(actual: pa.DataType, expected: pa.DataType, nullable: bool) -> bool:
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_null(actual):
        return nullable
    if pa.types.is_string(expected):
        return (
            pa.types.is_string(actual)
            or pa.types.is_large_string(actual)
            or pa.types.is_string_view(actual)
        )
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    return actual == expected


class _Validator:
    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest
        self.problems: list[str] = []
        self.tables: dict[str, pa.Table] = {}  # checked columns of each readable table
        self.files: dict[str, str] = {}  # table name -> file name, for messages

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def col_problem(self, name: str, column: str, message: str) -> None:
        self.problem(self.files.get(name, f"{name}.parquet"), f"column {column}: {message}")

    def run(self) -> list[str]:
        scheme = self.check_manifest()
        for name in TABLES:
            if name in self.manifest.tables:
                self.load_table(name)
        if "items" in self.tables:
            self.check_items()
        if "queries" in self.tables:
            self.check_queries()
        if "pairs" in self.tables:
            self.check_pairs(scheme)
        if "behavior" in self.tables:
            self.check_behavior()
        return self.problems

    # -- manifest and files ----------------------------------------------------------------

    def check_manifest(self) -> LabelScheme | None:
        scheme = None
        try:
            scheme = get_label_scheme(self.manifest.label_scheme)
        except DataError as exc:
            self.problem(MANIFEST_NAME, f"field label_scheme: {exc}")
        for name in REQUIRED_TABLES:
            if name not in self.manifest.tables:
                self.problem(MANIFEST_NAME, f"field tables: required table {name} is not listed")
        unknown = sorted(set(self.manifest.tables) - set(TABLES))
        if unknown:
            self.problem(
                MANIFEST_NAME, f"field tables: unknown table(s) {unknown}; known: {sorted(TABLES)}"
            )
        return scheme

    def load_table(self, name: str) -> None:
        entry = self.manifest.tables[name]
        file = str(entry.file)
        if not file or Path(file).name != file or file in (".", ".."):
            self.problem(
                MANIFEST_NAME,
                f"field tables.{name}.file: {file!r} is not a file name inside the dataset folder",
            )
            return
        self.files[name] = file
        path = self.root / file
        if not path.is_file():
            self.problem(file, f"file is missing (table {name} is listed in {MANIFEST_NAME})")
            return
        digest = sha256_file(path)
        if digest != entry.sha256:
            self.problem(
                file,
                f"sha256 mismatch: content changed or corrupt since {MANIFEST_NAME} was written "
                f"(manifest {str(entry.sha256)[:12]}..., file {digest[:12]}...)",
            )
        try:
            pfile = pq.ParquetFile(path, memory_map=True)
            schema = pfile.schema_arrow
            num_rows = pfile.metadata.num_rows
        except (OSError, ValueError, pa.ArrowException) as exc:
            self.problem(file, f"unreadable or corrupt parquet ({exc})")
            return
        if num_rows != entry.rows:
            self.problem(file, f"row count {num_rows} differs from {MANIFEST_NAME} ({entry.rows})")
        spec: TableSchema = TABLES[name]
        wanted: list[str] = []
        for col in spec.columns:
            if col.name not in schema.names:
                if col.required:
                    self.col_problem(name, col.name, "missing required column")
                continue
            actual = schema.field(col.name).type
            if not _type_ok(actual, col.type, col.nullable or not col.required):
                self.col_problem(name, col.name, f"type {actual}, expected {col.type}")
            elif col.name in _CHECKED_COLUMNS[name]:
                wanted.append(col.name)
        try:
            table = pfile.read(columns=wanted)
        except (OSError, ValueError, pa.ArrowException) as exc:
            self.problem(file, f"unreadable or corrupt parquet ({exc})")
            return
        columns = {}
        for col_name in wanted:
            target = spec.column(col_name).type
            try:
                columns[col_name] = table.column(col_name).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                self.col_problem(name, col_name, f"values do not fit {target} ({exc})")
        self.tables[name] = pa.table(columns) if columns else pa.table({})

    # -- generic column checks -------------------------------------------------------------

    def has(self, name: str, column: str) -> bool:
        return column in self.tables[name].column_names

    def check_not_null(self, name: str, column: str, *, empty: bool = False) -> None:
        """Null values; with ``empty``, also empty or whitespace-only strings."""
        if not self.has(name, column):
            return
        arr = self.tables[name].column(column)
        if empty:
            bad = pc.or_kleene(
                pc.is_null(arr), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(arr)), 0)
            )
            n = _count(bad)
            if n:
                self.col_problem(name, column, f"{_rows(n)} are null, empty or whitespace-only")
        else:
            n = arr.null_count
            if n:
                self.col_problem(name, column, f"{_rows(n)} are null")

    def check_unique(self, name: str, column: str) -> None:
        if not self.has(name, column):
            return
        counts = pc.value_counts(pc.drop_null(self.tables[name].column(column)))
        dup = pc.greater(counts.field("counts"), 1)
        n_values = _count(dup)
        if n_values:
            values = pc.filter(counts.field("values"), dup)
            extra = int(pc.sum(pc.filter(counts.field("counts"), dup)).as_py()) - n_values
            self.col_problem(
                name,
                column,
                f"{n_values} duplicate value(s) ({_rows(extra)} repeat an earlier one), "
                f"e.g. {_examples(values)}",
            )

    def check_allowed(self, name: str, column: str, allowed: tuple[str, ...], what: str) -> None:
        """Non-null values outside ``allowed``."""
        if not self.has(name, column):
            return
        arr = self.tables[name].column(column)
        bad = pc.invert(pc.is_in(arr, value_set=pa.array(allowed, pa.string())))
        bad = pc.and_(pc.is_valid(arr), bad)
        n = _count(bad)
        if n:
            self.col_problem(
                name,
                column,
                f"{_rows(n)} have unknown {what}(s) {_examples(pc.filter(arr, bad))}; "
                f"expected one of {list(allowed)}",
            )

    def check_references(self, name: str, column: str, target: str) -> None:
        """Every non-null ``column`` value of ``name`` is a key of table ``target``."""
        if not self.has(name, column) or target not in self.tables:
            return
        if not self.has(target, column):
            return
        arr = self.tables[name].column(column)
        keys = pc.unique(pc.drop_null(self.tables[target].column(column)))
        bad = pc.and_(pc.is_valid(arr), pc.invert(pc.is_in(arr, value_set=keys)))
        n = _count(bad)
        if n:
            self.col_problem(
                name,
                column,
                f"{_rows(n)} reference {column}(s) missing from {self.files.get(target, target)}, "
                f"e.g. {_examples(pc.filter(arr, bad))}",
            )

    # -- per table -------------------------------------------------------------------------

    def check_items(self) -> None:
        self.check_not_null("items", "item_id", empty=True)
        self.check_unique("items", "item_id")
        self.check_not_null("items", "title", empty=True)

    def check_queries(self) -> None:
        self.check_not_null("queries", "query_id", empty=True)
        self.check_unique("queries", "query_id")
        self.check_not_null("queries", "text", empty=True)
        self.check_not_null("queries", "bucket")
        self.check_allowed("queries", "bucket", BUCKETS, "bucket")
        if self.has("queries", "frequency"):
            n = _count(pc.less(self.tables["queries"].column("frequency"), 0))
            if n:
                self.col_problem("queries", "frequency", f"{_rows(n)} are negative")

    def check_pairs(self, scheme: LabelScheme | None) -> None:
        self.check_not_null("pairs", "pair_id")
        self.check_unique("pairs", "pair_id")
        self.check_not_null("pairs", "query_id", empty=True)
        self.check_not_null("pairs", "item_id", empty=True)
        self.check_references("pairs", "query_id", "queries")
        self.check_references("pairs", "item_id", "items")
        self.check_duplicate_pairs()
        self.check_not_null("pairs", "split")
        self.check_allowed("pairs", "split", SPLITS, "split")
        if scheme is not None:
            for column in ("label", "clean_label"):
                self.check_labels(column, scheme)
            self.check_votes(scheme)
        self.check_unlabelled_split()
        self.check_leakage()
        for aspect in ASPECTS:
            self.check_allowed("pairs", f"aspect_{aspect}", ASPECT_VALUES, "aspect value")

    def check_duplicate_pairs(self) -> None:
        if not (self.has("pairs", "query_id") and self.has("pairs", "item_id")):
            return
        keys = self.tables["pairs"].select(["query_id", "item_id"]).drop_null()
        groups = keys.group_by(["query_id", "item_id"]).aggregate([([], "count_all")])
        dup = pc.greater(groups.column("count_all"), 1)
        n_keys = _count(dup)
        if n_keys:
            groups = groups.filter(dup)
            extra = int(pc.sum(groups.column("count_all")).as_py()) - n_keys
            shown = [
                (q, i)
                for q, i in zip(
                    groups.column("query_id").slice(0, _MAX_EXAMPLES).to_pylist(),
                    groups.column("item_id").slice(0, _MAX_EXAMPLES).to_pylist(),
                    strict=True,
                )
            ]
            self.col_problem(
                "pairs",
                "query_id, item_id",
                f"{n_keys} (query_id, item_id) pair(s) appear more than once "
                f"({_rows(extra)} repeat an earlier one), e.g. {shown}",
            )

    def check_labels(self, column: str, scheme: LabelScheme) -> None:
        if not self.has("pairs", column):
            return
        arr = self.tables["pairs"].column(column)
        bad = pc.and_(pc.is_valid(arr), pc.invert(pc.is_in(arr, value_set=pa.array(scheme.labels))))
        n = _count(bad)
        if not n:
            return
        values = pc.unique(pc.filter(arr, bad)).to_pylist()
        message = (
            f"{_rows(n)} have unknown label(s) {_examples(pc.filter(arr, bad))} for scheme "
            f"{scheme.name}; expected one of {list(scheme.labels)}"
        )
        aliases = [v for v in values if v in scheme.aliases]
        if aliases:
            spelled = ", ".join(f"{a!r} is an alias of {scheme.aliases[a]!r}" for a in aliases)
            message += f" ({spelled}; a stored dataset must use the canonical names)"
        self.col_problem("pairs", column, message)

    def check_votes(self, scheme: LabelScheme) -> None:
        if not self.has("pairs", "label_votes"):
            return
        from relkd.data.label_votes import votes_to_distribution

        pairs = self.tables["pairs"]
        ids = pairs.column("pair_id").to_pylist() if self.has("pairs", "pair_id") else None
        try:
            votes_to_distribution(
                pairs.column("label_votes").to_pylist(), scheme, "pairs.parquet", ids
            )
        except DataError as exc:
            self.problem("pairs.parquet", str(exc).split(": ", 1)[1])

    def check_unlabelled_split(self) -> None:
        if not (self.has("pairs", "label") and self.has("pairs", "split")):
            return
        pairs = self.tables["pairs"]
        split = pairs.column("split")
        bad = pc.and_(
            pc.is_null(pairs.column("label")), pc.not_equal(pc.fill_null(split, ""), "train")
        )
        n = _count(bad)
        if n:
            self.col_problem(
                "pairs",
                "label",
                f"{_rows(n)} are unlabelled (null label) in split(s) "
                f"{_examples(pc.filter(split, bad))}; only train may hold unlabelled pairs",
            )

    def check_leakage(self) -> None:
        if not (self.has("pairs", "query_id") and self.has("pairs", "split")):
            return
        keys = self.tables["pairs"].select(["query_id", "split"]).drop_null()
        groups = keys.group_by("query_id").aggregate([("split", "count_distinct")])
        leaked = pc.greater(groups.column("split_count_distinct"), 1)
        n = _count(leaked)
        if n:
            queries = pc.filter(groups.column("query_id"), leaked).combine_chunks()
            in_leaked = pc.is_in(keys.column("query_id"), value_set=queries)
            n_rows = _count(in_leaked)
            self.col_problem(
                "pairs",
                "split",
                f"{n} query(ies) have pairs in more than one split (split leakage; a split is "
                f"made by query), {_rows(n_rows)} affected, e.g. {_examples(queries)}",
            )

    def check_behavior(self) -> None:
        for column in ("query_id", "item_id"):
            self.check_not_null("behavior", column, empty=True)
        self.check_references("behavior", "query_id", "queries")
        self.check_references("behavior", "item_id", "items")
        for column in ("impressions", "clicks"):
            self.check_not_null("behavior", column)
        table = self.tables["behavior"]
        if self.has("behavior", "clicks"):
            n = _count(pc.less(table.column("clicks"), 0))
            if n:
                self.col_problem("behavior", "clicks", f"{_rows(n)} have negative clicks")
            if self.has("behavior", "impressions"):
                n = _count(pc.greater(table.column("clicks"), table.column("impressions")))
                if n:
                    self.col_problem(
                        "behavior",
                        "clicks",
                        f"{_rows(n)} have clicks > impressions (need impressions >= clicks >= 0)",
                    )
        if self.has("behavior", "position"):
            n = _count(pc.less(table.column("position"), 1))
            if n:
                self.col_problem(
                    "behavior", "position", f"{_rows(n)} have position < 1 (positions are 1-based)"
                )
