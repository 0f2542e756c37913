"""The slot layout (robust interaction's dynamic-length representation): query and item in fixed
slots, all-padding columns pruned per batch without moving any token's position."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from datamodules import PairCollator, QueryItemDataModule
from relkd.errors import ConfigError
from relkd.nets.cross_encoder import CrossEncoder
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import make_dataset, minilm_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MAX_LENGTH, MAX_QUERY = 40, 6
Q, T = MAX_QUERY, MAX_LENGTH - 3 - MAX_QUERY


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slots") / "tiny"
    make_dataset(root, n_queries=12, items_per_query=8)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slots_cache")


def make_dm(data_dir, tokenizer, cache_dir, **kw) -> QueryItemDataModule:
    kw = {"max_length": MAX_LENGTH, "max_query_tokens": MAX_QUERY, "layout": "slots", **kw}
    dm = make_datamodule(data_dir, tokenizer, cache_dir=cache_dir, batch_size=8, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def store(data_dir, tokenizer, cache_dir):
    return make_dm(data_dir, tokenizer, cache_dir).store


@pytest.fixture(scope="module")
def term_ids(tokenizer) -> np.ndarray:
    """Stand-in term ids: words the tiny dataset uses a lot (the collator only needs ids)."""
    return np.asarray(tokenizer.convert_tokens_to_ids(["oak", "chair", "red", "acme"]))


def collators(store, term_ids, **kw) -> tuple[PairCollator, PairCollator]:
    common = {"max_length": MAX_LENGTH, "layout": "slots", "term_ids": term_ids, **kw}
    return (
        PairCollator(store, prune_padding=False, **common),
        PairCollator(store, prune_padding=True, **common),
    )


def row_batches(store, size: int = 8) -> list[np.ndarray]:
    rows = np.random.default_rng(0).permutation(store.num_pairs)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def cross_encoder(vocab: int, pooling: str = "cls") -> CrossEncoder:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH + 8,
    )
    net = CrossEncoder(BertModel(config), num_labels=4, pooling=pooling, term_types=True)
    # zero-init term types and std-0.02 positions would barely move the logits: make both
    # count, so a token at a shifted position or with a lost term type shows
    torch.nn.init.normal_(net.term_type_embeddings.weight)
    torch.nn.init.normal_(net.encoder.embeddings.position_embeddings.weight)
    return net.eval()


def model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in CrossEncoder.input_keys if k in batch}


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_fixed_and_pruned_batches_give_the_same_logits(store, tokenizer, term_ids, pooling):
    fixed, pruned = collators(store, term_ids)
    net = cross_encoder(len(tokenizer), pooling)
    narrower = 0
    with torch.no_grad():
        for rows in row_batches(store)[:6]:
            a, b = fixed(rows), pruned(rows)
            narrower += b["input_ids"].shape[1] < a["input_ids"].shape[1]
            torch.testing.assert_close(
                net(**model_inputs(a))["logits"],
                net(**model_inputs(b))["logits"],
                atol=1e-5,
                rtol=0,
            )
    assert narrower == 6  # the comparison is not vacuous: pruning removed columns


def test_fixed_batches_are_max_length_wide_and_pruned_ones_have_no_padding_column(store, term_ids):
    fixed, pruned = collators(store, term_ids)
    for rows in row_batches(store):
        a, b = fixed(rows), pruned(rows)
        assert a["input_ids"].shape == (len(rows), MAX_LENGTH)
        assert (b["attention_mask"].sum(0) > 0).all()
        # pruned width: 3 specials + the longest query + the longest item of the batch
        q = (a["attention_mask"][:, 1 : Q + 1]).sum(1).max()
        i = (a["attention_mask"][:, Q + 2 : Q + T + 2]).sum(1).max()
        assert b["input_ids"].shape[1] == 3 + q + i


def test_pruned_batch_is_the_fixed_one_with_columns_removed(store, term_ids):
    """Scattering a pruned batch back to its position_ids rebuilds the fixed batch exactly:
    ids, mask, token types and term types lost the same columns."""
    fixed, pruned = collators(store, term_ids)
    keys = ("input_ids", "attention_mask", "token_type_ids", "term_type_ids")
    seen_terms = 0
    for rows in row_batches(store):
        a, b = fixed(rows), pruned(rows)
        assert set(keys) | {"position_ids"} <= set(a) & set(b)
        torch.testing.assert_close(
            a["position_ids"], torch.arange(MAX_LENGTH).expand_as(a["input_ids"])
        )
        pos = b["position_ids"]
        assert (pos == pos[:1]).all() and (pos[0].diff() > 0).all()
        for key in keys:
            full = torch.full_like(a[key], -1)
            full.scatter_(1, pos, b[key])
            kept = full != -1
            torch.testing.assert_close(full[kept], a[key][kept])
            assert (a[key][~kept] == (fixed.pad_id if key == "input_ids" else 0)).all()
        seen_terms += int(b["term_type_ids"].sum())
    assert seen_terms > 0


def test_item_tokens_sit_at_their_fixed_slot_columns(store, tokenizer, term_ids):
    _, pruned = collators(store, term_ids)
    qo, io = store.view("query_offsets"), store.view("item_offsets")
    rows = row_batches(store)[0]
    b = pruned(rows)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for r, row in enumerate(rows):
        q_row, i_row = int(store.view("query_row")[row]), int(store.view("item_row")[row])
        q = store.view("query_tokens")[qo[q_row] : qo[q_row + 1]][:Q].tolist()
        item = store.view("item_tokens")[io[i_row] : io[i_row + 1]][:T].tolist()
        real = b["attention_mask"][r].bool()
        ids, pos, types = (
            b["input_ids"][r][real],
            b["position_ids"][r][real],
            b["token_type_ids"][r][real],
        )
        assert ids.tolist() == [cls, *q, sep, *item, sep]
        assert pos.tolist() == [
            0,
            *range(1, 1 + len(q)),
            Q + 1,
            *range(Q + 2, Q + 2 + len(item)),
            Q + T + 2,
        ]
        assert types.tolist() == [0] * (len(q) + 2) + [1] * (len(item) + 1)
        is_term = np.isin(ids.numpy(), term_ids).astype(np.int64)
        assert b["term_type_ids"][r][real].tolist() == is_term.tolist()
        assert (b["term_type_ids"][r][~real] == 0).all()


def test_pad_to_multiple_of_pads_pruned_batches_with_masked_columns(store, tokenizer, term_ids):
    fixed, pruned = collators(store, term_ids, pad_to_multiple_of=16)
    _, plain = collators(store, term_ids)
    net = cross_encoder(len(tokenizer))
    for rows in row_batches(store)[:4]:
        b, c = pruned(rows), plain(rows)
        w = c["input_ids"].shape[1]
        assert b["input_ids"].shape[1] % 16 == 0 and b["input_ids"].shape[1] - w < 16
        assert (b["attention_mask"][:, w:] == 0).all() and (b["term_type_ids"][:, w:] == 0).all()
        assert fixed(rows)["input_ids"].shape[1] == 48  # 40 rounded up
        with torch.no_grad():
            torch.testing.assert_close(
                net(**model_inputs(b))["logits"],
                net(**model_inputs(c))["logits"],
                atol=1e-5,
                rtol=0,
            )


def test_pair_lengths_follow_the_slot_layout(data_dir, tokenizer, cache_dir, store, term_ids):
    pruned_dm = make_dm(data_dir, tokenizer, cache_dir, prune_padding=True)
    fixed_dm = make_dm(data_dir, tokenizer, cache_dir, prune_padding=False)
    assert (fixed_dm.pair_lengths() == MAX_LENGTH).all()
    lengths = pruned_dm.pair_lengths()
    _, pruned = collators(store, term_ids)
    for row in range(0, store.num_pairs, 7):
        assert pruned(np.array([row]))["input_ids"].shape[1] == lengths[row]
    assert lengths.max() <= MAX_LENGTH
    batch = next(iter(pruned_dm.train_dataloader()))
    assert "position_ids" in batch and (batch["attention_mask"].sum(0) > 0).all()


def test_an_item_slot_under_one_token_is_refused(data_dir, tokenizer, cache_dir, store):
    with pytest.raises(ConfigError, match="item slot of 0 tokens"):
        make_datamodule(data_dir, tokenizer, layout="slots", max_length=9, max_query_tokens=6)
    with pytest.raises(ConfigError, match="item slot of -1 tokens"):
        PairCollator(store, layout="slots", max_length=8)
    with pytest.raises(ConfigError, match="slots"):
        make_datamodule(data_dir, tokenizer, layout="slots", encoding="bi")
