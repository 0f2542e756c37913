"""Professional terms (robust interaction): the miner, the term-list artifact, whole-term
tokenization, the resized embeddings, term_type_ids, the store key, and a tiny training run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import BertConfig, BertModel

from datamodules import QueryItemDataModule, TokenizedStore
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import get_label_scheme
from relkd.errors import StaleArtifactError
from relkd.terms import TermList, add_terms, extend_embeddings, mine_terms, term_token_ids
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import minilm_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SS, NX = {"material": "Stainless Steel"}, {"model": "Nova X5"}
NOTE = {"note": "a long free text value of many words"}  # not term-shaped
# (brand, product type, colour, attributes); counts of items naming each term:
# zenvora 6, coffee maker 5, stainless steel 5, 64gb 4, air fryer 4, kitchenaid pro 4,
# nova x5 3, space grey 3, acme 2; "sofa" (4) and "black" (6) are one token already
ITEMS = [
    ("Zenvora", "Coffee Maker", "black", {**SS, **NX, **NOTE}),
    ("Zenvora", "Coffee Maker", "Space Grey", {**SS, **NX, **NOTE}),
    ("Zenvora", "Coffee Maker", "black", {**SS, **NX, **NOTE}),
    ("Zenvora", "Air Fryer", "Space Grey", SS),
    ("Zenvora", "Air Fryer", "black", {"model": "Zenvora"}),  # one item, named twice
    ("Zenvora", "sofa", "Space Grey", {}),
    ("KitchenAid Pro", "Coffee Maker", "black", SS),
    ("KitchenAid Pro", "Coffee Maker", "black", {"storage": "64GB"}),
    ("KitchenAid Pro", "Air Fryer", None, {"storage": "64GB"}),
    ("KitchenAid Pro", "Air Fryer", None, {"storage": "64GB"}),
    ("Acme", "sofa", "black", {"storage": "64GB"}),
    ("Acme", "sofa", None, {}),
    (None, "sofa", None, {}),
]
EXPECTED = [
    ("zenvora", 6),
    ("coffee maker", 5),
    ("stainless steel", 5),
    ("64gb", 4),
    ("air fryer", 4),
    ("kitchenaid pro", 4),
    ("nova x5", 3),
    ("space grey", 3),
]
QUERIES = [
    "zenvora coffee maker",
    "stainless steel air fryer",
    "64gb kitchenaid",
    "space grey sofa",
]


def title(brand, ptype, color, attrs) -> str:
    parts = [brand, attrs.get("model"), ptype, attrs.get("material"), attrs.get("storage"), color]
    return " ".join(p for p in parts if p)


def items_table(order: list[int] | None = None) -> pa.Table:
    rows = [ITEMS[i] for i in (order or range(len(ITEMS)))]
    return pa.table(
        {
            "item_id": [f"i{j}" for j in range(len(rows))],
            "title": [title(*r) for r in rows],
            "brand": [r[0] for r in rows],
            "product_type": [r[1] for r in rows],
            "color": [r[2] for r in rows],
            "attributes": [json.dumps(r[3]) if r[3] else None for r in rows],
        }
    )


def write_catalogue(root: Path) -> Path:
    labels = get_label_scheme("esci").labels
    items = items_table()
    pairs: dict[str, list] = {k: [] for k in ("pair_id", "query_id", "item_id", "label", "split")}
    for q in range(len(QUERIES)):
        for j in range(items.num_rows):
            pairs["pair_id"].append(100 * q + j)
            pairs["query_id"].append(f"q{q}")
            pairs["item_id"].append(f"i{j}")
            pairs["label"].append(labels[(q + j) % len(labels)])
            pairs["split"].append(("train", "train", "val", "test")[q])
    queries = pa.table(
        {
            "query_id": [f"q{q}" for q in range(len(QUERIES))],
            "text": QUERIES,
            "bucket": ["head", "torso", "tail", "head"],
        }
    )
    CanonicalDataset.write(
        root,
        {"items": items, "queries": queries, "pairs": pa.table(pairs)},
        name="catalogue",
        label_scheme="esci",
        source={"kind": "test"},
    )
    return root


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("terms") / "catalogue")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("terms_cache") / "tokenized"


def make_dm(data_dir, tokenizer, cache_dir, **kw) -> QueryItemDataModule:
    kw = {"professional_terms": True, "terms_min_count": 3, "batch_size": 8, **kw}
    dm = make_datamodule(data_dir, tokenizer, cache_dir=cache_dir, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


# -- the miner --------------------------------------------------------------------------


def test_miner_finds_brands_types_and_attribute_values(tokenizer):
    mined = mine_terms(items_table(), tokenizer, min_count=3, max_terms=100)
    assert [(m.term, m.count) for m in mined] == EXPECTED
    assert {m.term: m.pieces for m in mined}["stainless steel"] == 2


def test_miner_respects_min_count_and_max_terms_and_is_deterministic(tokenizer):
    four = mine_terms(items_table(), tokenizer, min_count=4, max_terms=100)
    assert [(m.term, m.count) for m in four] == EXPECTED[:6]
    top = mine_terms(items_table(), tokenizer, min_count=1, max_terms=3)
    assert [m.term for m in top] == ["zenvora", "coffee maker", "stainless steel"]
    low = mine_terms(items_table(), tokenizer, min_count=1, max_terms=100)
    assert ("acme", 2) in [(m.term, m.count) for m in low]
    assert not {"sofa", "black", "note"} & {m.term for m in low}  # single tokens, free text
    shuffled = list(np.random.default_rng(0).permutation(len(ITEMS)))
    again = mine_terms(items_table(shuffled), tokenizer, min_count=3, max_terms=100)
    assert again == mine_terms(items_table(), tokenizer, min_count=3, max_terms=100)


# -- tokenizer and embeddings -----------------------------------------------------------


def test_added_terms_tokenize_whole(tokenizer):
    terms = [t for t, _ in EXPECTED]
    ext = add_terms(tokenizer, terms)
    assert len(tokenizer) == 30522 and len(ext) == 30522 + len(terms)  # base unchanged
    ids = term_token_ids(ext, terms)
    assert ids.tolist() == list(range(30522, 30522 + len(terms)))
    text = "Zenvora Nova X5 Coffee Maker, Stainless Steel, 64GB in SPACE GREY"
    assert ext.tokenize(text) == [
        "zenvora", "nova x5", "coffee maker", ",", "stainless steel", ",", "64gb", "in",
        "space grey",
    ]  # fmt: skip
    assert ext.tokenize("zenvoras 64gbx") == tokenizer.tokenize("zenvoras 64gbx")  # whole words
    assert ext.tokenize("stainless  steel") == ["stainless", "steel"]


def test_resized_embeddings_keep_old_rows_and_init_new_rows_to_the_sub_token_mean(tokenizer):
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=16))  # fmt: skip
    old = enc.get_input_embeddings().weight.detach().clone()
    terms = [t for t, _ in EXPECTED]
    ids = extend_embeddings(enc, tokenizer, terms)
    new = enc.get_input_embeddings().weight.detach()
    assert new.shape == (len(tokenizer) + len(terms), 8) and enc.config.vocab_size == new.shape[0]
    assert torch.equal(new[: len(tokenizer)], old)
    for term, tid in zip(terms, ids.tolist(), strict=True):
        pieces = tokenizer(term, add_special_tokens=False)["input_ids"]
        assert len(pieces) >= 2
        torch.testing.assert_close(new[tid], old[pieces].mean(0))
    # a checkpoint trained with another term list of the same size is refused, not misread
    other = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=16))  # fmt: skip
    extend_embeddings(other, tokenizer, [*terms[:-1], "acme"])
    with pytest.raises(RuntimeError, match="another professional-term list"):
        enc.load_state_dict(other.state_dict())
    enc.load_state_dict(enc.state_dict())


# -- the datamodule ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["packed", "slots"])
def test_term_type_ids_mark_exactly_the_term_tokens(data_dir, tokenizer, cache_dir, layout):
    dm = make_dm(data_dir, tokenizer, cache_dir, layout=layout, max_length=32, max_query_tokens=8)
    assert dm.terms.terms == [t for t, _ in EXPECTED]
    term_ids = dm.term_ids
    assert term_ids.tolist() == dm.tokenizer.convert_tokens_to_ids(dm.terms.terms)
    marked = 0
    for batch in dm.train_dataloader():
        ids, mask, tt = batch["input_ids"], batch["attention_mask"], batch["term_type_ids"]
        want = torch.from_numpy(np.isin(ids.numpy(), term_ids)) & mask.bool()
        assert torch.equal(tt.bool(), want)
        assert (tt[ids == tokenizer.cls_token_id] == 0).all() and (tt[mask == 0] == 0).all()
        marked += int(tt.sum())
    assert marked > 0
    # the store holds whole terms: item 0's title is cut into fewer tokens
    s = dm.store
    off = s.view("item_offsets")
    item0 = s.view("item_tokens")[off[0] : off[1]].tolist()
    zen, nova = dm.tokenizer.convert_tokens_to_ids(["zenvora", "nova x5"])
    assert item0[:2] == [zen, nova]


def test_store_is_keyed_by_the_extended_vocabulary(data_dir, tokenizer, cache_dir, tmp_path):
    plain = make_dm(data_dir, tokenizer, cache_dir, professional_terms=False)
    terms = make_dm(data_dir, tokenizer, cache_dir)
    assert plain.store.root != terms.store.root
    a, b = plain.store.manifest["inputs"], terms.store.manifest["inputs"]
    assert a["vocab_sha256"] != b["vocab_sha256"] and a["tokenizer_name"] == b["tokenizer_name"]
    assert terms.store.special["vocab_size"] == len(tokenizer) + len(EXPECTED)
    assert terms.terms.root.parent == cache_dir.parent / "terms"
    # a store built without terms is never served to a run with terms
    store_dir = tmp_path / "store"
    TokenizedStore.open_or_build(data_dir, tokenizer, store_dir=store_dir)
    with pytest.raises(StaleArtifactError, match="vocab_sha256"):
        make_datamodule(
            data_dir, tokenizer, cache_dir=cache_dir, store_dir=store_dir, professional_terms=True
        ).prepare_data()


def test_stale_term_list_is_refused_not_rebuilt(data_dir, tokenizer, tmp_path):
    root = tmp_path / "terms"
    built = TermList.open_or_build(data_dir, tokenizer, min_count=3, max_terms=50, root=root)
    assert len(built) == len(EXPECTED)
    path = root / "terms.json"
    before = path.stat().st_mtime_ns
    with pytest.raises(StaleArtifactError, match=r"min_count 3 \(store\) != 4") as exc:
        TermList.open_or_build(data_dir, tokenizer, min_count=4, max_terms=50, root=root)
    assert "\n" not in str(exc.value) and str(root) in str(exc.value)
    assert path.stat().st_mtime_ns == before
    path.write_text(path.read_text().replace("zenvora", "zenvorb"))  # same size, other content
    with pytest.raises(StaleArtifactError, match="edited after it was built"):
        TermList.open_or_build(data_dir, tokenizer, min_count=3, max_terms=50, root=root)
    assert "zenvorb" in path.read_text()  # refused, not rebuilt


# -- end to end -------------------------------------------------------------------------


def test_tiny_training_run_with_slots_and_professional_terms(
    tmp_path: Path, shared_data_root: Path, capsys
):
    from relkd.cli import main
    from relkd.config import compose
    from relkd.serving.student_loader import load_student
    from relkd.train import run_training
    from tests.conftest import QUICKSTART, tiny_overrides

    extra = {
        "data.layout": "slots",
        "data.professional_terms": True,
        "data.terms.min_count": 5,
        "data.terms.max_terms": 200,
        "data.max_length": 48,
        "trainer.max_steps": 6,
    }
    overrides = tiny_overrides(tmp_path / "runs", shared_data_root, **extra)
    run = run_training(compose(QUICKSTART, overrides))
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["overall"]["ndcg@10"] <= 1.0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    rows = ckpt["state_dict"]["net.encoder.embeddings.word_embeddings.weight"].shape[0]
    assert "net.term_type_embeddings.weight" in ckpt["state_dict"]
    # the checkpoint reloads into a rebuilt, equally resized encoder (export / serving path)
    student = load_student(run, "last")
    n_terms = rows - 30522
    assert n_terms > 10 and student.net.encoder.get_input_embeddings().weight.shape[0] == rows
    # `relkd terms build` opens the same list and reports its effect on titles
    assert main(["terms", "build", str(QUICKSTART), *overrides]) == 0
    out = capsys.readouterr().out
    assert f": {n_terms} professional terms" in out and "tokens become" in out
