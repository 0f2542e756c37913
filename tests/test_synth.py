"""The synthetic catalogue: determinism, label rules, splits, tail difficulty, behaviour, CLI."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from relkd.cli import main
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.synth.annotator_noise import apply_annotator_noise
from relkd.data.synth.candidate_sampler import SOURCES, sample_candidates
from relkd.data.synth.item_generator import generate_items
from relkd.data.synth.query_builder import build_queries
from relkd.data.synth.relevance_rules import (
    attributes_aspect,
    esci_label,
    item_slot_values,
    stated_aspect,
)
from relkd.data.synth.synthetic_catalogue import (
    STREAM,
    SynthConfig,
    _stream,
    build_tables,
    generate_dataset,
)
from relkd.data.synth.taxonomy import RELATIONS, build_taxonomy
from relkd.errors import DataError

ESCI = ("Exact", "Substitute", "Complement", "Irrelevant")
TOKEN = re.compile(r"[a-z0-9]+")


def load(root: Path) -> dict[str, Any]:
    ds = CanonicalDataset(root)
    tables = {name: pq.read_table(ds.path(name)).to_pydict() for name in ds.manifest.tables}
    return {"ds": ds, **tables}


@pytest.fixture(scope="module")
def esci(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("synth") / "esci"
    generate_dataset(SynthConfig(pairs=4000, seed=0), root)
    return load(root)


@pytest.fixture(scope="module")
def wands(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("synth") / "wands"
    generate_dataset(SynthConfig(pairs=2000, seed=1, scheme="wands"), root)
    return load(root)


def labelled_rows(data: dict[str, Any]) -> list[int]:
    return [i for i, label in enumerate(data["pairs"]["label"]) if label is not None]


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    def hashes(name: str, seed: int) -> tuple[dict[str, str], dict[str, Any]]:
        ds = generate_dataset(SynthConfig(pairs=800, seed=seed), tmp_path / name)
        return {t: e.sha256 for t, e in ds.manifest.tables.items()}, ds.manifest.stats

    first, stats = hashes("a", 7)
    again, stats_again = hashes("b", 7)
    other, _ = hashes("c", 8)
    assert set(first) == {"items", "queries", "pairs", "behavior"}
    assert first == again and stats == stats_again
    assert all(first[t] != other[t] for t in first)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "synthetic"
    assert (
        manifest["source"]["params"]["seed"] == 7 and manifest["source"]["params"]["pairs"] == 800
    )


def test_held_out_evaluation_queries_are_deterministic_and_query_disjoint(tmp_path: Path) -> None:
    large = SynthConfig(pairs=2000, seed=3, val_pairs=1500, test_pairs=4000)
    tables, stats = build_tables(large)
    again, stats_again = build_tables(large)
    pairs = tables["pairs"].to_pydict()
    assert pairs == again["pairs"].to_pydict() and stats == stats_again  # a function of the config
    split_of: dict[str, str] = {}
    for qid, split in zip(pairs["query_id"], pairs["split"], strict=True):
        assert split_of.setdefault(qid, split) == split, f"{qid} is in two splits"
    labelled = stats["labelled_pairs_per_split"]
    assert sum(labelled.values()) == 2000 + 1500 + 4000
    # the held-out pairs land in val and test only; train and the pool keep `pairs`' size
    _, small_stats = build_tables(SynthConfig(pairs=2000, seed=3))
    small = small_stats["labelled_pairs_per_split"]
    assert abs(labelled["train"] - small["train"]) < 0.15 * small["train"]
    assert labelled["test"] > small["test"] + 3000 and labelled["val"] > small["val"] + 1000
    assert stats["unlabelled_pairs"] == small_stats["unlabelled_pairs"] == 5 * 2000
    assert stats["queries_per_split"]["test"] >= 180 and stats["queries_per_split"]["val"] >= 70
    queries = tables["queries"].to_pydict()
    assert len(queries["query_id"]) == large.n_queries
    bucket_of = dict(zip(queries["query_id"], queries["bucket"], strict=True))
    tested = {bucket_of[q] for q, split in split_of.items() if split == "test"}
    assert tested == {"head", "torso", "tail"}  # every bucket is evaluated

    # no held-out pairs: the dataset `pairs` alone describes, byte for byte
    a = generate_dataset(SynthConfig(pairs=2000, seed=3), tmp_path / "a").manifest.tables
    b = generate_dataset(SynthConfig(pairs=2000, seed=3, val_pairs=0), tmp_path / "b")
    assert {t: e.sha256 for t, e in a.items()} == {
        t: e.sha256 for t, e in b.manifest.tables.items()
    }
    with pytest.raises(DataError, match="test_pairs must be an integer >= 0"):
        SynthConfig(test_pairs=-1)


def test_seeds_differing_above_bit_32_get_different_random_streams() -> None:
    def draws(seed: int, stage: str) -> list[int]:
        return _stream(SynthConfig(seed=seed), stage).integers(0, 2**62, 4).tolist()

    for stage in STREAM:
        assert draws(3, stage) != draws(3 + 2**32, stage)
        assert draws(2**40, stage) == draws(2**40, stage)


@pytest.mark.parametrize("seed", [-1, -(2**32)])
def test_negative_seed_is_rejected(seed: int) -> None:
    with pytest.raises(DataError, match=r"seed must be an integer >= 0"):
        SynthConfig(seed=seed)


# -- label rules -----------------------------------------------------------------------------


def test_clean_labels_follow_the_rules_from_stored_facts(esci: dict[str, Any]) -> None:
    p = esci["pairs"]
    tax = build_taxonomy()
    qtype = dict(zip(esci["queries"]["query_id"], esci["queries"]["product_type"], strict=True))
    itype = dict(zip(esci["items"]["item_id"], esci["items"]["product_type"], strict=True))
    names = [t.name for t in tax.types]
    for row in range(len(p["pair_id"])):
        rel = RELATIONS[
            tax.relation[
                names.index(qtype[p["query_id"][row]]), names.index(itype[p["item_id"][row]])
            ]
        ]
        assert p["type_relation"][row] == rel
        assert p["aspect_category"][row] == ("match" if rel == "same" else "mismatch")
        facts = (p["aspect_brand"][row], p["aspect_model"][row], p["aspect_attributes"][row])
        if rel == "same":
            expected = "Substitute" if "mismatch" in facts else "Exact"
        else:
            expected = {
                "equivalent": "Substitute",
                "complement": "Complement",
                "unrelated": "Irrelevant",
            }[rel]
        assert p["clean_label"][row] == expected, row


def test_aspect_facts_match_intent_and_item_text(esci: dict[str, Any]) -> None:
    """Recompute every aspect from the JSON strings alone: intents vs item attributes."""
    intents = {
        q: json.loads(s)
        for q, s in zip(esci["queries"]["query_id"], esci["queries"]["intent"], strict=True)
    }
    items = esci["items"]
    item = {
        i: (b, t, json.loads(a))
        for i, b, t, a in zip(
            items["item_id"],
            items["brand"],
            items["product_type"],
            items["attributes"],
            strict=True,
        )
    }
    p = esci["pairs"]
    seen = defaultdict(set)
    for row in range(len(p["pair_id"])):
        intent = intents[p["query_id"][row]]
        brand, ptype, attrs = item[p["item_id"][row]]

        def fact(wanted: str | None, have: str | None) -> str:
            return "not_stated" if wanted is None else "match" if wanted == have else "mismatch"

        stated = intent["attributes"]
        attr_fact = (
            "not_stated"
            if not stated
            else "mismatch"
            if any(attrs.get(k) != v for k, v in stated.items())
            else "match"
        )
        got = (
            p["aspect_category"][row],
            p["aspect_brand"][row],
            p["aspect_model"][row],
            p["aspect_attributes"][row],
        )
        want = (
            fact(intent["product_type"], ptype),
            fact(intent["brand"], brand),
            fact(intent["model"], attrs.get("model")),
            attr_fact,
        )
        assert got == want, (row, intent, attrs)
        for name, value in zip(("category", "brand", "model", "attributes"), got, strict=True):
            seen[name].add(value)
    # the facts really vary, so the check above was not vacuous
    assert (
        seen["brand"] == seen["model"] == seen["attributes"] == {"match", "mismatch", "not_stated"}
    )


def test_noise_rate_and_adjacent_bias(esci: dict[str, Any]) -> None:
    p = esci["pairs"]
    rows = labelled_rows(esci)
    flipped = [r for r in rows if p["label"][r] != p["clean_label"][r]]
    assert abs(len(flipped) / len(rows) - 0.05) < 0.02
    adjacent = sum(
        abs(ESCI.index(p["label"][r]) - ESCI.index(p["clean_label"][r])) == 1 for r in flipped
    )
    assert adjacent / len(flipped) > 0.6
    assert esci["ds"].manifest.stats["label_noise_disagreement"] == pytest.approx(
        len(flipped) / len(rows)
    )
    clean = np.repeat(np.arange(4, dtype=np.int8), 500)
    assert np.array_equal(apply_annotator_noise(clean, 4, 0.0, np.random.default_rng(0)), clean)
    noisy = apply_annotator_noise(clean, 4, 1.0, np.random.default_rng(0))
    assert (noisy != clean).all()


def test_esci_label_mix_is_balanced(esci: dict[str, Any]) -> None:
    share = esci["ds"].manifest.stats["label_share"]
    assert 0.25 <= share["Exact"] <= 0.45
    assert 0.15 <= share["Substitute"] <= 0.35
    assert 0.05 <= share["Complement"] <= 0.2
    assert 0.2 <= share["Irrelevant"] <= 0.4


def test_wands_scheme_has_three_grades(wands: dict[str, Any]) -> None:
    p = wands["pairs"]
    assert wands["ds"].manifest.label_scheme == "wands"
    assert {x for x in p["label"] if x is not None} == {"Exact", "Partial", "Irrelevant"}
    assert set(p["clean_label"]) == {"Exact", "Partial", "Irrelevant"}
    expected = {"complement": "Irrelevant", "unrelated": "Irrelevant", "equivalent": "Partial"}
    for rel, clean in zip(p["type_relation"], p["clean_label"], strict=True):
        if rel in expected:
            assert clean == expected[rel]
    assert "complement" in p["type_relation"]


def test_sampler_sources_match_rule_labels() -> None:
    """Each candidate source gets the grade it aims for, with exact per-query counts."""
    tax = build_taxonomy()
    items = generate_items(tax, 3000, np.random.default_rng(0), random.Random(0))
    queries = build_queries(tax, items, 120, np.random.default_rng(1), random.Random(1))
    lab = np.full(len(queries), 15)
    unl = np.where(np.arange(len(queries)) % 3 == 0, 0, 60)
    cand = sample_candidates(tax, items, queries, lab, unl, np.random.default_rng(2))
    q, i = cand.query, cand.item
    rel = tax.relation[queries.type[q], items.type[i]]
    grade = esci_label(
        rel,
        stated_aspect(queries.brand[q], items.brand[i]),
        stated_aspect(queries.model[q], items.model[i]),
        attributes_aspect(
            list(queries.values[q].T), item_slot_values(items.attrs, i, queries.slots[q])
        ),
    )
    want = {"exact": 0, "near": 1, "equivalent": 1, "complement": 2, "random": 3}
    for s, name in enumerate(SOURCES):
        assert (grade[cand.source == s] == want[name]).all(), name
    assert np.array_equal(np.bincount(q[cand.labelled], minlength=len(queries)), lab)
    assert np.array_equal(np.bincount(q[~cand.labelled], minlength=len(queries)), unl)
    assert len(np.unique(q.astype(np.int64) * len(items) + i)) == len(q)


# -- splits and integrity --------------------------------------------------------------------


def test_split_hygiene_and_integrity(esci: dict[str, Any]) -> None:
    p = esci["pairs"]
    split_of: dict[str, str] = {}
    for qid, split in zip(p["query_id"], p["split"], strict=True):
        assert split_of.setdefault(qid, split) == split, qid
    assert set(split_of.values()) == {"train", "val", "test"}
    n_lab = sum(label is not None for label in p["label"])
    n_unl = len(p["label"]) - n_lab
    assert n_lab == 4000 and n_unl == 5 * 4000
    assert all(
        s == "train" for s, label in zip(p["split"], p["label"], strict=True) if label is None
    )
    assert all(c is not None for c in p["clean_label"])
    assert len(set(p["pair_id"])) == len(p["pair_id"])
    assert len(set(zip(p["query_id"], p["item_id"], strict=True))) == len(p["pair_id"])
    assert set(p["query_id"]) <= set(esci["queries"]["query_id"])
    assert set(p["item_id"]) <= set(esci["items"]["item_id"])
    stats = esci["ds"].manifest.stats
    assert stats["labelled_pairs"] == n_lab and stats["unlabelled_pairs"] == n_unl
    assert sum(v["labelled"] for v in stats["pairs_per_bucket"].values()) == n_lab


def test_items_and_queries_are_well_formed(esci: dict[str, Any]) -> None:
    items, queries = esci["items"], esci["queries"]
    assert all(t.strip() for t in items["title"]) and len(set(items["item_id"])) == len(
        items["item_id"]
    )
    assert all(isinstance(json.loads(a), dict) for a in items["attributes"])
    assert len(set(items["category"])) >= 6 and len(set(items["product_type"])) >= 40
    assert len(set(queries["text"])) == len(queries["text"])
    assert set(queries["bucket"]) == {"head", "torso", "tail"}
    freq = defaultdict(list)
    for b, f in zip(queries["bucket"], queries["frequency"], strict=True):
        freq[b].append(f)
    assert min(freq["head"]) >= max(freq["torso"]) >= max(freq["tail"])


def test_unlabelled_ratio_validation() -> None:
    with pytest.raises(DataError, match="pairs"):
        SynthConfig(pairs=0)
    with pytest.raises(ValueError, match="noise"):
        SynthConfig(noise=1.5)
    with pytest.raises(DataError, match="unlabeled_ratio"):
        SynthConfig(unlabeled_ratio=-1.0)
    with pytest.raises(DataError, match="scheme"):
        SynthConfig(scheme="graded")
    tables, stats = build_tables(SynthConfig(pairs=300, unlabeled_ratio=0.0, noise=0.0))
    assert stats["unlabelled_pairs"] == 0
    labels = tables["pairs"].column("label").to_pylist()
    assert labels == tables["pairs"].column("clean_label").to_pylist()


# -- tail difficulty -------------------------------------------------------------------------


def _by_bucket(esci: dict[str, Any], values: list[float]) -> dict[str, float]:
    out = defaultdict(list)
    for b, v in zip(esci["queries"]["bucket"], values, strict=True):
        out[b].append(v)
    return {b: float(np.mean(v)) for b, v in out.items()}


def test_tail_queries_are_lexically_harder(esci: dict[str, Any]) -> None:
    title = {
        i: set(TOKEN.findall(t.lower()))
        for i, t in zip(esci["items"]["item_id"], esci["items"]["title"], strict=True)
    }
    exact = defaultdict(list)
    p = esci["pairs"]
    for q, i, c in zip(p["query_id"], p["item_id"], p["clean_label"], strict=True):
        if c == "Exact":
            exact[q].append(title[i])
    overlap = []
    for q, text in zip(esci["queries"]["query_id"], esci["queries"]["text"], strict=True):
        tokens = set(TOKEN.findall(text))
        overlap.append(
            np.mean([len(tokens & t) / len(tokens) for t in exact[q]]) if exact[q] else np.nan
        )
    share = {
        b: float(
            np.nanmean(
                [o for o, bb in zip(overlap, esci["queries"]["bucket"], strict=True) if bb == b]
            )
        )
        for b in ("head", "tail")
    }
    assert share["tail"] < share["head"] - 0.15

    intents = [json.loads(s) for s in esci["queries"]["intent"]]
    typo = _by_bucket(esci, [float(i["typos"] > 0) for i in intents])
    rare = _by_bucket(esci, [float(i["type_term_kind"] == "rare") for i in intents])
    stated = _by_bucket(
        esci,
        [
            len(i["attributes"]) + (i["brand"] is not None) + (i["model"] is not None)
            for i in intents
        ],
    )
    assert typo["tail"] > typo["head"] + 0.3
    assert rare["head"] == 0.0 and rare["tail"] > 0.4
    assert stated["tail"] > stated["head"] + 1.0


def test_tail_combinations_never_appear_in_head(esci: dict[str, Any]) -> None:
    def atoms(intent: dict[str, Any]) -> frozenset:
        out = {(k, v) for k, v in intent["attributes"].items()}
        out |= {("brand", intent["brand"])} if intent["brand"] else set()
        out |= {("model", intent["model"])} if intent["model"] else set()
        return frozenset(out)

    head, tail = [], []
    for b, s in zip(esci["queries"]["bucket"], esci["queries"]["intent"], strict=True):
        intent = json.loads(s)
        (head if b == "head" else tail if b == "tail" else []).append(
            (intent["product_type"], atoms(intent))
        )
    assert tail and head
    for ptype, combo in tail:
        assert combo, "tail queries state at least one aspect"
        assert not any(ptype == h_type and combo <= h_combo for h_type, h_combo in head)


def test_rare_synonyms_never_occur_in_item_text(esci: dict[str, Any]) -> None:
    """No rare synonym occurs in any item text, and each has a word no item text can contain."""
    tax = build_taxonomy()
    item_text = esci["items"]["title"] + esci["items"]["description"]
    joined = " " + " ".join(" ".join(TOKEN.findall(t.lower())) for t in item_text) + " "
    # everything the generator can print: sampled text plus the whole taxonomy vocabulary
    printable = [*item_text, *(b for _, b in tax.brands), *(m for _, m in tax.models)]
    printable += [w for t in tax.types for w in (t.name, *t.synonyms)]
    printable += [v for values in tax.key_values for v in values] + list(tax.attribute_keys)
    printable += [s for c in tax.categories for s in c.blurbs]
    vocab = {tok for text in printable for tok in TOKEN.findall(text.lower())}
    for ptype in tax.types:
        for rare in ptype.rare_synonyms:
            found = f" {' '.join(TOKEN.findall(rare))} " in joined  # whole words only
            assert not found, rare
            assert any(tok not in vocab for tok in TOKEN.findall(rare)), rare
    used = [json.loads(s)["type_term_kind"] for s in esci["queries"]["intent"]]
    assert used.count("rare") > 0


# -- behaviour -------------------------------------------------------------------------------


def test_behavior_clicks_follow_relevance_and_position(esci: dict[str, Any]) -> None:
    b, p = esci["behavior"], esci["pairs"]
    grade = dict(zip(zip(p["query_id"], p["item_id"], strict=True), p["clean_label"], strict=True))
    clicks_by = defaultdict(list)
    by_pos = defaultdict(list)
    for q, i, c, pos in zip(b["query_id"], b["item_id"], b["clicks"], b["position"], strict=True):
        clicks_by[grade[(q, i)]].append(c)  # every logged pair exists in pairs
        by_pos[pos].append(c)
    ctr = {k: float(np.mean(v)) for k, v in clicks_by.items()}
    assert ctr["Exact"] > 3 * ctr["Irrelevant"]
    assert ctr["Exact"] > ctr["Substitute"] > ctr["Irrelevant"]
    band = [
        float(np.mean([c for k in ks for c in by_pos[k]])) for ks in ((1, 2), (3, 4, 5), (6, 7, 8))
    ]
    assert band[0] > band[1] > band[2]
    assert set(b["impressions"]) == {1}
    assert len(b["query_id"]) <= 3 * 4000


def test_users_have_time_ordered_sequences(esci: dict[str, Any]) -> None:
    b = esci["behavior"]
    events = defaultdict(list)
    for u, t in zip(b["user_id"], b["timestamp"], strict=True):
        events[u].append(t)
    assert all(ts == sorted(ts) for ts in events.values())
    lengths = sorted(len(ts) for ts in events.values())
    assert lengths[-1] >= 50 and np.median(lengths) >= 8
    assert len({q for q, c in zip(b["query_id"], b["clicks"], strict=True) if c}) > 10


# -- CLI -------------------------------------------------------------------------------------


def test_cli_synth_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--pairs", "2000"]) == 0
    assert (out / "manifest.json").is_file()
    before = (out / "manifest.json").read_text()
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(out), "--pairs", "2000"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == before
    assert main(["data", "synth", "--out", str(out), "--pairs", "2000", "--overwrite"]) == 0
    assert main(["data", "synth", "--out", str(tmp_path / "bad"), "--noise", "2"]) == 2
    assert "noise" in capsys.readouterr().err
