"""A derived canonical dataset whose test queries are perturbed: built once, verified on reuse.

``<dataset_root>/<source folder>-perturb-<kind>-<fingerprint>`` is a copy of a canonical
dataset in which only the ``text`` of the queries of the perturbed split (test) is replaced.
``items``, ``pairs`` and ``behavior`` are byte-for-byte copies of the source's files (same
sha256), so query_ids, pair_ids, items, labels and splits are the source's; train and val query
texts are unchanged. Its manifest records the source's table hashes, the kind, the seed and
:data:`~relkd.perturb.query_perturber.PERTURBATION_VERSION`; the fingerprint in the folder name
hashes exactly those. Like every relkd artifact the folder is written in a staging sibling and
renamed into place, an existing one is reused only when its manifest matches (and its tables
verify), and one that does not match is refused with StaleArtifactError, never rebuilt. The
source dataset is only read.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relkd.artifacts.atomic_files import file_record, move_into_place, staged_folder
from relkd.artifacts.identity import json_digest
from relkd.data.canonical_dataset import CanonicalDataset, conform
from relkd.data.manifest import MANIFEST_NAME, Manifest, TableEntry
from relkd.data.schema import SPLITS
from relkd.errors import DataError, StaleArtifactError
from relkd.perturb.query_perturber import PERTURBATION_VERSION, QueryPerturber

SOURCE_KIND = "perturbed"


@dataclass(frozen=True)
class PerturbedDataset:
    """An opened derived dataset and what its perturbation did."""

    root: Path
    kind: str
    queries: int  # queries of the perturbed split
    changed: int  # of them, how many the perturbation changed
    built: bool  # True: written by this call; False: an existing folder was reused

    @property
    def changed_fraction(self) -> float:
        return self.changed / self.queries if self.queries else 0.0

    @property
    def dataset(self) -> CanonicalDataset:
        return CanonicalDataset(self.root)

    @classmethod
    def open_or_build(
        cls,
        source: str | Path | CanonicalDataset,
        kind: str,
        dataset_root: str | Path,
        *,
        seed: int = 0,
        split: str = "test",
    ) -> PerturbedDataset:
        """The derived dataset of ``source`` for ``kind`` under ``dataset_root``.

        Raises ConfigError for an unknown kind, DataError for a bad split or an unreadable
        source, and StaleArtifactError naming the folder when it exists but was built from other
        inputs (or a table in it was edited since).
        """
        perturber = QueryPerturber(kind, seed)
        if split not in SPLITS:
            raise DataError(f"split {split!r}: not one of {SPLITS}")
        src = source if isinstance(source, CanonicalDataset) else CanonicalDataset(source)
        tables = src.verify()  # refuse a source table edited since its manifest was written
        wanted = expected_source(tables, src.manifest.name, kind, seed, split)
        root = Path(dataset_root) / f"{src.root.name}-perturb-{kind}-{wanted['fingerprint'][:10]}"
        if (root / MANIFEST_NAME).is_file():
            return cls._reuse(root, kind, wanted)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StaleArtifactError(
                f"{root}: exists without a {MANIFEST_NAME} (interrupted build?); delete it to "
                "rebuild the perturbed dataset"
            )
        queries, changed = _write(src, root, perturber, split, wanted)
        if queries is None:  # another process finished the same folder first: check theirs
            return cls._reuse(root, kind, wanted)
        return cls(root, kind, queries, changed, built=True)

    @classmethod
    def _reuse(cls, root: Path, kind: str, wanted: dict[str, Any]) -> PerturbedDataset:
        ds = CanonicalDataset(root)
        have = ds.manifest.source
        diffs = [
            f"{key} {json.dumps(have.get(key), sort_keys=True)[:80]} (folder) != "
            f"{json.dumps(wanted[key], sort_keys=True)[:80]} (requested)"
            for key in wanted
            if have.get(key) != wanted[key]
        ]
        if diffs:
            raise StaleArtifactError(
                f"{root}: perturbed dataset manifest does not match this request ("
                + "; ".join(diffs)
                + "); delete the folder to rebuild it"
            )
        ds.verify()  # a table edited after the build is refused too
        stats = ds.manifest.stats.get("perturbation", {})
        if not isinstance(stats.get("queries"), int) or not isinstance(stats.get("changed"), int):
            raise DataError(
                f"{root / MANIFEST_NAME}: field stats.perturbation lacks integer queries and "
                "changed counts; delete the folder to rebuild it"
            )
        return cls(root, kind, stats["queries"], stats["changed"], built=False)


def expected_source(
    tables: dict[str, str], name: str, kind: str, seed: int, split: str
) -> dict[str, Any]:
    """The ``source`` a derived manifest must hold: its inputs and their fingerprint."""
    params = {
        "kind": kind,
        "seed": seed,
        "split": split,
        "perturbation_version": PERTURBATION_VERSION,
    }
    inputs = {"dataset": name, "tables": dict(sorted(tables.items()))}
    return {
        "kind": SOURCE_KIND,
        "params": params,
        "inputs": inputs,
        "fingerprint": json_digest({"params": params, "inputs": inputs}),
    }


def split_query_ids(dataset: CanonicalDataset, split: str) -> pa.Array:
    """The distinct query_ids of ``split``'s pairs (labelled or not)."""
    pairs = dataset.table("pairs", columns=["query_id", "split"])
    return pc.unique(pairs.filter(pc.equal(pairs["split"], split))["query_id"])


def _write(
    src: CanonicalDataset,
    root: Path,
    perturber: QueryPerturber,
    split: str,
    source: dict[str, Any],
) -> tuple[int | None, int]:
    """Build the folder; returns (queries of ``split``, changed), or (None, 0) when another
    process created ``root`` meanwhile."""
    queries = src.table("queries")
    in_split = pc.is_in(queries["query_id"], value_set=split_query_ids(src, split)).to_pylist()
    ids = queries["query_id"].to_pylist()
    texts = queries["text"].to_pylist()
    new_texts = [
        perturber(text, qid) if chosen else text
        for qid, text, chosen in zip(ids, texts, in_split, strict=True)
    ]
    changed = sum(a != b for a, b in zip(texts, new_texts, strict=True))
    total = sum(in_split)
    column = queries.column_names.index("text")
    queries = queries.set_column(
        column, queries.schema.field(column), pa.array(new_texts, pa.string())
    )
    with staged_folder(root) as staging:
        entries: dict[str, TableEntry] = {}
        for name, entry in src.manifest.tables.items():
            target = staging / entry.file
            if name == "queries":
                pq.write_table(conform(queries, name), target, compression="zstd")
            else:
                shutil.copyfile(src.path(name), target)
            record = file_record(target)
            if name != "queries" and record["sha256"] != entry.sha256:
                raise DataError(
                    f"{src.path(name)}: changed while being copied to {root}; try again"
                )
            entries[name] = TableEntry(file=entry.file, rows=entry.rows, **record)
        stats = {
            **src.manifest.stats,
            "perturbation": {
                "kind": perturber.kind,
                "split": split,
                "queries": total,
                "changed": changed,
                "changed_fraction": changed / total if total else 0.0,
                "source_root": str(src.root),
            },
        }
        Manifest(
            name=f"{src.manifest.name}-perturb-{perturber.kind}",
            label_scheme=src.manifest.label_scheme,
            source=source,
            tables=entries,
            stats=stats,
        ).save(staging)
        if not move_into_place(staging, root):
            return None, 0
    return total, changed
