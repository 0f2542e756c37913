"""Helpers shared by the loaders: reading files by extension, column checks whose errors name
the file and the column, label mapping, pair de-duplication and popularity buckets.

Every reader here only *reads*: loaders never open an input file for writing.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from relkd.data.label_scheme import LabelScheme
from relkd.data.manifest import sha256_file
from relkd.data.splits import popularity_buckets
from relkd.errors import ConfigError, DataError

ON_EMPTY = ("error", "drop")
BUCKET_SOURCE_PROXY = "judged_pairs_per_query"

CSV_EXTS = (".csv",)
TSV_EXTS = (".tsv", ".tab")
JSONL_EXTS = (".jsonl", ".ndjson", ".json")
PARQUET_EXTS = (".parquet", ".pq", ".parq")

NESTED_TYPES = (
    pa.types.is_list,
    pa.types.is_large_list,
    pa.types.is_fixed_size_list,
    pa.types.is_struct,
    pa.types.is_map,
    pa.types.is_union,
)
INT64_LIMIT = 2**63  # |int64| < 2**63
EXACT_FLOAT_INT = 2**53  # integers from here on, written as decimals, may not read exactly

# the text forms a string -> float64 cast accepts (checked against Arrow in tests); values that
# do not match are reported without casting, the rest are cast in bulk
FLOAT_TEXT = (
    r"^[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
    r"|(?i:inf|infinity|nan(\([0-9a-z_]*\))?))$"
)
INT_TEXT = r"^-?[0-9]+$"


# ----------------------------------------------------------------------------- formatting


def examples(values: Iterable[Any], k: int = 5) -> str:
    """The first ``k`` values as a short list for an error message."""
    vals = list(values)
    head = ", ".join(repr(v) for v in vals[:k])
    return f"[{head}{', ...' if len(vals) > k else ''}]"


# ----------------------------------------------------------------------------- options


def check_on_empty(on_empty: str) -> str:
    if on_empty not in ON_EMPTY:
        raise ConfigError(
            f"option on_empty (--on-empty) must be one of {list(ON_EMPTY)}, got {on_empty!r}"
        )
    return on_empty


def check_fractions(**fractions: float) -> None:
    """Each named fraction in [0, 1) and their sum < 1 (train keeps the rest)."""
    for key, value in fractions.items():
        if not 0.0 <= float(value) < 1.0:
            opt = "--" + key.replace("_", "-")
            raise ConfigError(f"option {key} ({opt}) must be in [0, 1), got {value}")
    if sum(fractions.values()) >= 1.0:
        raise ConfigError(
            f"split fractions {fractions} leave nothing for train; their sum must be < 1"
        )


def guard_out(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output folder that is, or contains, an input file: writing it (and with
    overwrite, replacing it) would touch the inputs."""
    out_r = Path(out).resolve()
    for path in inputs:
        p = Path(path).resolve()
        if p == out_r or out_r in p.parents:
            raise ConfigError(
                f"--out {out} contains the input file {path}; "
                "choose an output folder outside the inputs"
            )


