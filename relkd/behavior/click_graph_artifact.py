"""The click graph's per-node arrays, precomputed once per dataset and settings.

Layout of ``<cache_dir>/<dataset>-<fingerprint>/``::

    manifest.json          inputs (dataset table hashes, min_clicks, eval_queries, top_k), counts
    query_clicks.npy       int64 [num_queries] clicks on the query's edges (0 = cold query)
    item_clicks.npy        int64 [num_items]
    {qiq,iqi}{1,2}_index.npy   int32 [nodes, top_k] metapath neighbours of order 1 and 2, -1 pad
    {qiq,iqi}{1,2}_weight.npy  float32 [nodes, top_k] their cosine weights

Both metapaths and both orders are always stored (they cost seconds), so every BERM ablation
reads one artifact. It is built on first use or by ``relkd graph build``, atomically, and an
artifact built from other inputs (an edited behaviour table, another eval_queries) is refused.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from relkd.artifacts import FingerprintedArtifact, fingerprint, folder_name
from relkd.behavior.behavior_log import BehaviorLog
from relkd.behavior.click_graph import METAPATHS, ClickGraph, Neighbors
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import DataError

ORDERS = (1, 2)


def graph_inputs(
    dataset: CanonicalDataset, min_clicks: int, eval_queries: str, top_k: int
) -> dict[str, Any]:
    """Everything the arrays depend on (the fingerprint names the folder)."""
    verified = dataset.verify()
    return {
        "dataset_name": dataset.manifest.name,
        "dataset_tables": {t: verified[t] for t in sorted(verified)},
        "min_clicks": int(min_clicks),
        "eval_queries": eval_queries,
        "top_k": int(top_k),
    }


class ClickGraphArtifact(FingerprintedArtifact):
    """A verified click-graph folder; arrays are memory-mapped on first use."""

    KIND = "click_graph"
    VERSION = 1
    LABEL = "click graph"

    @classmethod
    def open_or_build(
        cls,
        dataset: CanonicalDataset,
        cache_dir: str | Path,
        *,
        min_clicks: int = 1,
        eval_queries: str = "logs",
        top_k: int = 8,
        build: bool = True,
    ) -> ClickGraphArtifact:
        """Open the artifact for these inputs, building it first if its folder is missing."""
        inputs = graph_inputs(dataset, min_clicks, eval_queries, top_k)
        root = Path(cache_dir) / folder_name(inputs["dataset_name"], fingerprint(inputs))
        if not root.exists():
            if not build:
                raise DataError(f"{root}: click graph not built yet (run `relkd graph build`)")
            cls._build(root, dataset, inputs)
        manifest = cls.read_manifest(root, inputs)
        artifact = cls(root, manifest)
        artifact.verify_files()
        return artifact

    @classmethod
    def _build(cls, root: Path, dataset: CanonicalDataset, inputs: dict[str, Any]) -> None:
        t0 = time.perf_counter()

        def write(staging: Path) -> dict[str, Any]:
            log = BehaviorLog.from_dataset(dataset, inputs["eval_queries"])
            graph = ClickGraph(log, inputs["min_clicks"])
            t_matrix = time.perf_counter() - t0
            q_clicks, i_clicks = graph.query_clicks(), graph.item_clicks()
            np.save(staging / "query_clicks.npy", q_clicks)
            np.save(staging / "item_clicks.npy", i_clicks)
            for kind in METAPATHS:
                for order in ORDERS:
                    nb = graph.metapath(kind, order, inputs["top_k"])
                    np.save(staging / f"{kind}{order}_index.npy", nb.index)
                    np.save(staging / f"{kind}{order}_weight.npy", nb.weight)
            return {
                "log_rows": len(log.query_row),
                "edges": int(graph.clicks.nnz),
                "queries_with_clicks": int((q_clicks > 0).sum()),
                "items_with_clicks": int((i_clicks > 0).sum()),
                "matrix_seconds": round(t_matrix, 3),
                "build_seconds": round(time.perf_counter() - t0, 3),
            }

        cls.build_atomically(root, inputs, write)

    def neighbors(self, kind: str, order: int) -> Neighbors:
        if kind not in METAPATHS or order not in ORDERS:
            raise ValueError(f"no metapath {kind}{order} (kinds {METAPATHS}, orders {ORDERS})")
        return Neighbors(self.view(f"{kind}{order}_index"), self.view(f"{kind}{order}_weight"))

    def query_clicks(self) -> np.ndarray:
        return self.view("query_clicks")

    def item_clicks(self) -> np.ndarray:
        return self.view("item_clicks")
