"""The prompt store and the causal-LM collation: rendering, slots, budgets, staleness, CoT files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptSpec, PromptStore
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import DataError, StaleArtifactError
from relkd.prompts import COT_SLOTS
from relkd.prompts.cot_template import ASPECT_WORDS
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import make_dataset, minilm_path

WORDS = {
    "Exact": "exact",
    "Substitute": "substitute",
    "Complement": "complement",
    "Irrelevant": "irrelevant",
}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prompt_data") / "ds"
    make_dataset(root, n_queries=12, items_per_query=6, unlabeled_per_query=2)
    return root


def spec(**kw) -> PromptSpec:
    return PromptSpec(label_words=WORDS, **kw)


def open_store(data_dir: Path, tokenizer, tmp: Path, **kw) -> PromptStore:
    return PromptStore.open_or_build(data_dir, tokenizer, spec(**kw), cache_dir=tmp)


def test_prompts_decode_to_the_rendered_template(data_dir, tokenizer, tmp_path) -> None:
    store = open_store(data_dir, tokenizer, tmp_path, mode="classifier")
    ds = CanonicalDataset(data_dir)
    n_labelled = int(np.sum(np.asarray(ds.table("pairs", ["label"]).column("label").is_valid())))
    assert store.num_pairs == n_labelled  # labelled pairs only, by default
    offsets = store.array("prompt_offsets")
    example = store.manifest["examples"][0]
    ids = store.array("prompt_tokens")[offsets[0] : offsets[1]].tolist()
    assert ids[0] == tokenizer.cls_token_id  # BERT's start token
    expected = tokenizer.decode(tokenizer(example["prompt"], add_special_tokens=False)["input_ids"])
    assert tokenizer.decode(ids[1:]) == expected
    assert example["prompt"].startswith("query: ") and example["prompt"].endswith("relevance:")
    assert "item: " in example["prompt"]


def test_cot_slots_point_at_their_values(data_dir, tokenizer, tmp_path) -> None:
    store = open_store(data_dir, tokenizer, tmp_path, mode="cot")
    ro, slots = store.array("response_offsets"), store.array("slots")
    aspects, labels = store.array("aspects"), store.array("label")
    end = store.special["end_id"]
    for row in range(store.num_pairs):
        resp = store.array("response_tokens")[ro[row] : ro[row + 1]].tolist()
        assert resp[-1] == end
        for j, slot in enumerate(COT_SLOTS):
            if slot == "verdict":
                word = WORDS[["Exact", "Substitute", "Complement", "Irrelevant"][labels[row]]]
            elif aspects[row, j] < 0:
                assert slots[row, j] == -1  # an unknown fact is left out of the CoT
                continue
            else:
                word = ASPECT_WORDS[ASPECT_VALUES[aspects[row, j]]]
            first = tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]
            assert resp[slots[row, j]] == first, (row, slot)


def test_budgets_cut_and_count(data_dir, tokenizer, tmp_path) -> None:
    wide = open_store(data_dir, tokenizer, tmp_path, max_item_tokens=512)
    narrow = open_store(data_dir, tokenizer, tmp_path, max_item_tokens=8)
    assert wide.manifest["truncated"]["item"] == 0
    assert narrow.manifest["truncated"]["item"] > 0
    assert narrow.prompt_lengths().max() < wide.prompt_lengths().max()
    assert narrow.root != wide.root  # other inputs, another store


def test_stale_and_corrupt_stores_are_refused(data_dir, tokenizer, tmp_path) -> None:
    store_dir = tmp_path / "fixed"
    PromptStore.open_or_build(data_dir, tokenizer, spec(), store_dir=store_dir)
    with pytest.raises(StaleArtifactError, match="stale") as exc:
        PromptStore.open_or_build(
            data_dir, tokenizer, spec(max_item_tokens=40), store_dir=store_dir
        )
    assert "max_item_tokens" in str(exc.value) and str(store_dir) in str(exc.value)
    with pytest.raises(StaleArtifactError, match="template_sha256"):
        PromptStore.open_or_build(data_dir, tokenizer, spec(mode="cot"), store_dir=store_dir)
    victim = store_dir / "prompt_tokens.npy"
    victim.write_bytes(victim.read_bytes()[:-8])
    with pytest.raises(DataError, match=r"prompt_tokens\.npy"):
        PromptStore.open_or_build(data_dir, tokenizer, spec(), store_dir=store_dir)


def test_cot_from_jsonl(data_dir, tokenizer, tmp_path) -> None:
    ds = CanonicalDataset(data_dir)
    pairs = ds.table("pairs", ["pair_id", "label"]).to_pylist()
    labelled = [p for p in pairs if p["label"] is not None]
    path = tmp_path / "cot.jsonl"
    rows = [
        {
            "pair_id": p["pair_id"],
            "cot": f"category: match. brand: not stated. model: match. attributes: mismatch. verdict: {WORDS[p['label']]}.",
        }
        for p in labelled[:10]
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    store = open_store(
        data_dir, tokenizer, tmp_path, mode="cot", cot_source="jsonl", cot_file=str(path)
    )
    stats = store.manifest["cot"]
    assert stats["file_rows"] == 10 and stats["unparsed"] == 0
    assert stats["labelled_without_cot"] == len(labelled) - 10
    # a pair with a CoT has all slots; one without has the verdict alone
    pid = store.array("pair_id").tolist()
    with_cot = pid.index(labelled[0]["pair_id"])
    without = pid.index(labelled[-1]["pair_id"])
    assert (store.array("slots")[with_cot] >= 0).all()
    assert store.array("slots")[without].tolist()[:4] == [-1] * 4
    assert store.array("slots")[without, -1] >= 0
    # editing the file makes the store stale (its hash is an input)
    path.write_text(path.read_text().replace("mismatch", "match"))
    other = open_store(
        data_dir, tokenizer, tmp_path, mode="cot", cot_source="jsonl", cot_file=str(path)
    )
    assert other.root != store.root


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"pair_id": "x", "cot": "a"}', "pair_id must be an integer"),
        ('{"pair_id": 10000}', "cot must be non-empty"),
        ('{"pair_id": 10000, "cot": "  "}', "cot must be non-empty"),
        ('{"pair_id": 3, "cot": "a"}', "not in the dataset"),
        ("not json", "not valid JSON"),
    ],
)
def test_bad_cot_file_names_file_line_and_field(data_dir, tokenizer, tmp_path, line, field) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"pair_id": 10007, "cot": "ok"}\n' + line + "\n")
    with pytest.raises(DataError, match=field) as exc:
        open_store(
            data_dir, tokenizer, tmp_path, mode="cot", cot_source="jsonl", cot_file=str(path)
        )
    assert str(path) in str(exc.value)


def test_rules_cot_needs_aspect_facts(tmp_path, tokenizer) -> None:
    root = tmp_path / "noaspects"
    make_dataset(root, n_queries=6, with_aspects=False)
    with pytest.raises(DataError, match="no aspect_\\* columns"):
        open_store(root, tokenizer, tmp_path, mode="cot")
    open_store(root, tokenizer, tmp_path, mode="classifier")  # a classifier needs no CoT


def test_collator_pads_right_and_marks_the_response(data_dir, tokenizer, tmp_path) -> None:
    store = open_store(data_dir, tokenizer, tmp_path, mode="multitask")
    rows = np.arange(5)
    train = PromptCollator(store, with_response=True)(rows)
    p_len = store.prompt_lengths()[rows]
    r_len = store.response_lengths()[rows]
    lengths = train["attention_mask"].sum(1).numpy()
    np.testing.assert_array_equal(lengths, p_len + r_len)
    np.testing.assert_array_equal(train["prompt_len"].numpy(), p_len)
    # right padding: real tokens first, pad after
    for b in range(5):
        assert (
            train["attention_mask"][b, : lengths[b]].all()
            and not train["attention_mask"][b, lengths[b] :].any()
        )
        assert train["response_mask"][b].sum() == r_len[b]
        assert not train["response_mask"][b, : p_len[b]].any()
    # multitask: the verdict is the first response token
    assert (train["slot_index"][:, -1] == train["prompt_len"]).all()
    label_ids = [
        tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in WORDS.values()
    ]
    verdict_tokens = train["input_ids"][torch.arange(5), train["slot_index"][:, -1]]
    assert all(
        int(t) == label_ids[int(y)] for t, y in zip(verdict_tokens, train["labels"], strict=True)
    )
    # evaluation batches hold the prompt only, and still know where the verdict goes
    ev = PromptCollator(store, with_response=False)(rows)
    np.testing.assert_array_equal(ev["attention_mask"].sum(1).numpy(), p_len)
    assert not ev["response_mask"].any()
    assert (ev["slot_index"][:, -1] == ev["prompt_len"]).all() and (
        ev["slot_index"][:, :4] == -1
    ).all()


def test_classifier_training_batches_skip_the_verdict_token(data_dir, tokenizer, tmp_path) -> None:
    store = open_store(data_dir, tokenizer, tmp_path, mode="classifier")
    batch = PromptCollator(store, with_response=True)(np.arange(4))
    np.testing.assert_array_equal(
        batch["attention_mask"].sum(1).numpy(), store.prompt_lengths()[:4]
    )
    assert (batch["slot_index"][:, -1] == batch["prompt_len"]).all()


def test_datamodule_prompt_mode(data_dir, tokenizer, tmp_path) -> None:
    dm = make_datamodule(
        data_dir,
        tokenizer,
        cache_dir=tmp_path,
        encoding="prompt",
        prompt_spec=spec(mode="cot"),
        batch_size=4,
    )
    dm.prepare_data()
    dm.setup()
    train = next(iter(dm.train_dataloader()))
    assert train["response_mask"].any()
    dm.test_splits = ("val", "test")
    loaders = dm.test_dataloader()
    seen = np.concatenate([b["pair_id"].numpy() for b in loaders[0]])
    assert sorted(seen) == sorted(dm.split_frame("val").pair_id)
    assert not next(iter(loaders[1]))["response_mask"].any()
    assert set(ASPECTS) and "aspects" in train