def input_hashes(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{file name: sha256}`` for the manifest; a path is used where two names collide."""
    out: dict[str, str] = {}
    paths = [Path(p) for p in paths]
    names = Counter(p.name for p in paths)
    for p in paths:
        out[p.name if names[p.name] == 1 else str(p)] = sha256_file(p)
    return out


def require_file(path: Path, hint: str = "") -> Path:
    if not path.is_file():
        raise DataError(f"{path}: file not found{'; ' + hint if hint else ''}")
    return path


# ----------------------------------------------------------------------------- readers


def _header(path: Path, delimiter: str) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise DataError(f"{path}: empty file (no header row)")
    try:
        line = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: header is not UTF-8 ({exc})") from None
    return next(csv.reader([line], delimiter=delimiter))


def read_delimited(path: str | Path, delimiter: str = ",") -> pa.Table:
    """Read a CSV/TSV file with every column as a string (ids such as ``007`` stay intact).

    Quoting follows the CSV convention the upstream files were written with (pandas
    ``to_csv``): a field *starting* with ``"`` is quoted and ``""`` inside it is a literal quote;
    a ``"`` in the middle of an unquoted field is kept literally; quoted fields may span lines.
    Empty fields are read as empty strings (callers decide what empty means).
    """
    path = Path(path)
    raw_names = _header(path, delimiter)
    names = [n.strip() for n in raw_names]
    dup = sorted(n for n, c in Counter(names).items() if c > 1)
    if dup:
        raise DataError(f"{path}: duplicate column name(s) {dup} in the header")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char='"', double_quote=True, newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in raw_names}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        sep = "tab" if delimiter == "\t" else repr(delimiter)
        raise DataError(f"{path}: cannot parse as {sep}-separated text ({exc})") from None
    return table.rename_columns(names)


def read_jsonl(path: str | Path) -> pa.Table:
    path = Path(path)
    try:
        return pajson.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            f"{path}: cannot parse as JSON Lines (one JSON object per line) ({exc})"
        ) from None


def read_parquet(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    path = Path(path)
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot read as Parquet ({exc})") from None


def parquet_columns(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot read as Parquet ({exc})") from None


def read_table_file(path: str | Path) -> pa.Table:
    """Read CSV (``.csv``), TSV (``.tsv``/``.tab``), JSON Lines (``.jsonl``/``.ndjson``/``.json``)
    or Parquet (``.parquet``/``.pq``/``.parq``), chosen by extension."""
    path = require_file(Path(path))
    ext = path.suffix.lower()
    if ext in CSV_EXTS:
        return read_delimited(path, ",")
    if ext in TSV_EXTS:
        return read_delimited(path, "\t")
    if ext in JSONL_EXTS:
        return read_jsonl(path)
    if ext in PARQUET_EXTS:
        return read_parquet(path)
    raise DataError(
        f"{path}: unknown file type {ext!r}; use one of "
        f"{list(CSV_EXTS + TSV_EXTS + JSONL_EXTS + PARQUET_EXTS)}"
    )


# ----------------------------------------------------------------------------- columns


def require_columns(
    table: pa.Table,
    path: str | Path,
    required: Sequence[str],
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> pa.Table:
    """Check ``required`` columns exist (renaming an accepted alias to the canonical name).

    Raises DataError naming the file, the missing column(s) and the columns that are there.
    """
    aliases = aliases or {}
    names = list(table.column_names)
    for canonical, alts in aliases.items():
        if canonical in names:
            continue
        for alt in alts:
            if alt in names:
                names[names.index(alt)] = canonical
                break
    table = table.rename_columns(names)
    missing = [c for c in required if c not in names]
    if missing:
        spelled = {c: [c, *aliases.get(c, ())] for c in missing if aliases.get(c)}
        extra = f" (accepted spellings: {spelled})" if spelled else ""
        raise DataError(
            f"{path}: missing column(s) {missing}{extra}; the file has {table.column_names}"
        )
    return table


def is_text_type(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def text_column(
    arr: pa.ChunkedArray | pa.Array, path: str | Path, column: str
) -> pa.ChunkedArray | pa.Array:
    """A column as strings; numbers and booleans are formatted. Nested values (lists, objects,
    structs, maps) and bytes that are not UTF-8 are a DataError naming the file and column."""
    if is_text_type(arr.type):
        return arr
    if any(check(arr.type) for check in NESTED_TYPES):
        raise DataError(
            f"{path}: column {column!r} must hold text, but holds nested values of type "
            f"{arr.type} (lists / objects)"
        )
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"{path}: column {column!r} must hold text; its type {arr.type} cannot be read as "
            f"text ({exc})"
        ) from None


def _blank(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    trimmed = pc.utf8_trim_whitespace(arr)
    mask = pc.or_kleene(pc.is_null(arr), pc.equal(trimmed, ""))
    return np.asarray(pc.fill_null(mask, True).to_numpy(zero_copy_only=False), dtype=bool)


def _blank_to_null(arr: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.if_else(pa.array(_blank(arr)), pa.scalar(None, arr.type), arr)


def blank_mask(arr: pa.ChunkedArray | pa.Array, path: str | Path, column: str) -> np.ndarray:
    """True where a value is null or only whitespace (``column`` of ``path``, for errors)."""
    return _blank(text_column(arr, path, column))


def blank_to_null(
    arr: pa.ChunkedArray | pa.Array, path: str | Path, column: str
) -> pa.ChunkedArray | pa.Array:
    """Optional text: null where blank, else the value unchanged (as a string)."""
    return _blank_to_null(text_column(arr, path, column))


def _nan_to_null(arr: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Float NaN (how pandas writes a missing value) as null."""
    return pc.if_else(pc.fill_null(pc.is_nan(arr), False), pa.scalar(None, arr.type), arr)


def _non_integral(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Mask of the non-null float values that are not whole numbers (NaN and inf included)."""
    vals = pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        return ~(np.isfinite(vals) & (np.mod(vals, 1) == 0))


def _outside(arr: pa.ChunkedArray | pa.Array, limit: float) -> np.ndarray:
    """Mask of the non-null float values with magnitude >= ``limit``."""
    return np.abs(pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False)) >= float(limit)


def string_ids(
    table: pa.Table, column: str, path: str | Path, *, key: str | None = None
) -> pa.ChunkedArray:
    """An id column as strings; integers are formatted, integral floats too (``3.0`` -> ``3``).

    Raises DataError naming the file and column for null/blank ids (with row numbers); a float
    NaN (a missing value in pandas-written files) counts as blank.
    """
    arr = table.column(column)
    if pa.types.is_floating(arr.type):
        arr = _nan_to_null(arr)
        frac = _non_integral(arr)
        if frac.any():
            bad = pc.filter(arr, pa.array(frac)).to_pylist()
            raise DataError(
                f"{path}: column {column!r} holds non-integer ids, e.g. {examples(bad)}"
            )
        big = _outside(arr, INT64_LIMIT)
        if big.any():
            bad = pc.filter(arr, pa.array(big)).to_pylist()
            raise DataError(
                f"{path}: column {column!r} holds {int(big.sum())} id(s) outside the int64 "
                f"range, e.g. {examples(bad)}"
            )
        arr = arr.cast(pa.int64())
    if not is_text_type(arr.type):
        if any(check(arr.type) for check in NESTED_TYPES):
            raise DataError(
                f"{path}: column {column!r} has type {arr.type}, which is not an id "
                "(nested lists / objects)"
            )
        try:
            arr = arr.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(
                f"{path}: column {column!r} has type {arr.type}, which is not an id ({exc})"
            ) from None
    blank = blank_mask(arr, path, column)
    if blank.any():
        rows = np.nonzero(blank)[0]
        raise DataError(
            f"{path}: column {column!r} is empty in {len(rows)} row(s) "
            f"(data rows {examples((rows + 1).tolist())})"
        )
    return arr


def _text_to_int(arr: pa.ChunkedArray | pa.Array, path: str | Path, column: str) -> pa.Array:
    """Text (blank already null) as int64: digit strings are read exactly; other numbers
    (``15.0``, ``1.5e3``) must be whole and small enough (|x| < 2**53) to read exactly."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    digits = pc.fill_null(pc.match_substring_regex(arr, INT_TEXT), False)
    null = pa.scalar(None, pa.string())
    as_digits = pc.if_else(digits, arr, null)
    as_number = pc.if_else(digits, null, arr)
    try:
        ints = as_digits.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _unparseable(as_digits, pa.int64())
        raise DataError(
            f"{path}: column {column!r} has {len(bad)} value(s) outside the int64 range, "
            f"e.g. {examples(bad)}"
        ) from None
    if as_number.null_count == len(as_number):
        return ints
    try:
        floats = as_number.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _unparseable(as_number, pa.float64())
        raise DataError(
            f"{path}: column {column!r} must hold integers; {len(bad)} value(s) do not "
            f"parse, e.g. {examples(bad)}"
        ) from None
    _reject_non_int64(floats, as_number, path, column)
    _reject(
        _outside(floats, EXACT_FLOAT_INT),
        as_number,
        path,
        column,
        "has {n} value(s) too large to read exactly unless written as plain digits "
        "(otherwise |x| < 2**53)",
    )
    return pc.coalesce(ints, floats.cast(pa.int64()))


def _reject(mask: Any, shown: Any, path: str | Path, column: str, problem: str) -> None:
    """Raise a DataError naming file and column if ``mask`` flags any value of ``shown``."""
    if mask.any():
        bad = pc.filter(shown, pa.array(mask)).to_pylist()
        raise DataError(
            f"{path}: column {column!r} {problem.format(n=len(bad))}, e.g. {examples(bad)}"
        )


def _reject_non_int64(floats: Any, shown: Any, path: str | Path, column: str) -> None:
    """Float values that are fractional or beyond int64 cannot become integer ids or counts."""
    _reject(_non_integral(floats), shown, path, column, "must hold integers; {n} value(s) are not")
    _reject(
        _outside(floats, INT64_LIMIT),
        shown,
        path,
        column,
        "has {n} value(s) outside the int64 range",
    )


def int_column(
    table: pa.Table,
    column: str,
    path: str | Path,
    *,
    nullable: bool = False,
    minimum: int | None = None,
) -> pa.ChunkedArray:
    """An integer column as int64; CSV text such as ``"15"`` or ``"15.0"`` is accepted, and a
    float NaN in a float column (a missing value in pandas-written files) is null.

    Raises DataError naming the file and column for unparseable, non-integer, out-of-range
    (int64), null or too-small values.
    """
    arr = table.column(column)
    if is_text_type(arr.type):
        arr = _text_to_int(blank_to_null(arr, path, column), path, column)
    elif pa.types.is_floating(arr.type):
        arr = _nan_to_null(arr)
        _reject_non_int64(arr, arr, path, column)
        arr = arr.cast(pa.int64())
    elif pa.types.is_integer(arr.type):
        try:
            arr = arr.cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            big = pc.filter(arr, pc.fill_null(pc.greater(arr, INT64_LIMIT - 1), False))
            raise DataError(
                f"{path}: column {column!r} has {len(big)} value(s) outside the int64 range, "
                f"e.g. {examples(big.to_pylist())}"
            ) from None
    else:
        try:
            arr = arr.cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(
                f"{path}: column {column!r} has type {arr.type}, expected integers ({exc})"
            ) from None
    nulls = arr.null_count
    if nulls and not nullable:
        rows = np.nonzero(np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False)))[0]
        raise DataError(
            f"{path}: column {column!r} is empty in {nulls} row(s) "
            f"(data rows {examples((rows + 1).tolist())})"
        )
    if minimum is not None:
        low = pc.fill_null(pc.less(arr, minimum), False)
        n_low = pc.sum(low).as_py() or 0
        if n_low:
            bad = pc.filter(arr, low).to_pylist()
            raise DataError(
                f"{path}: column {column!r} must be >= {minimum}; {n_low} value(s) are not, "
                f"e.g. {examples(bad)}"
            )
    return arr


