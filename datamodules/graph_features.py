"""Click-graph fields of a batch: BERM's metapath neighbours and the clicked/cold eval slice.

For each metapath ``m`` in ``spec.metapaths`` (``qiq``: the pair's query's neighbour queries;
``iqi``: the pair's item's neighbour items) and each order ``o <= spec.order`` a batch gets:

- ``<m><o>_ids``    int64 [B, top_k, neighbor_tokens]: the neighbours' first tokens (no specials);
- ``<m><o>_mask``   int64 [B, top_k, neighbor_tokens]: 1 on real tokens (all 0 for a missing one);
- ``<m><o>_weight`` float32 [B, top_k]: the metapath weights (0 for a missing neighbour).

With ``spec.slices`` every batch also carries ``clicked`` (int64 [B]): 1 when both the pair's
query and its item have a click in the graph (warm), 0 otherwise (cold); the metrics report
each slice. Both read the graph built under ``spec.eval_queries``, so with ``hidden`` the val
and test queries are cold by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from relkd.behavior.click_graph_artifact import ClickGraphArtifact
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError


@dataclass(frozen=True)
class ClickGraphSpec:
    """What batches read from the click graph (see experiments/base.yaml, data.click_graph)."""

    cache_dir: str = "data_cache/graphs"
    top_k: int = 8
    min_clicks: int = 1
    eval_queries: str = "logs"
    neighbor_tokens: int = 16
    slices: bool = True
    metapaths: tuple[str, ...] = ()
    order: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metapaths"] = list(self.metapaths)
        return d

    @property
    def groups(self) -> list[tuple[str, int]]:
        """(metapath, order) pairs the batches carry, in a fixed order."""
        return [(m, o) for m in self.metapaths for o in range(1, self.order + 1)]


def first_tokens(tokens: np.ndarray, offsets: np.ndarray, rows: np.ndarray, width: int) -> tuple:
    """First ``width`` tokens of each row in ``rows`` (-1 = none): (ids, mask), [N, width]."""
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    starts = np.asarray(offsets[safe], np.int64)
    lengths = np.where(
        valid, np.minimum(np.asarray(offsets[safe + 1], np.int64) - starts, width), 0
    )
    cols = np.arange(width)[None, :]
    mask = cols < lengths[:, None]
    ids = np.zeros((len(rows), width), np.int64)
    if len(tokens):
        ids[mask] = tokens[(starts[:, None] + cols)[mask]]
    return ids, mask.astype(np.int64)


class GraphFeatures:
    """Adds the click-graph fields to a batch from its query and item rows."""

    def __init__(self, spec: ClickGraphSpec, graph: ClickGraphArtifact, store: Any) -> None:
        self.spec = spec
        self.graph = graph
        self.store = store

    @classmethod
    def open(
        cls, spec: ClickGraphSpec, dataset: CanonicalDataset, store: Any, build: bool
    ) -> GraphFeatures | None:
        """None when nothing is asked for, or only slices of a dataset without behaviour."""
        if not spec.metapaths and not spec.slices:
            return None
        if not dataset.has_table("behavior"):
            if spec.metapaths:
                raise ConfigError(
                    f"{dataset.root}: model.berm.metapaths {list(spec.metapaths)} read the click "
                    "graph, but the dataset has no behavior table (use metapaths: [] for 0-order)"
                )
            return None
        graph = ClickGraphArtifact.open_or_build(
            dataset,
            spec.cache_dir,
            min_clicks=spec.min_clicks,
            eval_queries=spec.eval_queries,
            top_k=spec.top_k,
            build=build,
        )
        return cls(spec, graph, store)

    def __call__(self, q_row: np.ndarray, i_row: np.ndarray) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        g, s, width = self.graph, self.store, self.spec.neighbor_tokens
        if self.spec.slices:
            warm = (g.query_clicks()[q_row] > 0) & (g.item_clicks()[i_row] > 0)
            out["clicked"] = torch.from_numpy(warm.astype(np.int64))
        for kind, order in self.spec.groups:
            nb = g.neighbors(kind, order)
            owner = q_row if kind == "qiq" else i_row
            side = "query" if kind == "qiq" else "item"
            rows = np.asarray(nb.index[owner], np.int64)  # [B, k]
            b, k = rows.shape
            ids, mask = first_tokens(
                s.view(f"{side}_tokens"), s.view(f"{side}_offsets"), rows.reshape(-1), width
            )
            out[f"{kind}{order}_ids"] = torch.from_numpy(ids.reshape(b, k, width))
            out[f"{kind}{order}_mask"] = torch.from_numpy(mask.reshape(b, k, width))
            out[f"{kind}{order}_weight"] = torch.from_numpy(
                np.asarray(nb.weight[owner], np.float32)
            )
        return out
