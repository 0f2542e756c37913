"""Behaviour-sequence fields of a batch (the SEMINAR student): each row's user history.

Every example has a *context* ``(user, t)``: a pair's is its query's last search in the log
(relkd/behavior/user_sequences.py); a log event's (``train_on: events``, pretraining) is its own.
Its history is that user's clicked (query, item) pairs strictly before ``t``, the most recent
``max_length``, oldest first, never the target pair itself. A batch gets (B rows, L history
events, Tq / Ti tokens, N negatives, 3 attribute codes):

- ``seq_query_ids/_mask`` [B, Tq], ``seq_item_ids/_mask`` [B, Ti]: the target's first tokens
  (no specials); ``seq_query_row``, ``seq_item_row`` [B] its query and catalogue rows;
  ``seq_item_attr`` [B, 3];
- ``hist_query_ids/_mask`` [B, L, Tq], ``hist_item_ids/_mask`` [B, L, Ti], ``hist_query_row``,
  ``hist_item_row`` [B, L] (0 on padding), ``hist_item_attr`` [B, L, 3], ``hist_mask`` [B, L]
  (1 on real events);
- ``neg_item_ids/_mask`` [B, N, Ti], ``neg_item_row`` [B, N], ``neg_item_attr`` [B, N, 3]:
  catalogue items drawn uniformly (next_pair's sampled negatives);
- ``event_clicked`` [B]: the target pair was clicked at its context (the next pair chosen).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from datamodules.graph_features import first_tokens
from relkd.behavior.sequence_artifact import SequenceArtifact
from relkd.behavior.user_sequences import UserSequences
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import SPLITS
from relkd.errors import ConfigError


@dataclass(frozen=True)
class SequenceSpec:
    """What batches read from the user sequences (experiments/base.yaml, data.sequences)."""

    cache_dir: str = "data_cache/sequences"
    max_length: int = 64
    query_tokens: int = 8
    item_tokens: int = 16
    negatives: int = 8
    train_on: str = "pairs"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SequenceFeatures:
    """Adds the history fields to a batch from its store rows (and log events)."""

    def __init__(
        self,
        spec: SequenceSpec,
        artifact: SequenceArtifact,
        store: Any,
        pair_row: np.ndarray,
        seed: int,
    ) -> None:
        self.spec = spec
        self.artifact = artifact
        self.seq: UserSequences = artifact.sequences()
        self.store = store
        self.pair_row = pair_row  # store row -> pairs-table row
        self.rng = np.random.default_rng(seed)
        self.num_items = len(self.seq.item_attr)

    @classmethod
    def open(
        cls, spec: SequenceSpec, dataset: CanonicalDataset, store: Any, build: bool, seed: int = 0
    ) -> SequenceFeatures:
        if not dataset.has_table("behavior"):
            raise ConfigError(
                f"{dataset.root}: model.student seminar reads user histories, but the dataset "
                "has no behavior table"
            )
        artifact = SequenceArtifact.open_or_build(dataset, spec.cache_dir, build=build)
        pair_ids = np.asarray(dataset.table("pairs", ["pair_id"])["pair_id"].to_numpy(), np.int64)
        order = np.argsort(pair_ids, kind="stable")
        store_ids = np.asarray(store.array("pair_id"), np.int64)
        at = np.minimum(np.searchsorted(pair_ids[order], store_ids), len(order) - 1)
        if not np.array_equal(pair_ids[order][at], store_ids):
            raise ConfigError(f"{store.root}: pair_ids differ from {dataset.root}'s pairs table")
        return cls(spec, artifact, store, order[at].astype(np.int64), seed)

    # ---- events (pretraining rows) ----
    def train_events(self, store_split: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(store rows, event indices) of every log event whose pair is a train-split pair."""
        ev_pair = np.asarray(self.seq.ev_pair, np.int64)
        to_store = np.full(int(self.pair_row.max(initial=-1)) + 1, -1, np.int64)
        to_store[self.pair_row] = np.arange(len(self.pair_row))
        has = (ev_pair >= 0) & (ev_pair < len(to_store))
        store_rows = np.full(len(ev_pair), -1, np.int64)
        store_rows[has] = to_store[ev_pair[has]]
        keep = store_rows >= 0
        keep[keep] &= np.asarray(store_split)[store_rows[keep]] == SPLITS.index("train")
        events = np.flatnonzero(keep)
        return store_rows[events], events.astype(np.int64)

    # ---- batch fields ----
    def _items(self, rows: np.ndarray, prefix: str, out: dict[str, torch.Tensor]) -> None:
        """Tokens, row and attribute codes of item ``rows`` (any shape; -1 = none)."""
        shape, flat = rows.shape, rows.reshape(-1)
        s, w = self.store, self.spec.item_tokens
        ids, mask = first_tokens(s.view("item_tokens"), s.view("item_offsets"), flat, w)
        safe = np.maximum(flat, 0)
        attr = np.where((flat >= 0)[:, None], self.seq.item_attr[safe], 0).astype(np.int64)
        out[f"{prefix}_ids"] = torch.from_numpy(ids.reshape(*shape, w))
        out[f"{prefix}_mask"] = torch.from_numpy(mask.reshape(*shape, w))
        out[f"{prefix}_row"] = torch.from_numpy(safe.astype(np.int64).reshape(shape))
        out[f"{prefix}_attr"] = torch.from_numpy(attr.reshape(*shape, attr.shape[-1]))

    def _queries(self, rows: np.ndarray, prefix: str, out: dict[str, torch.Tensor]) -> None:
        shape, flat = rows.shape, rows.reshape(-1)
        s, w = self.store, self.spec.query_tokens
        ids, mask = first_tokens(s.view("query_tokens"), s.view("query_offsets"), flat, w)
        out[f"{prefix}_ids"] = torch.from_numpy(ids.reshape(*shape, w))
        out[f"{prefix}_mask"] = torch.from_numpy(mask.reshape(*shape, w))
        out[f"{prefix}_row"] = torch.from_numpy(np.maximum(flat, 0).astype(np.int64).reshape(shape))

    def __call__(
        self,
        q_row: np.ndarray,
        i_row: np.ndarray,
        rows: np.ndarray,
        events: np.ndarray | None = None,
    ) -> dict[str, torch.Tensor]:
        seq = self.seq
        if events is None:
            prow = self.pair_row[rows]
            user, time, clicked = seq.ctx_user[prow], seq.ctx_time[prow], seq.ctx_clicked[prow]
        else:
            user, time, clicked = seq.ev_user[events], seq.ev_time[events], seq.ev_clicked[events]
        idx, mask = seq.history(user, time, self.spec.max_length, exclude=(q_row, i_row))
        real = mask > 0
        safe = np.maximum(idx, 0)
        h_query = np.where(real, seq.cl_query[safe], -1)
        h_item = np.where(real, seq.cl_item[safe], -1)
        out: dict[str, torch.Tensor] = {}
        self._queries(q_row, "seq_query", out)
        self._items(i_row, "seq_item", out)
        self._queries(h_query, "hist_query", out)
        self._items(h_item, "hist_item", out)
        out["hist_mask"] = torch.from_numpy(mask)
        neg = self.rng.integers(0, self.num_items, (len(q_row), self.spec.negatives))
        self._items(neg, "neg_item", out)
        out["event_clicked"] = torch.from_numpy(np.asarray(clicked, np.int64))
        return out


__all__ = ["SequenceFeatures", "SequenceSpec"]