def float_column(table: pa.Table, column: str, path: str | Path) -> pa.ChunkedArray:
    """A nullable float column; blank text is null; unparseable text is a DataError."""
    arr = table.column(column)
    if is_text_type(arr.type):
        arr = blank_to_null(arr, path, column)
        try:
            return arr.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = _unparseable(arr, pa.float64())
            raise DataError(
                f"{path}: column {column!r} must hold numbers; {len(bad)} value(s) do not "
                f"parse, e.g. {examples(bad)}"
            ) from None
    try:
        return arr.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"{path}: column {column!r} has type {arr.type}, expected numbers ({exc})"
        ) from None


SHAPES = {pa.float64(): FLOAT_TEXT, pa.int64(): INT_TEXT}


def cast_failures(
    arr: pa.ChunkedArray | pa.Array, typ: pa.DataType, shape: str | None = None
) -> np.ndarray:
    """Mask of the non-null values of text ``arr`` that do not cast to ``typ``, vectorised.

    Values not matching the regex ``shape`` (the text forms the cast accepts) fail without a
    cast; the rest are cast in bulk, and only a slice that fails is halved to find its bad rows.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    bad = np.zeros(len(arr), dtype=bool)
    if shape is not None:
        fits = np.asarray(
            pc.fill_null(pc.match_substring_regex(arr, shape), False).to_numpy(
                zero_copy_only=False
            ),
            dtype=bool,
        )
        bad |= valid & ~fits
        valid &= fits
    stack = [np.nonzero(valid)[0]]
    while stack:
        idx = stack.pop()
        if not len(idx):
            continue
        try:
            arr.take(pa.array(idx)).cast(typ)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        if len(idx) == 1:
            bad[idx[0]] = True
        else:
            mid = len(idx) // 2
            stack += [idx[mid:], idx[:mid]]
    return bad


def _unparseable(arr: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> list[Any]:
    """The non-blank values of the text column ``arr`` (in row order) that do not cast to ``typ``."""
    arr = _blank_to_null(arr)
    mask = cast_failures(arr, typ, SHAPES.get(typ))
    return pc.filter(arr, pa.array(mask)).to_pylist()


def check_unique(arr: pa.ChunkedArray | pa.Array, path: str | Path, column: str) -> None:
    """DataError naming the file and column when ids repeat (with the count and examples)."""
    counts = pc.value_counts(arr)
    dup_mask = pc.greater(counts.field("counts"), 1)
    n_dup = pc.sum(dup_mask).as_py() or 0
    if n_dup:
        dups = pc.filter(counts.field("values"), dup_mask).to_pylist()
        raise DataError(
            f"{path}: column {column!r} has {n_dup} duplicate id(s), "
            f"e.g. {examples(sorted(dups, key=str))}"
        )


def missing_refs(
    values: pa.ChunkedArray | pa.Array, known: pa.ChunkedArray | pa.Array
) -> tuple[np.ndarray, list[Any]]:
    """Mask of ``values`` not in ``known`` and the distinct missing values (sorted)."""
    if isinstance(known, pa.ChunkedArray):
        known = known.combine_chunks()
    present = pc.is_in(values, value_set=known)
    mask = ~np.asarray(pc.fill_null(present, False).to_numpy(zero_copy_only=False), dtype=bool)
    missing = sorted({v for v in pc.filter(values, pa.array(mask)).to_pylist()}, key=str)
    return mask, missing


# ----------------------------------------------------------------------------- labels


def map_labels(
    arr: pa.ChunkedArray | pa.Array,
    scheme: LabelScheme,
    path: str | Path,
    column: str,
    *,
    mapping: Mapping[str, str] | None = None,
    allow_unlabelled: bool = False,
    case_insensitive: bool = False,
) -> pa.Array:
    """Map raw label values to the scheme's canonical names.

    ``mapping`` is the accepted raw spelling -> canonical name (default: the scheme's names and
    aliases). With ``allow_unlabelled`` null/blank becomes null (the unlabelled pool), otherwise
    it is an error. Raises DataError naming the file, the column, the bad values and counts.
    """
    if mapping is None:
        mapping = {name: name for name in scheme.labels}
        mapping.update(scheme.aliases)
    if case_insensitive:
        mapping = {k.strip().casefold(): v for k, v in mapping.items()}
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = text_column(arr, path, column)
    enc = pc.dictionary_encode(arr)
    canon: list[str | None] = []
    bad: list[str | None] = []
    for raw in enc.dictionary.to_pylist():
        key = raw.strip().casefold() if (case_insensitive and raw is not None) else raw
        if raw is None or not raw.strip():
            canon.append(None)
            if not allow_unlabelled:
                bad.append(raw)
        elif key in mapping:
            canon.append(mapping[key])
        else:
            canon.append(None)
            bad.append(raw)
    if arr.null_count and not allow_unlabelled:
        bad.append(None)
    if bad:
        counts = {row["values"]: row["counts"] for row in pc.value_counts(arr).to_pylist()}
        shown: dict[str, int] = {}
        for v in bad:
            name = "<empty>" if not v or not v.strip() else v
            shown[name] = shown.get(name, 0) + int(counts.get(v, 0))
        expected = sorted(set(mapping)) if mapping else []
        raise DataError(
            f"{path}: column {column!r} has {sum(shown.values())} row(s) with unknown label(s) "
            f"{shown} for scheme {scheme.name!r}; expected one of {expected}"
            + ("; an empty label means unlabelled here only in pairs tables" if None in bad else "")
        )
    return pc.take(pa.array(canon, pa.string()), enc.indices)


def label_counts(labels: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    return {
        ("unlabelled" if row["values"] is None else row["values"]): int(row["counts"])
        for row in pc.value_counts(labels).to_pylist()
    }


def manifest_stats(
    stats: dict[str, Any], pairs: pa.Table, summary: dict[str, Any], bucket_source: str
) -> dict[str, Any]:
    """The manifest ``stats`` every importer records: its own import counts, where buckets came
    from, the label distribution and the per-split pair and query counts."""
    return {
        "import": stats,
        "bucket_source": bucket_source,
        "label_counts": label_counts(pairs.column("label")),
        "split_pairs": summary["pairs"],
        "split_queries": summary["queries"],
    }


# ----------------------------------------------------------------------------- pairs


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
