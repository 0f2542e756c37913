"""The user sequences (relkd/behavior/user_sequences.py), precomputed once per dataset.

Layout of ``<cache_dir>/<dataset>-<fingerprint>/``::

    manifest.json        inputs (dataset table hashes), counts, t0
    ev_*.npy             every log event, by (user, time, position)
    cl_*.npy             the clicked events and each user's offset into them
    ctx_*.npy            per pairs-table row: its context user and time, clicked then
    item_attr.npy        int32 [items, 3] brand, colour and type codes

Built on first use or by ``relkd sequences build``, atomically; an artifact built from other
inputs (an edited behaviour table) is refused, never rebuilt silently.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from relkd.artifacts import FingerprintedArtifact, fingerprint, folder_name
from relkd.behavior.user_sequences import UserSequences
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import DataError

ARRAYS = tuple(f.name for f in dataclasses.fields(UserSequences) if f.name != "t0")


def sequence_inputs(dataset: CanonicalDataset) -> dict[str, Any]:
    """Everything the arrays depend on (the fingerprint names the folder)."""
    verified = dataset.verify()
    return {
        "dataset_name": dataset.manifest.name,
        "dataset_tables": {t: verified[t] for t in sorted(verified)},
    }


class SequenceArtifact(FingerprintedArtifact):
    """A verified user-sequence folder; arrays are memory-mapped on first use."""

    KIND = "user_sequences"
    VERSION = 1
    LABEL = "user sequences"

    @classmethod
    def open_or_build(
        cls, dataset: CanonicalDataset, cache_dir: str | Path, build: bool = True
    ) -> SequenceArtifact:
        """Open the artifact of this dataset, building it first if its folder is missing."""
        inputs = sequence_inputs(dataset)
        root = Path(cache_dir) / folder_name(inputs["dataset_name"], fingerprint(inputs))
        if not root.exists():
            if not build:
                raise DataError(
                    f"{root}: user sequences not built yet (run `relkd sequences build`)"
                )
            cls._build(root, dataset, inputs)
        artifact = cls(root, cls.read_manifest(root, inputs))
        artifact.verify_files()
        return artifact

    @classmethod
    def _build(cls, root: Path, dataset: CanonicalDataset, inputs: dict[str, Any]) -> None:
        t_start = time.perf_counter()

        def write(staging: Path) -> dict[str, Any]:
            seq = UserSequences.from_dataset(dataset)
            for name in ARRAYS:
                np.save(staging / f"{name}.npy", getattr(seq, name))
            has_ctx = seq.ctx_user >= 0
            return {
                "t0": seq.t0,
                "events": len(seq.ev_user),
                "clicks": len(seq.cl_key),
                "users": seq.num_users,
                "pairs_with_context": int(has_ctx.sum()),
                "pairs": len(seq.ctx_user),
                "attr_sizes": seq.attr_sizes(),
                "build_seconds": round(time.perf_counter() - t_start, 3),
            }

        cls.build_atomically(root, inputs, write)

    def sequences(self) -> UserSequences:
        """The arrays as a UserSequences (memory-mapped views)."""
        return UserSequences(**{n: self.view(n) for n in ARRAYS}, t0=int(self.manifest["t0"]))
