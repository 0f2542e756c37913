"""The map-style dataset behind every loader: the store pair rows of one selection.

It holds only an int64 array of row indices into the tokenized store; indexing it with a whole
batch of positions (the samplers yield batches, the DataLoader runs with ``batch_size=None``)
returns the store rows, which ``PairCollator`` turns into tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset


class PairDataset(Dataset):
    def __init__(self, rows: np.ndarray) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> np.ndarray:
        """Store rows for one position or a list of positions (always a 1-d array)."""
        return np.atleast_1d(self.rows[np.asarray(index, dtype=np.int64)])


class EventPairDataset(PairDataset):
    """Store rows with the log event each stands for (``data.sequences.train_on: events``): a
    pair seen several times is one example per event, each with that moment's user history."""

    def __init__(self, rows: np.ndarray, events: np.ndarray) -> None:
        super().__init__(rows)
        self.events = np.asarray(events, dtype=np.int64)
        if len(self.events) != len(self.rows):
            raise ValueError("rows and events must have the same length")

    def __getitem__(self, index: Any) -> dict[str, np.ndarray]:  # type: ignore[override]
        at = np.atleast_1d(np.asarray(index, dtype=np.int64))
        return {"rows": self.rows[at], "events": self.events[at]}
