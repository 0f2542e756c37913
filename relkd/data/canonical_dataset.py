"""Read and write a canonical dataset folder (Parquet tables + manifest.json).

Writes go to a temporary sibling folder that is renamed into place only once every table and
the manifest are complete (relkd/artifacts/atomic_files.py), so an interrupted import never
leaves a half-written dataset, and an existing dataset is never overwritten unless asked.
Readers call :meth:`CanonicalDataset.verify` (``table`` does it implicitly) so a table edited
after its manifest was written is refused instead of silently mixed with artifacts built from
the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from relkd.artifacts.atomic_files import (
    check_file_record,
    check_replaceable,
    file_record,
    move_into_place,
    staged_folder,
)
from relkd.data.label_scheme import LabelScheme, get_label_scheme
from relkd.data.manifest import MANIFEST_NAME, Manifest, TableEntry
from relkd.data.schema import REQUIRED_TABLES, TABLES
from relkd.errors import DataError

# Files this process has already verified: (path, device, inode, size, mtime_ns) -> sha256.
# A dataset copied without its mtimes fails the cheap check; this keeps each of the several
# CanonicalDataset objects one run opens from hashing it again.
_VERIFIED: dict[tuple[str, int, int, int, int], str] = {}


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
        self._verified: dict[str, str] | None = None

    @property
    def scheme(self) -> LabelScheme:
        return get_label_scheme(self.manifest.label_scheme)

    def has_table(self, name: str) -> bool:
        return name in self.manifest.tables

    def path(self, name: str) -> Path:
        if name not in self.manifest.tables:
            raise DataError(f"{self.root}: dataset has no {name} table")
        file = str(self.manifest.tables[name].file)
        if not file or Path(file).name != file or file in (".", ".."):
            raise DataError(
                f"{self.root / MANIFEST_NAME}: field tables.{name}.file: {file!r} is not a file "
                "name inside the dataset folder"
            )
        return self.root / file

    def verify(self) -> dict[str, str]:
        """Check every table file against the manifest; returns table -> verified sha256.

        Size and mtime equal to the recorded ones count as unchanged; otherwise (or for a
        manifest without them) the file is hashed. The result is cached on the instance.
        Raises StaleArtifactError naming the file when its content changed, DataError when
        it is missing.
        """
        if self._verified is None:
            self._verified = {
                name: self._verify_table(name, entry)
                for name, entry in sorted(self.manifest.tables.items())
            }
        return dict(self._verified)

    def _verify_table(self, name: str, entry: TableEntry) -> str:
        path = self.path(name)
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        key = None
        if st is not None:
            key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if _VERIFIED.get(key) == entry.sha256:
                return entry.sha256
        digest = check_file_record(path, entry.record(), self.root / MANIFEST_NAME)
        if key is not None:
            _VERIFIED[key] = digest
        return digest

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Read a table (memory-mapped) of a verified dataset (see :meth:`verify`); raises
        DataError naming the file if it is unreadable."""
        self.verify()
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
        with staged_folder(root) as staging:
            entries: dict[str, TableEntry] = {}
            for table_name, table in tables.items():
                table = conform(table, table_name)
                file = TABLES[table_name].filename
                pq.write_table(
                    table, staging / file, row_group_size=row_group_size, compression="zstd"
                )
                entries[table_name] = TableEntry(
                    file=file, rows=table.num_rows, **file_record(staging / file)
                )
            Manifest(
                name=name,
                label_scheme=label_scheme,
                source=source,
                tables=entries,
                stats=stats or {},
            ).save(staging)
            _check_target(shown, root, overwrite)  # again: the target may have changed meanwhile
            if not move_into_place(staging, root, replace=overwrite):
                raise DataError(
                    f"{shown}: was created by another process while writing; pass overwrite to "
                    "replace it"
                )
        return cls(shown)


def _check_target(shown: Path, root: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an existing relkd dataset, and never the working folder."""
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        return
    if root.is_dir() and not overwrite:
        raise DataError(f"{shown}: already exists and is not empty; pass overwrite to replace it")
    owned = (root / MANIFEST_NAME).is_file()
    check_replaceable(root, shown, owned, f"relkd dataset (no {MANIFEST_NAME})")
