"""Dataset and artifact manifests: schema version, label scheme, row counts and content hashes.

A manifest is written last, after every table is on disk, so a folder with a manifest is a
complete dataset; ``relkd data validate`` recomputes each hash to catch edits and corruption.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from relkd import __version__
from relkd.artifacts.manifest_file import read_manifest_file
from relkd.data.schema import SCHEMA_VERSION
from relkd.errors import DataError

MANIFEST_NAME = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class TableEntry:
    file: str
    rows: int
    sha256: str


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def save(self, root: str | Path) -> Path:
        path = Path(root) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)
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
