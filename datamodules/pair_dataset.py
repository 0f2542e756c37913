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
