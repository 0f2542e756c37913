"""The click graph: sparse aggregation, metapath neighbours, the leak setting, the artifact and
the batch fields BERM and the clicked/cold slices read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from datamodules.graph_features import ClickGraphSpec, GraphFeatures
from relkd.behavior.behavior_log import BehaviorLog
from relkd.behavior.click_graph import ClickGraph, top_k_rows
from relkd.behavior.click_graph_artifact import ClickGraphArtifact
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError, StaleArtifactError


def _log(q, i, clicks, impressions=None, nq=5, ni=4) -> BehaviorLog:
    q, i, c = (np.asarray(x, np.int64) for x in (q, i, clicks))
    imp = np.ones_like(c) if impressions is None else np.asarray(impressions, np.int64)
    return BehaviorLog(q, i, imp, c, nq, ni)


# queries 0, 1 clicked item 0; queries 1, 2 clicked item 1; query 3 clicked item 2 (alone);
# query 4 was shown item 3 but never clicked it
HAND = _log([0, 1, 1, 2, 3, 4, 0], [0, 0, 1, 1, 2, 3, 0], [1, 1, 1, 1, 1, 0, 0])


def test_metapath_neighbours_on_a_hand_made_graph() -> None:
    g = ClickGraph(HAND)
    qiq = g.metapath("qiq", 1, top_k=3)
    # cosine of click vectors: q0=(1,0), q1=(1,1)/sqrt2, q2=(0,1) -> q0~q1 = q1~q2 = 1/sqrt2
    assert qiq.index[0].tolist() == [1, -1, -1]
    assert qiq.index[1].tolist() == [0, 2, -1]  # a tie is broken by index
    assert qiq.index[3].tolist() == [-1, -1, -1]  # alone on its item
    assert qiq.index[4].tolist() == [-1, -1, -1]  # no clicks, no edges
    np.testing.assert_allclose(qiq.weight[1, :2], [2**-0.5, 2**-0.5], rtol=1e-6)
    assert qiq.weight[0, 1] == 0.0
    # order 2: q0 -> q1 -> q2, never q0 itself nor its order-1 neighbour q1
    qiq2 = g.metapath("qiq", 2, top_k=3)
    assert qiq2.index[0].tolist() == [2, -1, -1]
    assert qiq2.index[1].tolist() == [-1, -1, -1]
    iqi = g.metapath("iqi", 1, top_k=3)
    assert iqi.index[0].tolist() == [1, -1, -1] and iqi.index[2].tolist() == [-1, -1, -1]
    assert g.query_clicks().tolist() == [1, 2, 1, 1, 0]
    assert g.item_clicks().tolist() == [2, 2, 1, 0]
    # CTR aggregates duplicate rows: q0 saw i0 twice, clicked once
    assert g.ctr()[0, 0] == pytest.approx(0.5)


def test_top_k_keeps_the_heaviest_and_min_clicks_drops_edges() -> None:
    import scipy.sparse as sp

    s = sp.csr_matrix(np.array([[0.0, 0.2, 0.9, 0.5], [0.1, 0.0, 0.0, 0.0]]))
    nb = top_k_rows(s, 2)
    assert nb.index.tolist() == [[2, 3], [0, -1]]
    g = ClickGraph(_log([0, 0, 1], [0, 0, 1], [1, 1, 1], nq=2, ni=2), min_clicks=2)
    assert g.clicks.nnz == 1 and g.query_clicks().tolist() == [2, 0]


def test_bad_metapath_or_order() -> None:
    g = ClickGraph(HAND)
    with pytest.raises(ValueError, match="metapath"):
        g.metapath("qq", 1, 3)
    with pytest.raises(ValueError, match="order"):
        g.metapath("qiq", 3, 3)


def _dataset(root: Path, with_behavior: bool = True) -> CanonicalDataset:
    queries = pa.table(
        {
            "query_id": ["qa", "qb", "qc", "qd"],
            "text": ["red shoe", "blue shoe", "green lamp", "desk lamp"],
            "bucket": ["head", "torso", "tail", "tail"],
        }
    )
    items = pa.table(
        {"item_id": ["i0", "i1", "i2"], "title": ["red running shoe", "blue shoe", "lamp"]}
    )
    pairs = pa.table(
        {
            "pair_id": pa.array([0, 1, 2, 3, 4], pa.int64()),
            "query_id": ["qa", "qa", "qb", "qc", "qd"],
            "item_id": ["i0", "i1", "i0", "i2", "i2"],
            "label": ["Exact", "Substitute", "Exact", "Exact", "Exact"],
            "split": ["train", "train", "train", "test", "val"],
        }
    )
    tables = {"items": items, "queries": queries, "pairs": pairs}
    if with_behavior:
        tables["behavior"] = pa.table(
            {
                "query_id": ["qa", "qb", "qb", "qc", "qd", "qa"],
                "item_id": ["i0", "i0", "i1", "i2", "i2", "i1"],
                "impressions": pa.array([3, 2, 2, 2, 2, 1], pa.int64()),
                "clicks": pa.array([2, 1, 1, 1, 1, 0], pa.int64()),
            }
        )
    return CanonicalDataset.write(
        root, tables, name="tiny", label_scheme="esci", source={"kind": "test"}
    )


def test_hidden_drops_exactly_the_val_and_test_queries_clicks(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds")
    logs = BehaviorLog.from_dataset(ds, "logs")
    hidden = BehaviorLog.from_dataset(ds, "hidden")
    eval_rows = {2, 3}  # qc (test), qd (val)
    kept = [
        (q, i) for q, i in zip(logs.query_row, logs.item_row, strict=True) if q not in eval_rows
    ]
    assert list(zip(hidden.query_row, hidden.item_row, strict=True)) == kept
    assert len(kept) == len(logs.query_row) - 2
    g = ClickGraph(hidden)
    assert g.query_clicks()[[2, 3]].tolist() == [0, 0]
    assert g.query_clicks()[[0, 1]].tolist() == [2, 2]
    # with their clicks, qc and qd are neighbours (both clicked i2); hidden, nobody reaches them
    assert ClickGraph(logs).metapath("qiq", 1, 3).index[2].tolist() == [3, -1, -1]
    assert (g.metapath("qiq", 1, 3).index[:, :] != 2).all()


def test_artifact_is_built_once_reused_and_refused_when_stale(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds")
    cache = tmp_path / "graphs"
    a = ClickGraphArtifact.open_or_build(ds, cache, top_k=2)
    stamp = (a.root / "manifest.json").stat().st_mtime_ns
    b = ClickGraphArtifact.open_or_build(ds, cache, top_k=2)
    assert b.root == a.root and (b.root / "manifest.json").stat().st_mtime_ns == stamp
    assert b.neighbors("qiq", 1).index.shape == (4, 2)
    other = ClickGraphArtifact.open_or_build(ds, cache, top_k=2, eval_queries="hidden")
    assert other.root != a.root
    manifest = json.loads((a.root / "manifest.json").read_text())
    manifest["inputs"]["dataset_tables"]["behavior"] = "0" * 64
    (a.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleArtifactError, match="behavior"):
        ClickGraphArtifact.open_or_build(ds, cache, top_k=2)
    assert (a.root / "qiq1_index.npy").exists()  # refused, never rebuilt or deleted


class _Store:
    """The two token arrays GraphFeatures reads, as a tokenized store lays them out."""

    def __init__(self) -> None:
        self.arrays = {
            "query_tokens": np.array([11, 12, 13, 14, 15, 16, 17], np.int64),
            "query_offsets": np.array([0, 2, 3, 6, 7], np.int64),
            "item_tokens": np.array([21, 22, 23, 24], np.int64),
            "item_offsets": np.array([0, 2, 3, 4], np.int64),
        }

    def view(self, name: str) -> np.ndarray:
        return self.arrays[name]


def test_batch_fields_carry_the_neighbours_tokens_and_the_slice(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds")
    spec = ClickGraphSpec(
        cache_dir=str(tmp_path / "graphs"), top_k=2, neighbor_tokens=2, metapaths=("qiq", "iqi")
    )
    feats = GraphFeatures.open(spec, ds, _Store(), build=True)
    assert feats is not None
    out = feats(np.array([0, 2]), np.array([1, 2]))
    # qa's neighbour queries: qb (shares i0); qc's: qd (shares i2)
    assert out["qiq1_ids"].shape == (2, 2, 2)
    assert out["qiq1_ids"][0, 0].tolist() == [13, 0] and out["qiq1_mask"][0, 0].tolist() == [1, 0]
    assert out["qiq1_ids"][1, 0].tolist() == [17, 0]
    assert out["qiq1_mask"][:, 1].sum() == 0 and out["qiq1_weight"][:, 1].sum() == 0
    # i1 (clicked by qb) neighbours i0 (also clicked by qb)
    assert out["iqi1_ids"][0, 0].tolist() == [21, 22]
    # qa clicked i0 but not i1 (0 clicks); i1 was clicked by qb: both sides have clicks
    assert out["clicked"].tolist() == [1, 1]
    assert "qiq2_ids" not in out
    hidden = GraphFeatures.open(
        ClickGraphSpec(cache_dir=str(tmp_path / "graphs"), eval_queries="hidden"),
        ds,
        _Store(),
        build=True,
    )
    assert hidden is not None
    # the test and val queries (rows 2, 3) are cold once their clicks are dropped
    assert hidden(np.array([2, 3, 0]), np.array([2, 2, 0]))["clicked"].tolist() == [0, 0, 1]


def test_metapaths_on_a_dataset_without_logs_is_a_config_error(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "ds", with_behavior=False)
    spec = ClickGraphSpec(cache_dir=str(tmp_path / "graphs"), metapaths=("qiq",))
    with pytest.raises(ConfigError, match="no behavior table"):
        GraphFeatures.open(spec, ds, _Store(), build=True)
    # slices alone quietly need nothing
    assert GraphFeatures.open(ClickGraphSpec(), ds, _Store(), build=True) is None


def test_graph_build_command_builds_then_reuses(
    tmp_path: Path, shared_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from relkd.cli import main
    from tests.conftest import QUICKSTART, tiny_overrides

    overrides = tiny_overrides(tmp_path / "runs", shared_data_root)
    assert main(["graph", "build", str(QUICKSTART), *overrides]) == 0
    first = capsys.readouterr().out
    assert "edges" in first and "qiq order 1" in first
    root = Path(first.split("click graph: ")[1].split(" (")[0])
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert main(["graph", "build", str(QUICKSTART), *overrides]) == 0
    assert (root / "manifest.json").stat().st_mtime_ns == stamp
    assert main(["graph", "build", str(QUICKSTART), *overrides, "data.click_graph.top_k=0"]) == 2
    assert "data.click_graph.top_k" in capsys.readouterr().err
