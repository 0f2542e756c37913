"""Perturbation robustness (relkd/perturb/, `relkd eval --perturb`): each kind changes queries
deterministically, the derived dataset perturbs only test query texts, leaves its source alone,
is refused when stale, and the eval report holds clean, perturbed and drop values."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from relkd.artifacts.atomic_files import sha256_file
from relkd.cli import main
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.validator import validate_dataset
from relkd.errors import ConfigError, StaleArtifactError
from relkd.evaluate import evaluate_run
from relkd.perturb import KINDS, PerturbedDataset, QueryPerturber, parse_kinds
from relkd.perturb.attribute_paraphrase import attribute_paraphrase
from relkd.perturb.synonym import synonym
from relkd.perturb.word_order import word_order
from relkd.runs.dataset_resolver import resolve_dataset
from tests.conftest import QUICKSTART, tiny_overrides
from tests.test_train import train


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    """The tiny synthetic dataset the training tests use (built once per session)."""
    out = tmp_path_factory.mktemp("perturb_src")
    return resolve_dataset(compose(QUICKSTART, tiny_overrides(out, shared_data_root)).data)


def table_hashes(root: Path) -> dict[str, str]:
    ds = CanonicalDataset(root)
    return {name: sha256_file(ds.path(name)) for name in ds.manifest.tables}


def query_texts(root: Path) -> dict[str, str]:
    q = CanonicalDataset(root).table("queries", ["query_id", "text"])
    return dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist(), strict=True))


def split_of(root: Path) -> dict[str, str]:
    p = CanonicalDataset(root).table("pairs", ["query_id", "split"])
    return dict(zip(p["query_id"].to_pylist(), p["split"].to_pylist(), strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_queries_and_is_deterministic(source: Path, kind: str) -> None:
    texts = query_texts(source)
    first = {q: QueryPerturber(kind)(t, q) for q, t in texts.items()}
    again = {q: QueryPerturber(kind)(t, q) for q, t in reversed(texts.items())}
    assert first == again  # same query id, same output, whatever the order or the instance
    changed = sum(first[q] != t for q, t in texts.items())
    assert changed >= len(texts) // 4, f"{kind} changed only {changed} of {len(texts)}"
    other_seed = {q: QueryPerturber(kind, seed=1)(t, q) for q, t in texts.items()}
    assert other_seed != first  # the seed picks another variant


def test_word_order_never_returns_the_identity() -> None:
    rng = random.Random(0)
    vocab = ["red", "sofa", "64gb", "tv", "for", "sale", "x"]
    for n in range(2, 8):
        for _ in range(300):
            words = [rng.choice(vocab[: rng.randint(2, len(vocab))]) for _ in range(n)]
            if len(set(words)) < 2:
                continue
            text = " ".join(words)
            out = word_order(text, random.Random(rng.random()))
            assert out != text and sorted(out.split()) == sorted(words), text
    assert QueryPerturber("word_order")("sofa", "q1") == "sofa"  # nothing to reorder
    assert QueryPerturber("word_order")("tv tv", "q1") == "tv tv"


def test_synonym_and_attribute_examples_and_queries_they_cannot_change() -> None:
    rng = random.Random(0)
    assert synonym("grey sofa", rng) in {"grey couch", "grey sofa couch"}
    assert synonym("55 inch tv stand", rng) in {"55 inch tv console", "55 inch media console"}
    assert synonym("zorblax quux", rng) == "zorblax quux"
    assert attribute_paraphrase("samsung 64gb phone", rng) == "samsung 64 gb phone"
    assert attribute_paraphrase("socks 2 pack", rng) == "socks pack of 2"
    assert attribute_paraphrase("size 10 boots", rng) in {"10 size boots", "sz 10 boots"}
    assert attribute_paraphrase("men's jeans", rng) == "jeans for men"
    assert attribute_paraphrase("red dress", rng).startswith("red")
    assert attribute_paraphrase("red dress", rng) != "red dress"
    assert attribute_paraphrase("face cream", rng) == "face cream"  # a product, not a colour
    assert QueryPerturber("typo")("tv 4k", "q1") == "tv 4k"  # no word of 3+ letters


def test_derived_dataset_is_deterministic_across_fresh_builds(source: Path, tmp_path: Path) -> None:
    for kind in KINDS:
        a = PerturbedDataset.open_or_build(source, kind, tmp_path / "a")
        b = PerturbedDataset.open_or_build(source, kind, tmp_path / "b")
        assert a.built and b.built and a.root.name == b.root.name
        assert table_hashes(a.root) == table_hashes(b.root), kind
        assert (a.queries, a.changed) == (b.queries, b.changed)


def test_only_test_query_texts_change(source: Path, tmp_path: Path) -> None:
    derived = PerturbedDataset.open_or_build(source, "typo", tmp_path)
    assert validate_dataset(derived.root) == []  # a valid canonical dataset
    src, out = table_hashes(source), table_hashes(derived.root)
    assert {k: v for k, v in out.items() if k != "queries"} == {
        k: v for k, v in src.items() if k != "queries"
    }  # items, pairs (pair_ids, labels, splits) and behaviour are byte-for-byte copies
    assert out["queries"] != src["queries"]
    before, after, split = query_texts(source), query_texts(derived.root), split_of(source)
    assert list(before) == list(after)  # same query_ids, same order
    changed = {q for q in before if before[q] != after[q]}
    assert changed and all(split[q] == "test" for q in changed)
    tests = {q for q in before if split.get(q) == "test"}
    assert derived.queries == len(tests) and derived.changed == len(changed)
    assert derived.changed_fraction == pytest.approx(len(changed) / len(tests))
    other = ["query_id", "bucket", "frequency"]
    assert CanonicalDataset(source).table("queries", other) == CanonicalDataset(derived.root).table(
        "queries", other
    )


def test_source_dataset_is_untouched(source: Path, tmp_path: Path) -> None:
    hashes = table_hashes(source)
    manifest = (source / "manifest.json").read_bytes()
    files = sorted(p.name for p in source.iterdir())
    for kind in KINDS:
        PerturbedDataset.open_or_build(source, kind, tmp_path)
    assert table_hashes(source) == hashes
    assert (source / "manifest.json").read_bytes() == manifest
    assert sorted(p.name for p in source.iterdir()) == files


def test_a_matching_folder_is_reused_not_rebuilt(source: Path, tmp_path: Path) -> None:
    built = PerturbedDataset.open_or_build(source, "synonym", tmp_path)
    stamp = (built.root / "queries.parquet").stat().st_mtime_ns
    again = PerturbedDataset.open_or_build(source, "synonym", tmp_path)
    assert not again.built and again.root == built.root
    assert (again.queries, again.changed) == (built.queries, built.changed)
    assert (built.root / "queries.parquet").stat().st_mtime_ns == stamp


def test_a_folder_with_another_manifest_is_refused_not_rebuilt(
    source: Path, tmp_path: Path
) -> None:
    built = PerturbedDataset.open_or_build(source, "typo", tmp_path)
    path = built.root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["source"]["params"]["perturbation_version"] = 0  # built by another relkd
    path.write_text(json.dumps(manifest))
    edited = path.read_bytes()
    with pytest.raises(StaleArtifactError) as err:
        PerturbedDataset.open_or_build(source, "typo", tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(built.root) in message and "params" in message
    assert path.read_bytes() == edited  # refused, not rebuilt


def test_an_edited_table_in_the_derived_folder_is_refused(source: Path, tmp_path: Path) -> None:
    built = PerturbedDataset.open_or_build(source, "word_order", tmp_path)
    shutil.copyfile(source / "queries.parquet", built.root / "queries.parquet")
    with pytest.raises(StaleArtifactError, match=r"queries\.parquet"):
        PerturbedDataset.open_or_build(source, "word_order", tmp_path)


def test_a_folder_without_manifest_is_refused(source: Path, tmp_path: Path) -> None:
    built = PerturbedDataset.open_or_build(source, "typo", tmp_path)
    (built.root / "manifest.json").unlink()
    with pytest.raises(StaleArtifactError, match=r"without a manifest\.json"):
        PerturbedDataset.open_or_build(source, "typo", tmp_path)


def test_unknown_kind_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="unknown perturbation kind"):
        parse_kinds("typo,bogus")
    assert parse_kinds("word_order, typo,word_order") == ("word_order", "typo")
    (tmp_path / "config.yaml").write_text("task: student\n")  # kinds are checked first
    assert main(["eval", str(tmp_path), "--perturb", "typo,bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--perturb" in err and "bogus" in err
    assert all(kind in err for kind in KINDS)
    assert main(["eval", str(tmp_path / "nope"), "--perturb", "typo"]) == 2
    assert "config.yaml: not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    """test_train's tiny run, cut to a few batches: the weights only need to exist."""
    limit = {"trainer.limit_train_batches": 8}
    return train(tmp_path_factory.mktemp("perturb_train"), shared_data_root, **limit)


