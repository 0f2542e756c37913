"""`relkd teacher write-cot` on CPU with a tiny causal LM: self-consistency, both decodings, the
JSONL a CoT teacher reads back, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relkd.cli import main
from relkd.prompts import parse_cot
from relkd.teacher.cot_writer import majority
from tests.datamodule_fixtures import make_dataset, minilm_path

WORDS = {
    "Exact": "exact",
    "Substitute": "substitute",
    "Complement": "complement",
    "Irrelevant": "irrelevant",
}


def cot(verdict: str, brand: str = "match") -> str:
    return f"category: match. brand: {brand}. model: match. attributes: match. verdict: {verdict}."


def test_majority_keeps_a_consistent_cot() -> None:
    samples = [
        cot("exact"),
        "garbage",
        cot("substitute", "mismatch"),
        cot("substitute"),
        cot("exact", "not stated"),
    ]
    parsed = [parse_cot(s, WORDS) for s in samples]
    verdict, index = majority(parsed)
    # exact and substitute tie at 2: the verdict seen first wins, and its first sample is kept
    assert verdict == "Exact" and index == 0
    verdict, index = majority(parsed[1:])
    assert verdict == "Substitute" and index == 1  # samples[2]
    assert majority([parse_cot("nothing", WORDS)]) == (None, -1)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertLMHeadModel

    out = tmp_path_factory.mktemp("tinylm")
    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        is_decoder=True,
    )
    BertLMHeadModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cotdata") / "ds"
    make_dataset(root, n_queries=6, items_per_query=4)
    return root


def write(tmp: Path, tiny_lm: Path, data_dir: Path, decoding: str, *extra: str) -> tuple[int, Path]:
    out = tmp / f"cot_{decoding}.jsonl"
    args = [
        "teacher",
        "write-cot",
        "--model",
        str(tiny_lm),
        "--data",
        str(data_dir),
        "--out",
        str(out),
    ]
    args += ["--samples", "3", "--decoding", decoding, "--max-new-tokens", "12", *extra]
    return main(args), out


def test_guided_decoding_always_parses_and_round_trips(tmp_path, tiny_lm, data_dir, capsys) -> None:
    code, out = write(tmp_path, tiny_lm, data_dir, "guided")
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["counts"]["samples_parsed"] == manifest["counts"]["samples"] == 3 * len(rows)
    assert len(rows) == manifest["counts"]["pairs"] > 0
    for row in rows:
        parsed = parse_cot(row["cot"], WORDS)
        assert parsed.ok and parsed.verdict == row["verdict"]  # the kept CoT reaches the majority
        assert 0.333 <= row["agreement"] <= 1 and row["samples"] == 3
    assert "100.0% of" in capsys.readouterr().out


def test_free_decoding_reports_what_did_not_parse(tmp_path, tiny_lm, data_dir, capsys) -> None:
    code, out = write(tmp_path, tiny_lm, data_dir, "free")
    assert code == 0
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    counts = manifest["counts"]
    # an untrained model writes no parsable CoT: every pair is counted as left out, none written
    assert counts["written"] + counts["unparsed_pairs"] == counts["pairs"]
    assert len(out.read_text().splitlines()) == counts["written"]
    assert "left out" in capsys.readouterr().out


def test_existing_output_is_kept_unless_overwritten(tmp_path, tiny_lm, data_dir, capsys) -> None:
    out = tmp_path / "cot_guided.jsonl"
    out.write_text("keep me\n")
    code, _ = write(tmp_path, tiny_lm, data_dir, "guided")
    assert code == 2 and out.read_text() == "keep me\n"
    assert "--overwrite" in capsys.readouterr().err
    code, _ = write(tmp_path, tiny_lm, data_dir, "guided", "--overwrite")
    assert code == 0 and out.read_text() != "keep me\n"


def test_bad_split_is_a_one_line_error(tmp_path, tiny_lm, data_dir, capsys) -> None:
    code, _ = write(tmp_path, tiny_lm, data_dir, "guided", "--splits", "train,holdout")
    assert code == 2 and "holdout" in capsys.readouterr().err


def test_aspect_accuracy_is_recounted_from_the_kept_cots(tmp_path, tiny_lm, data_dir) -> None:
    import numpy as np

    from relkd.data.canonical_dataset import CanonicalDataset
    from relkd.data.pair_arrays import PairArrays
    from relkd.data.schema import ASPECT_VALUES, ASPECTS

    code, out = write(tmp_path, tiny_lm, data_dir, "guided")
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    counts = json.loads(out.with_name(out.name + ".manifest.json").read_text())["counts"]
    pairs = PairArrays.of(CanonicalDataset(data_dir), labelled_only=True)
    truth = {int(p): a for p, a in zip(pairs.pair_id, pairs.aspects, strict=True)}
    for i, aspect in enumerate(ASPECTS):
        known = [r for r in rows if truth[r["pair_id"]][i] >= 0]
        right = sum(
            parse_cot(r["cot"], WORDS).aspects[aspect] == ASPECT_VALUES[truth[r["pair_id"]][i]]
            for r in known
        )
        assert known and counts["aspect_accuracy"][aspect] == round(right / len(known), 4)
    assert counts["parse_rate"] == 1.0
    assert counts["verdict_accuracy"] == round(
        float(np.mean([r["verdict"] == r["label"] for r in rows])), 4
    )


def test_limit_samples_the_whole_split_with_the_seed(tmp_path, tiny_lm, data_dir) -> None:
    from relkd.data.canonical_dataset import CanonicalDataset
    from relkd.data.pair_arrays import PairArrays
    from relkd.data.schema import SPLITS

    pairs = PairArrays.of(CanonicalDataset(data_dir), labelled_only=True)
    train = [
        int(p)
        for p, s in zip(pairs.pair_id, pairs.split, strict=True)
        if s == SPLITS.index("train")
    ]

    def written(name: str, *extra: str) -> list[int]:
        code, out = write(tmp_path / name, tiny_lm, data_dir, "guided", "--limit", "6", *extra)
        assert code == 0
        return [json.loads(line)["pair_id"] for line in out.read_text().splitlines()]

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    first = written("a")
    assert len(first) == 6 and set(first) <= set(train)
    assert first != train[:6]  # not the first queries in file order
    assert written("b") == first  # the same seed, the same sample
    assert written("c", "--seed", "1") != first
