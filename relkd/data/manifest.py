"""Dataset and artifact manifests: schema version, label scheme, row counts and content hashes.

A manifest is written last, after every table is on disk, so a folder with a manifest is a
complete dataset. Each table entry also records the file's size and mtime so readers can notice
an in-place edit cheaply (CanonicalDataset.verify); ``relkd data validate`` always recomputes
every hash.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from relkd import __version__
from relkd.artifacts.atomic_files import atomic_write_json, sha256_file
from relkd.artifacts.manifest_file import read_manifest_file
from relkd.data.schema import SCHEMA_VERSION
from relkd.errors import DataError

MANIFEST_NAME = "manifest.json"
__all__ = ["MANIFEST_NAME", "Manifest", "TableEntry", "sha256_file"]


@dataclass
class TableEntry:
    """One table file. ``bytes``/``mtime_ns`` (absent in manifests written before they existed)
    let a reader skip re-hashing an untouched file; without them it hashes the file."""

    file: str
    rows: int
    sha256: str
    bytes: int | None = None
    mtime_ns: int | None = None
    seal: str | None = None  # binds bytes and mtime_ns to sha256 (atomic_files.record_seal)

    def record(self) -> dict[str, Any]:
        """The entry as an atomic_files record, for ``check_file_record``."""
        return {
            "bytes": self.bytes,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "seal": self.seal,
        }

    def to_dict(self) -> dict[str, Any]:
        """Fields to store; unknown size/mtime are left out so an old manifest saves unchanged."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Manifest:
    """What a dataset folder holds and how it was made."""

    name: str
    label_scheme: str
    source: dict[str, Any]
    tables: dict[str, TableEntry]
    schema_version: int = SCHEMA_VERSION
    relkd_version: str = __version__
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tables"] = {name: entry.to_dict() for name, entry in self.tables.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, root: str | Path) -> Path:
        """Write ``manifest.json`` atomically (synced temp file renamed over the old one)."""
        path = Path(root) / MANIFEST_NAME
        atomic_write_json(path, self.to_dict())  # same bytes as to_json() + newline
        return path

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        path = Path(root) / MANIFEST_NAME
        raw = read_manifest_file(path, f"no manifest; is {root} a relkd dataset folder?")
        missing = [
            k
            for k in ("name", "label_scheme", "source", "tables", "schema_version")
            if k not in raw
        ]
        if missing:
            raise DataError(f"{path}: manifest is missing field(s) {missing}")
        if raw["schema_version"] != SCHEMA_VERSION:
            raise DataError(
                f"{path}: field schema_version is {raw['schema_version']}, this relkd reads "
                f"{SCHEMA_VERSION}; re-import the dataset"
            )
        try:
            tables = {name: TableEntry(**entry) for name, entry in raw["tables"].items()}
        except TypeError as exc:
            raise DataError(f"{path}: field tables is malformed ({exc})") from None
        return cls(
            name=raw["name"],
            label_scheme=raw["label_scheme"],
            source=raw["source"],
            tables=tables,
            schema_version=raw["schema_version"],
            relkd_version=raw.get("relkd_version", "unknown"),
            stats=raw.get("stats", {}),
        )