def test_eval_reports_clean_perturbed_and_drop(trained: Path) -> None:
    report = evaluate_run(trained, perturb=("typo", "word_order"))
    data_dir = Path(json.loads((trained / "run_info.json").read_text())["dataset"]["root"])
    out = trained / "eval" / f"{data_dir.name}-test-perturb" / "metrics.json"
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(report))
    assert written["perturbation"]["kinds"] == ["typo", "word_order"]
    clean = written["clean"]["overall"]
    own = json.loads((trained / "metrics.json").read_text())["test"]["overall"]
    assert clean["ndcg@10"] == pytest.approx(own["ndcg@10"], abs=1e-6)
    for kind in ("typo", "word_order"):
        entry = written[kind]
        assert 0.0 < entry["changed_queries"] <= 1.0
        perturbed = entry["metrics"]["overall"]
        for key in ("ndcg@10", "accuracy", "macro_f1", "auc", "class_accuracy"):
            assert entry["drop"][key] == pytest.approx(perturbed[key] - clean[key], abs=1e-9)
        assert "num_pairs" not in entry["drop"]
        assert entry["metrics"]["num_pairs"] == written["clean"]["num_pairs"]
        # val is clean, so every evaluation applies the same val-tuned threshold
        assert entry["metrics"]["threshold"] == pytest.approx(written["clean"]["threshold"])
        assert CanonicalDataset(entry["dataset"]).manifest.source["params"]["kind"] == kind
