"""Read a loader's input file by extension (CSV, TSV, JSON Lines, Parquet); nothing here opens a
file for writing."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from relkd.data.loaders.loader_options import require_file
from relkd.errors import DataError

CSV_EXTS = (".csv",)


TSV_EXTS = (".tsv", ".tab")


JSONL_EXTS = (".jsonl", ".ndjson", ".json")


PARQUET_EXTS = (".parquet", ".pq", ".parq")


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


__all__ = [
    "CSV_EXTS",
    "JSONL_EXTS",
    "PARQUET_EXTS",
    "TSV_EXTS",
    "parquet_columns",
    "read_delimited",
    "read_jsonl",
    "read_parquet",
    "read_table_file",
]
