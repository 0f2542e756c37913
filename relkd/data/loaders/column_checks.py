"""Typed columns whose errors name the file and the column: required columns, text, ids, int and
float columns with the values that fail, uniqueness, dangling references."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from relkd.data.loaders.loader_options import examples
from relkd.errors import DataError

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


__all__ = [
    "EXACT_FLOAT_INT",
    "FLOAT_TEXT",
    "INT64_LIMIT",
    "INT_TEXT",
    "NESTED_TYPES",
    "SHAPES",
    "blank_mask",
    "blank_to_null",
    "cast_failures",
    "check_unique",
    "float_column",
    "int_column",
    "is_text_type",
    "missing_refs",
    "require_columns",
    "string_ids",
    "text_column",
]
