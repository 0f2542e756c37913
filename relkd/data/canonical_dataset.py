"""Read and write a canonical dataset folder (Parquet tables + manifest.json).

Writes go to a temporary sibling folder that is renamed into place only once every table and
the manifest are complete, so an interrupted import never leaves a half-written dataset, and an
existing dataset is never overwritten unless asked.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from relkd.data.label_scheme import LabelScheme, get_label_scheme
from relkd.data.manifest import MANIFEST_NAME, Manifest, TableEntry, sha256_file
from relkd.data.schema import REQUIRED_TABLES, TABLES
from relkd.errors import DataError


def conform(table: pa.Table, name: str) -> pa.Table:
    """Cast known columns to their canonical types; keep extra columns as they are.

    Raises DataError naming the table and column for a missing required column or a failed cast.
    """
    schema = TABLES[name]
    missing = [c.name for c in schema.required if c.name not in table.column_names]
    if missing:
        raise DataError(f"table {name}: missing required column(s) {missing}")
    arrays, fields = [], []
    for col_name in table.column_names:
        col = table.column(col_name)
        known = next((c for c in schema.columns if c.name == col_name), None)
        if known is not None and col.type != known.type:
            try:
                col = col.cast(known.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(
                    f"table {name}: column {col_name} has type {col.type}, expected {known.type} ({exc})"
                ) from None
        arrays.append(col)
        fields.append(pa.field(col_name, col.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class CanonicalDataset:
    """A dataset folder: ``items``, ``queries``, ``pairs``, optional ``behavior``, and a manifest."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)

    @property
    def scheme(self) -> LabelScheme:
        return get_label_scheme(self.manifest.label_scheme)

    def has_table(self, name: str) -> bool:
        return name in self.manifest.tables

    def path(self, name: str) -> Path:
        if name not in self.manifest.tables:
            raise DataError(f"{self.root}: dataset has no {name} table")
        return self.root / self.manifest.tables[name].file

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Read a table (memory-mapped); raises DataError naming the file if it is unreadable."""
        path = self.path(name)
        try:
            return pq.read_table(path, columns=columns, memory_map=True)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"{path}: cannot read table {name} ({exc})") from None

    @classmethod
    def write(
        cls,
        root: str | Path,
        tables: dict[str, pa.Table],
        *,
        name: str,
        label_scheme: str,
        source: dict[str, Any],
        stats: dict[str, Any] | None = None,
        overwrite: bool = False,
        row_group_size: int = 256_000,
    ) -> CanonicalDataset:
        """Write ``tables`` as a canonical dataset at ``root`` and return it.

        Args:
            source: how the data was made: ``{"kind": ..., "params": {...}, "inputs": {file: sha256}}``.
            stats: free-form counts to record (label distribution, dropped duplicates, ...).
            overwrite: replace an existing dataset at ``root``; otherwise refuse.
        """
        get_label_scheme(label_scheme)
        shown = Path(root)
        root = shown.resolve()
        _check_target(shown, root, overwrite)
        for required in REQUIRED_TABLES:
            if required not in tables:
                raise DataError(f"dataset {name}: table {required} is required")
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            raise DataError(f"dataset {name}: unknown table(s) {unknown}; known: {sorted(TABLES)}")
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            entries: dict[str, TableEntry] = {}
            for table_name, table in tables.items():
                table = conform(table, table_name)
                file = TABLES[table_name].filename
                pq.write_table(
                    table, staging / file, row_group_size=row_group_size, compression="zstd"
                )
                entries[table_name] = TableEntry(
                    file=file, rows=table.num_rows, sha256=sha256_file(staging / file)
                )
            Manifest(
                name=name,
                label_scheme=label_scheme,
                source=source,
                tables=entries,
                stats=stats or {},
            ).save(staging)
            _swap_into_place(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(shown)


def _check_target(shown: Path, root: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an existing relkd dataset, and never the working folder."""
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"{shown}: exists and is not a folder")
    if not any(root.iterdir()):
        return
    if not overwrite:
        raise DataError(f"{shown}: already exists and is not empty; pass overwrite to replace it")
    if not (root / MANIFEST_NAME).is_file():
        raise DataError(
            f"{shown}: is not a relkd dataset (no {MANIFEST_NAME}); refusing to delete it to overwrite"
        )
    cwd = Path.cwd().resolve()
    if root == cwd or root in cwd.parents:
        raise DataError(
            f"{shown}: is the working folder or one of its parents; refusing to overwrite it"
        )


def _swap_into_place(staging: Path, root: Path) -> None:
    """Move the finished dataset to ``root``; an old dataset there is moved aside first and
    restored if the move fails, so there is no moment without a complete dataset on disk."""
    if root.exists() and not any(root.iterdir()):
        root.rmdir()
    if not root.exists():
        staging.replace(root)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
    backup.rmdir()
    root.replace(backup)
    try:
        staging.replace(root)
    except BaseException:
        backup.replace(root)
        raise
    shutil.rmtree(backup, ignore_errors=True)
