"""The two-tower item table: the item tower over every item of a dataset, in item-row order.

Item embeddings depend on the item alone, so a search engine computes them once per catalogue
refresh and caches them; serving a query is then one query-tower pass plus the scorer over the
cached rows. Items are tokenized exactly as the DataModule feeds them to the item tower in
training and evaluation (``[CLS] item [SEP]``, cut at ``data.max_length``), from the run's
tokenized store; row ``r`` of the table is row ``r`` of the dataset's ``items`` table.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from datamodules import QueryItemDataModule
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.nets.two_tower import TwoTower

DEFAULT_BATCH = 256


def item_batches(dm: QueryItemDataModule, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of item rows as the bi-encoder collator builds them
    (padded to the longest of ``rows``)."""
    s = dm.store
    # the collator's own item encoding, so the table matches what the item tower saw in training
    return dm.collator._single(s.view("item_tokens"), s.view("item_offsets"), rows)


def _length_sorted(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.inference_mode()
def encode_items(
    net: TwoTower, dm: QueryItemDataModule, batch_size: int = DEFAULT_BATCH
) -> np.ndarray:
    """float32 ``[n_items, H]``: the item tower over every item row of ``dm``'s store.

    Items are encoded in length-sorted batches (little padding) and written back in row order.
    """
    s = dm.store
    n = s.num_items
    table = np.zeros((n, net.hidden_size), dtype=np.float32)
    lengths = np.diff(np.asarray(s.view("item_offsets"), dtype=np.int64))
    for rows in _length_sorted(lengths, batch_size):
        ids, mask = item_batches(dm, rows)
        table[rows] = net.encode_item(ids, mask).float().numpy()
    return table


def item_ids(dataset: CanonicalDataset) -> list:
    """The dataset's ``item_id`` per items-table row (the item table's row order)."""
    return dataset.table("items", ["item_id"]).column("item_id").to_pylist()


__all__ = ["encode_items", "item_batches", "item_ids"]
