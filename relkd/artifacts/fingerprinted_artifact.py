"""The base class of every relkd artifact folder built in one go from known inputs.

An artifact (tokenized store, prompt store, ...) is a folder whose contents are a pure function
of recorded *inputs* (dataset table hashes, tokenizer, template hash, settings). Its
``manifest.json`` holds ``kind``, ``version``, the inputs, their ``fingerprint`` and the size
of every file, and is written last, inside a staging folder that is renamed into place
(relkd/artifacts/atomic_files.py, shared with the dataset and the teacher cache), so a folder
with a manifest is always complete. Opening verifies kind, version, inputs and file sizes; an
artifact built from other inputs raises StaleArtifactError and is never rebuilt silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from relkd.artifacts.atomic_files import atomic_write_json, move_into_place, staged_folder
from relkd.artifacts.identity import json_digest
from relkd.artifacts.manifest_file import read_manifest_file
from relkd.errors import DataError, StaleArtifactError

MANIFEST = "manifest.json"


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``inputs``."""
    return json_digest(inputs)


def folder_name(dataset_name: str, digest: str, tag: str | None = None) -> str:
    """``<dataset>-[<tag>-]<digest[:16]>``, the dataset name made safe for a path."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name)
    return "-".join([safe or "dataset", *([tag] if tag else []), digest[:16]])


def _short(value: Any) -> str:
    return str(value)[:12] if value else "missing"


def input_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Readable differences between an artifact's recorded inputs and the requested ones.

    ``dataset_tables`` (table -> sha256) is compared per table so the message names the table
    that changed; anything else is shown as ``name <recorded> (store) != <wanted> (requested)``.
    """
    out = []
    for name, value in wanted.items():
        have = recorded.get(name)
        if name == "dataset_tables" and isinstance(have, dict) and isinstance(value, dict):
            for table in sorted(set(value) | set(have)):
                if value.get(table) != have.get(table):
                    out.append(
                        f"dataset table {table} sha256 {_short(have.get(table))} (store) "
                        f"!= {_short(value.get(table))} (dataset)"
                    )
        elif have != value:
            out.append(f"{name} {have!r} (store) != {value!r} (requested)")
    return out


class FingerprintedArtifact:
    """Base class of a verified artifact folder with lazily memory-mapped ``.npy`` arrays.

    Subclasses set ``KIND``, ``VERSION`` (and ``VERSION_KEY``) and ``LABEL`` (a human name used in messages) and build
    with :meth:`build_atomically`. Arrays open on first use; pickling keeps only the path and
    the manifest, so DataLoader workers and ddp_spawn children reopen them from disk.
    """

    KIND: ClassVar[str] = "artifact"
    VERSION: ClassVar[int] = 1
    VERSION_KEY: ClassVar[str] = "version"  # the manifest field holding VERSION
    LABEL: ClassVar[str] = "artifact"

    def __init__(self, root: str | Path, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._arrays: dict[str, np.ndarray] = {}
        self._views: dict[str, np.ndarray] = {}

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def read_manifest(cls, root: str | Path, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        """The verified manifest of ``root``: kind, version and (when given) inputs match.

        Raises DataError naming the file for a missing, corrupt or foreign manifest and
        StaleArtifactError for another version or other inputs.
        """
        root = Path(root)
        path = root / MANIFEST
        manifest = read_manifest_file(
            path,
            f"missing; {root} is not a complete {cls.LABEL}; delete the folder to rebuild it",
            f"; delete {root} to rebuild",
        )
        if manifest.get("kind") != cls.KIND:
            raise DataError(f"{path}: kind is {manifest.get('kind')!r}, not {cls.KIND!r}")
        version = manifest.get(cls.VERSION_KEY)
        if version != cls.VERSION:
            raise StaleArtifactError(
                f"{root}: {cls.LABEL} version {version} != {cls.VERSION} read by this relkd; "
                f"delete {root} to rebuild it"
            )
        if inputs is not None:
            diffs = input_differences(manifest.get("inputs", {}), inputs)
            if diffs:
                raise StaleArtifactError(
                    f"{root}: {cls.LABEL} is stale, built from other inputs (field inputs of "
                    f"{path}): "
                    + "; ".join(diffs)
                    + f". Delete {root} (or choose another cache_dir) to rebuild it."
                )
        return manifest

    def verify_files(self) -> None:
        """Every file the manifest lists exists with its recorded size."""
        for name, size in self.manifest["files"].items():
            path = self.root / name
            if not path.is_file():
                raise DataError(
                    f"{path}: missing from {self.LABEL} {self.root}; delete it to rebuild"
                )
            actual = path.stat().st_size
            if actual != size:
                raise DataError(
                    f"{path}: corrupt, {actual} bytes where the {self.LABEL} manifest records "
                    f"{size}; delete {self.root} to rebuild"
                )

    # -- building ------------------------------------------------------------------------

    @classmethod
    def build_atomically(
        cls,
        root: str | Path,
        inputs: Mapping[str, Any],
        write: Callable[[Path], dict[str, Any]],
    ) -> dict[str, Any]:
        """Run ``write(staging)`` (which writes files and returns extra manifest fields), record
        file sizes, write the manifest last and rename the staging folder to ``root``.

        An existing ``root`` is refused. If another process finished the same artifact first,
        its copy wins and ours is discarded. Returns the manifest.
        """
        root = Path(root)
        if root.exists():
            raise DataError(f"{root}: already exists; refusing to overwrite a {cls.LABEL}")
        with staged_folder(root) as staging:
            extra = write(staging)
            manifest = {
                "kind": cls.KIND,
                cls.VERSION_KEY: cls.VERSION,
                "fingerprint": fingerprint(dict(inputs)),
                "inputs": dict(inputs),
                **extra,
            }
            manifest["files"] = {
                f: (staging / f).stat().st_size for f in sorted(os.listdir(staging))
            }
            atomic_write_json(staging / MANIFEST, manifest)
            move_into_place(staging, root)  # False: a concurrent builder's copy won; keep it
        return manifest

    # -- arrays --------------------------------------------------------------------------

    def array(self, name: str) -> np.ndarray:
        """An array by name (memory-mapped, read-only), opened on first use."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._open_array(name)
            self._arrays[name] = arr
        return arr

    def view(self, name: str) -> np.ndarray:
        """``array(name)`` as a plain ndarray view: indexing skips np.memmap's per-call overhead."""
        arr = self._views.get(name)
        if arr is None:
            arr = self.array(name).view(np.ndarray)
            self._views[name] = arr
        return arr

    def has_array(self, name: str) -> bool:
        return f"{name}.npy" in self.manifest.get("files", {})

    def _open_array(self, name: str) -> np.ndarray:
        path = self.root / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read {self.LABEL} file ({exc})") from None
        expected = self.expected_rows(name)
        if expected is not None and arr.shape[0] != expected:
            raise DataError(f"{path}: corrupt, {arr.shape[0]} rows where {expected} are expected")
        return arr

    def expected_rows(self, name: str) -> int | None:
        """Rows array ``name`` must have (None = not checked); subclasses know their layout."""
        return None

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root = state["root"]
        self.manifest = state["manifest"]
        self._arrays = {}
        self._views = {}
