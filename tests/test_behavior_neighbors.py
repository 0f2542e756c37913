"""ProRBP behaviour neighbours on hand-made logs: thresholds, k, ranking, the target pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from relkd.behavior import BehaviorNeighbors
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import DataError

# (query row, item row, impressions, clicks)
LOG = [
    (0, 0, 10, 5),  # CTR 0.5
    (0, 1, 10, 3),  # CTR 0.3
    (0, 1, 10, 3),  # same pair again: summed to 20 impressions, 6 clicks (CTR 0.3)
    (0, 2, 4, 4),  # CTR 1.0 but only 4 impressions
    (0, 3, 10, 1),  # CTR 0.1: below c
    (0, 4, 10, 0),  # no click
    (1, 0, 10, 9),  # CTR 0.9
    (2, 0, 10, 2),  # CTR 0.2 exactly
]


def neighbors(min_impressions: int = 5, min_ctr: float = 0.2) -> BehaviorNeighbors:
    q, i, imp, clk = (np.array(c) for c in zip(*LOG, strict=True))
    return BehaviorNeighbors(q, i, imp, clk, 3, 5, min_impressions, min_ctr)


def test_thresholds_and_ranking() -> None:
    nb = neighbors()
    # item 2 has too few impressions, item 3 too low a CTR, item 4 no click; ranked by CTR
    assert nb.query_neighbors(0, exclude_item=-1, k=10) == [0, 1]
    assert nb.item_neighbors(0, exclude_query=-1, k=10) == [1, 0, 2]
    # lower the impression threshold: item 2 (CTR 1.0) comes first
    assert neighbors(min_impressions=1).query_neighbors(0, -1, 10) == [2, 0, 1]
    # raise c: only CTR >= 0.5 survives
    assert neighbors(min_ctr=0.5).item_neighbors(0, -1, 10) == [1, 0]


def test_k_limits_the_list() -> None:
    nb = neighbors()
    assert nb.item_neighbors(0, -1, k=2) == [1, 0]
    assert nb.item_neighbors(0, -1, k=0) == []


def test_target_pair_is_never_its_own_neighbour() -> None:
    nb = neighbors()
    # judging (query 0, item 0): item 0 is not among query 0's neighbours ...
    assert nb.query_neighbors(0, exclude_item=0, k=10) == [1]
    # ... and query 0 is not among item 0's neighbours, and k still fills from the rest
    assert nb.item_neighbors(0, exclude_query=0, k=2) == [1, 2]
    assert 0 not in nb.item_neighbors(0, exclude_query=0, k=10)


def test_bad_thresholds() -> None:
    with pytest.raises(ValueError):
        neighbors(min_impressions=0)
    with pytest.raises(ValueError):
        neighbors(min_ctr=1.5)


def _dataset(root: Path, with_behavior: bool = True) -> CanonicalDataset:
    queries = pa.table(
        {
            "query_id": ["qa", "qb", "qc"],
            "text": ["a", "b", "c"],
            "bucket": ["head", "torso", "tail"],
        }
    )
    items = pa.table({"item_id": ["i0", "i1", "i2"], "title": ["x", "y", "z"]})
    pairs = pa.table(
        {
            "pair_id": pa.array([0, 1, 2, 3], pa.int64()),
            "query_id": ["qa", "qa", "qb", "qc"],
            "item_id": ["i0", "i1", "i0", "i2"],
            "label": ["Exact", "Irrelevant", "Exact", "Exact"],
            "split": ["train", "train", "test", "val"],
        }
    )
    tables = {"items": items, "queries": queries, "pairs": pairs}
    if with_behavior:
        tables["behavior"] = pa.table(
            {
                "query_id": ["qa", "qb", "qb", "qc"],
                "item_id": ["i0", "i0", "i1", "i1"],
                "impressions": pa.array([2, 2, 2, 2], pa.int64()),
                "clicks": pa.array([1, 1, 1, 1], pa.int64()),
            }
        )
    return CanonicalDataset.write(
        root, tables, name="tiny", label_scheme="esci", source={"kind": "test"}
    )


def test_from_dataset_and_the_eval_query_policy(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds")
    logs = BehaviorNeighbors.from_dataset(ds, eval_queries="logs")
    # item 1 was clicked for qb (test) and qc (val); qa (train) clicked item 0
    assert logs.item_neighbors(1, exclude_query=-1, k=5) == [1, 2]
    assert logs.query_neighbors(1, exclude_item=-1, k=5) == [0, 1]
    hidden = BehaviorNeighbors.from_dataset(ds, eval_queries="hidden")
    # val/test queries' own logs are dropped: no neighbours for them, never shown as neighbours
    assert hidden.item_neighbors(1, exclude_query=-1, k=5) == []
    assert hidden.query_neighbors(1, exclude_item=-1, k=5) == []
    assert hidden.item_neighbors(0, exclude_query=-1, k=5) == [0]
    with pytest.raises(ValueError):
        BehaviorNeighbors.from_dataset(ds, eval_queries="future")


def test_dataset_without_logs_has_no_neighbours(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds", with_behavior=False)
    nb = BehaviorNeighbors.from_dataset(ds)
    assert nb.num_pairs == 0 and nb.query_neighbors(0, -1, 3) == []


def test_unknown_ids_in_the_log_name_the_file(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds")
    bad = ds.table("behavior").set_column(1, "item_id", pa.array(["i0", "i0", "i9", "i1"]))
    tables = {n: ds.table(n) for n in ("items", "queries", "pairs")} | {"behavior": bad}
    ds2 = CanonicalDataset.write(
        tmp_path / "ds2", tables, name="tiny", label_scheme="esci", source={}
    )
    with pytest.raises(DataError, match=r"behavior\.parquet: column item_id has 1 value"):
        BehaviorNeighbors.from_dataset(ds2)
