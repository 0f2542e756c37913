"""Click-graph fields of a batch: BERM's metapath neighbours and the clicked/cold eval slice."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


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


class GraphFeatures:
    """Per batch: the ``clicked`` slice and the metapath neighbours' tokens (in progress)."""

    @classmethod
    def open(
        cls, spec: ClickGraphSpec, dataset: Any, store: Any, build: bool
    ) -> GraphFeatures | None:
        return None

    def __call__(self, q_row: np.ndarray, i_row: np.ndarray) -> dict[str, torch.Tensor]:
        return {}
