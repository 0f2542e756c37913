"""Annotator votes (the optional ``label_votes`` column) become soft targets in batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from datamodules.prompt_store import PromptSpec
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import ESCI
from relkd.data.label_votes import votes_to_distribution
from relkd.data.validator import validate_dataset
from relkd.errors import DataError
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import make_dataset, minilm_path


def test_votes_become_distributions() -> None:
    dist = votes_to_distribution(
        ['{"Exact": 2, "S": 1}', None, '{"Irrelevant": 4}'], ESCI, "p.parquet"
    )
    np.testing.assert_allclose(dist[0], [2 / 3, 1 / 3, 0, 0])
    assert np.isnan(dist[1]).all()
    np.testing.assert_allclose(dist[2], [0, 0, 0, 1])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{oops", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('{"Perfect": 1}', "unknown label 'Perfect'"),
        ('{"Exact": -1}', "must be a number >= 0"),
        ('{"Exact": 0}', "no votes"),
    ],
)
def test_bad_votes_name_file_column_and_pair(value: str, message: str) -> None:
    with pytest.raises(DataError, match=rf"p\.parquet: column label_votes, pair_id 7: .*{message}"):
        votes_to_distribution([value], ESCI, "p.parquet", [7])


def _with_votes(tmp_path: Path, votes: list[str | None]) -> Path:
    src = make_dataset(tmp_path / "src", n_queries=6, items_per_query=4)
    pairs = src.table("pairs")
    pairs = pairs.append_column(
        "label_votes",
        pa.array(votes[: pairs.num_rows] + [None] * (pairs.num_rows - len(votes)), pa.string()),
    )
    tables = {n: src.table(n) for n in ("items", "queries")} | {"pairs": pairs}
    CanonicalDataset.write(
        tmp_path / "ds", tables, name="tiny", label_scheme="esci", source={"kind": "test"}
    )
    return tmp_path / "ds"


def test_validator_reports_bad_votes(tmp_path: Path) -> None:
    good = _with_votes(tmp_path / "a", [json.dumps({"Exact": 1, "Irrelevant": 1})])
    assert validate_dataset(good) == []
    bad = _with_votes(tmp_path / "b", [None, '{"Exact": "many"}'])
    problems = validate_dataset(bad)
    assert any("label_votes" in p and "must be a number" in p for p in problems), problems


@pytest.mark.parametrize("encoding", ["cross", "prompt"])
def test_batches_carry_the_vote_distribution(tmp_path: Path, encoding: str) -> None:
    root = _with_votes(tmp_path, [json.dumps({"Exact": 3, "Complement": 1})])
    spec = (
        PromptSpec(label_words={label: label.lower() for label in ESCI.labels})
        if encoding == "prompt"
        else None
    )
    dm = make_datamodule(
        root,
        minilm_path(),
        cache_dir=tmp_path / "cache",
        encoding=encoding,
        prompt_spec=spec,
        batch_size=64,
    )
    dm.prepare_data()
    dm.setup()
    first = int(CanonicalDataset(root).table("pairs", ["pair_id"]).column("pair_id")[0].as_py())
    seen = False
    for batch in dm.train_dataloader():
        for pid, dist in zip(batch["pair_id"].tolist(), batch["label_dist"], strict=True):
            if pid == first:
                np.testing.assert_allclose(dist.numpy(), [0.75, 0, 0.25, 0])
                seen = True
            else:
                assert np.isnan(dist.numpy()).all()
    assert seen


def test_table_import_keeps_and_checks_votes(tmp_path: Path) -> None:
    from relkd.data.loaders import import_table

    items = tmp_path / "items.jsonl"
    items.write_text(
        '{"item_id": "i1", "title": "oak desk"}\n{"item_id": "i2", "title": "red lamp"}\n'
    )
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        '{"query_id": "q1", "item_id": "i1", "label": "E", "query": "desk", "label_votes": {"Exact": 2, "S": 1}}\n'
        '{"query_id": "q1", "item_id": "i2", "label": "I", "query": "desk", "label_votes": {"Irrelevant": 3}}\n'
        '{"query_id": "q2", "item_id": "i2", "label": "I", "query": "lamp", "label_votes": null}\n'
    )
    ds = import_table(pairs, items, tmp_path / "out", scheme="esci")
    table = ds.table("pairs", ["query_id", "item_id", "label_votes"]).to_pylist()
    votes = {(r["query_id"], r["item_id"]): r["label_votes"] for r in table}
    assert json.loads(votes["q1", "i1"]) == {
        "Exact": 2,
        "S": 1,
    }  # keys another row had are not added
    assert json.loads(votes["q1", "i2"]) == {"Irrelevant": 3} and votes["q2", "i2"] is None
    pairs.write_text(
        '{"query_id": "q1", "item_id": "i1", "label": "E", "query": "desk", "label_votes": {"Great": 1}}\n'
    )
    with pytest.raises(
        DataError, match=r"pairs\.jsonl: column label_votes, pair_id \d+: unknown label 'Great'"
    ):
        import_table(pairs, items, tmp_path / "out2", scheme="esci")
