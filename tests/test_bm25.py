"""BM25 baseline: hand-checkable ranking, indexed fields, metrics.json, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import bm25s
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from relkd.baselines.bm25_baseline import BM25ItemIndex, item_documents, run_bm25_baseline
from relkd.cli import main
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import DataError
from relkd.metrics import format_metrics_table

ITEMS = pa.table(
    {
        "item_id": ["i1", "i2", "i3", "i4", "i5", "i6", "i7"],
        "title": [
            "red running shoes",
            "blue running jacket",
            "red wool winter scarf",
            "oak writing desk",
            "leather office seat",
            "green garden hose",
            "unjudged gadget",
        ],
        "brand": ["Acme", None, None, None, None, None, None],
        "color": [None, None, None, None, "black", None, None],
        "product_type": [None, None, None, None, "chair", None, None],
        "attributes": [
            None,
            None,
            None,
            '{"material": "walnut", "size": {"w": "120cm"}}',
            None,
            None,
            None,
        ],
    }
)
QUERIES = pa.table(
    {
        "query_id": ["q1", "q2", "q3", "q4", "q5", "q6"],
        "text": [
            "red running shoes",
            "walnut desk",
            "black chair",
            "blue jacket",
            "garden hose",
            "wool scarf",
        ],
        "bucket": ["head", "torso", "tail", "head", "torso", "tail"],
    }
)
PAIRS = pa.table(
    {
        "pair_id": list(range(1, 15)),
        "query_id": ["q1", "q1", "q1", "q2", "q2", "q2", "q3", "q3", "q4", "q4", "q5", "q5", "q6", "q6"],
        "item_id": ["i1", "i2", "i3", "i4", "i5", "i6", "i5", "i1", "i2", "i6", "i6", "i3", "i3", "i7"],
        "label": [
            "Exact", "Substitute", "Irrelevant",  # q1: exact title match first
            "Exact", "Irrelevant", "Irrelevant",  # q2: walnut only in i4's attributes
            "Exact", "Irrelevant",  # q3: black / chair only in i5's color / product_type
            "Exact", "Irrelevant", "Exact", "Irrelevant",  # val
            "Exact", None,  # train; i7 only in an unlabelled pair
        ],
        "split": ["test"] * 8 + ["val"] * 4 + ["train"] * 2,
    }
)  # fmt: skip


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    root = tmp_path / "tiny_ds"
    CanonicalDataset.write(
        root,
        {"items": ITEMS, "queries": QUERIES, "pairs": PAIRS},
        name="tiny",
        label_scheme="esci",
        source={"kind": "test"},
    )
    return root


def _index(k1: float = 1.5, b: float = 0.75) -> BM25ItemIndex:
    items = ITEMS.slice(0, 6)  # the judged items
    docs, _ = item_documents(items)
    return BM25ItemIndex(items.column("item_id").to_pylist(), docs, k1=k1, b=b)


def test_documents_hold_fields_and_attribute_values_not_keys() -> None:
    docs, unparsed = item_documents(ITEMS)
    assert docs[0] == "red running shoes Acme"
    assert "walnut" in docs[3] and "120cm" in docs[3]
    assert "material" not in docs[3] and "size" not in docs[3]
    assert "black" in docs[4] and "chair" in docs[4]
    assert unparsed == 0


def test_unparsable_attributes_are_indexed_raw() -> None:
    items = pa.table({"item_id": ["a"], "title": ["t"], "attributes": ["not json"]})
    docs, unparsed = item_documents(items)
    assert docs == ["t not json"] and unparsed == 1


def test_exact_title_match_ranks_first() -> None:
    scores = _index().query_scores("red running shoes")
    assert scores[0] > scores[1] > scores[2] > 0  # i1 all terms; i2 'running'; i3 'red', longer
    assert np.all(scores[3:] == 0)


def test_single_term_score_matches_hand_formula() -> None:
    k1, b = 1.2, 0.75
    docs, _ = item_documents(ITEMS.slice(0, 6))
    lengths = [len(t) for t in bm25s.tokenize(docs, return_ids=False, show_progress=False)]
    n, df, tf = 6, 1, 1
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    expected = idf * tf / (tf + k1 * (1 - b + b * lengths[3] / np.mean(lengths)))
    scores = _index(k1=k1, b=b).query_scores("walnut")
    assert scores[3] == pytest.approx(expected, rel=1e-5)
    assert np.count_nonzero(scores) == 1


def test_unknown_or_stopword_query_scores_zero() -> None:
    index = _index()
    assert np.all(index.query_scores("the of and") == 0)
    assert np.all(index.query_scores("zeppelin") == 0)


def test_score_pairs_gathers_per_query() -> None:
    index = _index()
    texts = pa.array(["walnut desk", "red running shoes", "walnut desk"])
    items = pa.array(["i4", "i2", "i5"])
    got = index.score_pairs(texts, items)
    assert got[0] == index.query_scores("walnut desk")[3]
    assert got[1] == index.query_scores("red running shoes")[1]
    assert got[2] == 0.0
    with pytest.raises(DataError, match="i7"):
        index.score_pairs(pa.array(["x"]), pa.array(["i7"]))


def test_run_writes_metrics_json(
    ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_bm25_baseline(ds, split="test")
    path = tmp_path / "runs" / "bm25" / "tiny_ds" / "test" / "metrics.json"
    assert json.loads(path.read_text()) == result
    assert result["model"] == "bm25" and result["split"] == "test"
    assert result["dataset"]["name"] == "tiny"
    params = result["params"]
    assert (params["k1"], params["b"], params["threshold_tuned_on"]) == (1.5, 0.75, "val")
    assert params["indexed_items"] == 6  # i7 is only in an unlabelled pair
    m = result["metrics"]
    assert m["threshold"] == params["threshold"] and m["threshold_tuned"] is False
    assert (m["num_pairs"], m["num_queries"]) == (8, 3)
    # each Exact item ranks first in its query and the Substitute beats the Irrelevant one
    assert m["overall"]["ndcg@10"] == pytest.approx(1.0)
    for bucket in ("head", "torso", "tail"):
        assert m["buckets"][bucket]["ndcg@10"] == pytest.approx(1.0)
        assert m["buckets"][bucket]["num_queries"] == 1
    assert m["overall"]["auc"] == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert format_metrics_table({"bm25": m}) in out
    assert "bm25 tail" in out and "NDCG@10" in out
    assert "tuned on val" in out


def test_threshold_falls_back_to_split_without_val(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "noval"
    pairs = PAIRS.filter(pc.not_equal(PAIRS.column("split"), "val"))
    CanonicalDataset.write(
        root,
        {"items": ITEMS, "queries": QUERIES, "pairs": pairs},
        name="nv",
        label_scheme="esci",
        source={},
    )
    result = run_bm25_baseline(root, split="test", out=tmp_path / "m.json", verbose=False)
    assert result["params"]["threshold_tuned_on"] == "test"
    assert capsys.readouterr().out == ""  # verbose=False prints nothing


def test_refuses_to_write_inside_dataset(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="inside the dataset folder"):
        run_bm25_baseline(ds, out=ds / "bm25" / "metrics.json")
    monkeypatch.chdir(ds)  # the default runs/ path would land inside the dataset
    with pytest.raises(DataError, match="inside the dataset folder"):
        run_bm25_baseline(ds)
    assert sorted(p.name for p in ds.iterdir()) == [
        "items.parquet", "manifest.json", "pairs.parquet", "queries.parquet"
    ]  # fmt: skip


def test_split_without_labelled_pairs(tmp_path: Path) -> None:
    root = tmp_path / "notest"
    pairs = PAIRS.filter(pc.not_equal(PAIRS.column("split"), "test"))
    CanonicalDataset.write(
        root,
        {"items": ITEMS, "queries": QUERIES, "pairs": pairs},
        name="nt",
        label_scheme="esci",
        source={},
    )
    with pytest.raises(DataError, match="split test has no labelled pairs"):
        run_bm25_baseline(root, split="test", out=tmp_path / "x.json")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        run_bm25_baseline(root, split="dev", out=tmp_path / "x.json")


def test_unlabelled_pairs_are_not_scored(ds: Path, tmp_path: Path) -> None:
    result = run_bm25_baseline(ds, split="train", out=tmp_path / "t.json")
    assert result["metrics"]["num_pairs"] == 1  # q6-i3 only; q6-i7 is unlabelled


def test_cli_bm25(ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli" / "metrics.json"
    assert main(["baseline", "bm25", "--data", str(ds), "--split", "test", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["metrics"]["overall"]["ndcg@10"] == pytest.approx(1.0)
    assert f"wrote {out}" in capsys.readouterr().out
    assert main(["baseline", "bm25", "--data", str(ds), "--out", str(ds / "m.json")]) == 2
