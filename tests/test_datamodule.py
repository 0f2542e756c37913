"""QueryItemDataModule: tokenized store, collation, samplers, DDP sharding, caching."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import (
    LengthBucketBatchSampler,
    PairCollator,
    QueryGroupedBatchSampler,
    QueryItemDataModule,
    SequentialBatchSampler,
    TokenizedStore,
)
from datamodules import tokenized_store as ts
from relkd.errors import DataError, StaleArtifactError
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import make_dataset, minilm_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dm") / "tiny"
    make_dataset(root, n_queries=18, items_per_query=8)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def make_dm(data_dir, tokenizer, cache_dir, **kw) -> QueryItemDataModule:
    dm = make_datamodule(data_dir, tokenizer, cache_dir=cache_dir, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def dm(data_dir, tokenizer, cache_dir) -> QueryItemDataModule:
    return make_dm(data_dir, tokenizer, cache_dir, batch_size=8)


def texts(data_dir):
    """pair_id -> (query text, item text joined like the store does)."""
    from relkd.data.canonical_dataset import CanonicalDataset

    ds = CanonicalDataset(data_dir)
    q = {r["query_id"]: r["text"] for r in ds.table("queries").to_pylist()}
    items = {}
    for r in ds.table("items").to_pylist():
        parts = [r.get(f) for f in ts.DEFAULT_ITEM_FIELDS]
        items[r["item_id"]] = " | ".join(p.strip() for p in parts if p and p.strip())
    return {
        r["pair_id"]: (q[r["query_id"]], items[r["item_id"]]) for r in ds.table("pairs").to_pylist()
    }


def ids_of(tokenizer, text, n):
    return tokenizer(text, add_special_tokens=False, truncation=True, max_length=n)["input_ids"]


# -- cross / bi collation ---------------------------------------------------------------


def test_cross_batch_matches_tokenizer_and_decodes(dm, tokenizer, data_dir):
    by_pid = texts(data_dir)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) >= {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "labels",
        "pair_id",
        "query_index",
        "bucket",
        "aspects",
    }
    for row in range(len(batch["pair_id"])):
        query, item = by_pid[int(batch["pair_id"][row])]
        q, i = ids_of(tokenizer, query, 32), ids_of(tokenizer, item, 96)
        i = i[: 128 - 3 - len(q)]
        expected = [tokenizer.cls_token_id, *q, tokenizer.sep_token_id, *i, tokenizer.sep_token_id]
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :n].tolist() == expected
        assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()
        decoded = tokenizer.decode(batch["input_ids"][row, :n])
        assert decoded == f"[CLS] {tokenizer.decode(q)} [SEP] {tokenizer.decode(i)} [SEP]"
        types = batch["token_type_ids"][row].tolist()
        assert types == [0] * (len(q) + 2) + [1] * (len(i) + 1) + [0] * (len(types) - n)


def test_dynamic_padding_width_is_longest_row(dm):
    widths = set()
    for batch in dm.train_dataloader():
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == int(lengths.max())
        assert batch["input_ids"].dtype == torch.int64
        widths.add(batch["input_ids"].shape[1])
    assert len(widths) > 1  # not padded to a fixed length


@pytest.mark.parametrize("truncation", ["query_first", "longest_first"])
def test_truncation_respects_max_length(data_dir, tokenizer, cache_dir, truncation):
    dm = make_dm(data_dir, tokenizer, cache_dir, max_length=12, truncation=truncation)
    store = dm.store
    q_len, i_len = store.query_lengths(), store.item_lengths()
    saw_cut = False
    for batch in dm.val_dataloader():
        assert batch["input_ids"].shape[1] <= 12
        sep = (batch["input_ids"] == tokenizer.sep_token_id).int()
        for row in range(len(batch["pair_id"])):
            qk = int(torch.nonzero(sep[row])[0]) - 1
            n = int(batch["attention_mask"][row].sum())
            ik = n - qk - 3
            ql, il = int(q_len[batch["query_index"][row]]), int(i_len[batch["item_index"][row]])
            if ql + il > 9:
                saw_cut = True
                assert n == 12
                if truncation == "query_first":
                    assert qk == min(ql, 9)
                else:  # the longer side is trimmed first; an even split when both are long
                    assert qk == min(ql, max(9 - il, 5))
            else:
                assert (qk, ik) == (ql, il)
    assert saw_cut


def test_bi_mode_shapes(data_dir, tokenizer, cache_dir):
    dm = make_dm(data_dir, tokenizer, cache_dir, encoding="bi", batch_size=6, max_length=40)
    batch = next(iter(dm.train_dataloader()))
    assert "input_ids" not in batch and "token_type_ids" not in batch
    qi, qm = batch["query_input_ids"], batch["query_attention_mask"]
    ii, im = batch["item_input_ids"], batch["item_attention_mask"]
    assert qi.shape == qm.shape and ii.shape == im.shape
    assert qi.shape[0] == ii.shape[0] == 6
    assert qi.shape[1] == int(qm.sum(1).max()) and ii.shape[1] == int(im.sum(1).max()) <= 40
    store = dm.store
    q_len = store.query_lengths()[batch["query_index"].numpy()]
    assert qm.sum(1).tolist() == (q_len + 2).tolist()
    assert (qi[:, 0] == 101).all() and (ii[:, 0] == 101).all()
    rows = torch.arange(6)
    assert (qi[rows, qm.sum(1) - 1] == 102).all() and (ii[rows, im.sum(1) - 1] == 102).all()


def test_no_token_types_option(data_dir, tokenizer, cache_dir):
    dm = make_dm(data_dir, tokenizer, cache_dir, token_type_ids=False, pad_to_multiple_of=8)
    batch = next(iter(dm.val_dataloader()))
    assert "token_type_ids" not in batch
    assert batch["input_ids"].shape[1] % 8 == 0


# -- samplers -----------------------------------------------------------------------------


def test_grouped_batches_one_query_per_group_with_label_diversity(tmp_path, tokenizer):
    # Skewed labels: most items Exact; a random group of 4 rarely covers many labels.
    root = tmp_path / "skew"
    make_dataset(root, n_queries=30, items_per_query=12, label_weights=(10, 1, 1, 1), seed=3)
    dm = make_dm(root, tokenizer, tmp_path / "c", group_size=4, queries_per_batch=3)
    k = 4
    grouped_distinct = []
    for batch in dm.train_dataloader():
        groups_q = batch["query_index"].view(-1, k)
        groups_l = batch["labels"].view(-1, k)
        assert (groups_q == groups_q[:, :1]).all()  # one query per group
        assert len(batch["pair_id"]) % k == 0 and len(batch["pair_id"]) <= 3 * k
        for g in range(len(groups_q)):
            assert len(set(batch["pair_id"].view(-1, k)[g].tolist())) == k  # no duplicates
            grouped_distinct.append(len(set(groups_l[g].tolist())))
    # The same items drawn uniformly at random, 4 per group.
    rng = np.random.default_rng(0)
    frame = dm.split_frame("train")
    random_distinct = []
    for q in np.unique(frame.query_index):
        labels = frame.labels[frame.query_index == q]
        for _ in range(3):
            random_distinct.append(len(set(rng.choice(labels, 4, replace=False).tolist())))
    assert np.mean(grouped_distinct) > np.mean(random_distinct) + 0.5


def test_grouped_sampler_skips_and_pads_small_queries():
    # query 0: 1 row (skipped), query 1: 3 rows (padded to 4), query 2: 9 rows (3 groups)
    query = np.array([0] + [1] * 3 + [2] * 9)
    strata = np.array([0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 1, 2, 3])
    s = QueryGroupedBatchSampler(query, strata, group_size=4, queries_per_batch=1, seed=0)
    batches = [np.asarray(b) for b in s]
    assert len(batches) == len(s) == 4
    assert all(len(b) == 4 for b in batches)
    assert not any(0 in b for b in batches)
    small = [b for b in batches if query[b[0]] == 1]
    assert len(small) == 1 and sorted(set(small[0].tolist())) == [1, 2, 3]
    for b in batches:
        if query[b[0]] == 2:
            assert len(set(strata[b].tolist())) == 4  # all four labels in every group


def padding_tokens(loader) -> int:
    return sum(int((b["attention_mask"] == 0).sum()) for b in loader)


def test_length_bucketing_reduces_padding(data_dir, tokenizer, cache_dir):
    kw = dict(batch_size=8, mega_batch_factor=50)
    plain = make_dm(data_dir, tokenizer, cache_dir, length_bucketing=False, **kw)
    bucketed = make_dm(data_dir, tokenizer, cache_dir, length_bucketing=True, **kw)
    assert padding_tokens(bucketed.train_dataloader()) < 0.5 * padding_tokens(
        plain.train_dataloader()
    )


def all_samplers(n=103):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 100, n)
    query = np.sort(rng.integers(0, 20, n))
    strata = rng.integers(0, 4, n)
    return {
        "bucket": lambda **kw: LengthBucketBatchSampler(lengths, 8, **kw),
        "random": lambda **kw: LengthBucketBatchSampler(lengths, 8, bucketing=False, **kw),
        "grouped": lambda **kw: QueryGroupedBatchSampler(query, strata, 4, 2, **kw),
        "sequential": lambda **kw: SequentialBatchSampler(
            lengths, 8, **{k: v for k, v in kw.items() if k != "seed"}
        ),
    }


@pytest.mark.parametrize("name", ["bucket", "random", "grouped"])
def test_samplers_deterministic_per_seed_and_epoch(name):
    make = all_samplers()[name]
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    assert list(a) == list(b)
    assert list(a) != list(c)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first


@pytest.mark.parametrize("name", ["bucket", "random", "grouped", "sequential"])
@pytest.mark.parametrize("drop", [0, 1])
def test_samplers_shard_disjointly_with_equal_counts(name, drop):
    make = all_samplers(n=103 - 8 * drop)
    full = [tuple(b) for b in make[name](seed=5, num_replicas=1, rank=0)]
    ranks = [[tuple(b) for b in make[name](seed=5, num_replicas=2, rank=r)] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(make[name](seed=5, num_replicas=2, rank=1))
    assert set(ranks[0]) | set(ranks[1]) == set(full)
    if len(full) % 2 == 0:
        assert not set(ranks[0]) & set(ranks[1])
    else:  # one batch repeated to even the counts
        assert len(set(ranks[0]) & set(ranks[1])) == 1


def test_every_labelled_val_pair_exactly_once(dm, data_dir):
    from relkd.data.canonical_dataset import CanonicalDataset

    rows = CanonicalDataset(data_dir).table("pairs").to_pylist()
    expected = sorted(r["pair_id"] for r in rows if r["split"] == "val" and r["label"])
    seen = [int(p) for b in dm.val_dataloader() for p in b["pair_id"]]
    assert sorted(seen) == expected
    frame = dm.split_frame("val")
    assert sorted(frame.pair_id.tolist()) == expected
    assert frame.labels.min() >= 0 and frame.labels.dtype == np.int64
    lengths = [int(b["attention_mask"].sum(1).max()) for b in dm.val_dataloader()]
    assert lengths == sorted(lengths, reverse=True)  # length-sorted for speed


def test_test_splits_serve_several_loaders(dm):
    dm.test_splits = ("val", "test")
    try:
        loaders = dm.test_dataloader()
        assert isinstance(loaders, list) and len(loaders) == 2
        for split, loader in zip(("val", "test"), loaders, strict=True):
            seen = sorted(int(p) for b in loader for p in b["pair_id"])
            assert seen == sorted(dm.split_frame(split).pair_id.tolist())
    finally:
        dm.test_splits = ("test",)


def test_labels_and_buckets_match_dataset(dm, data_dir):
    from relkd.data.canonical_dataset import CanonicalDataset
    from relkd.data.schema import ASPECT_VALUES, ASPECTS, BUCKETS

    ds = CanonicalDataset(data_dir)
    bucket_of = {r["query_id"]: r["bucket"] for r in ds.table("queries").to_pylist()}
    rows = {r["pair_id"]: r for r in ds.table("pairs").to_pylist()}
    labels = ds.scheme.labels
    for batch in dm.test_dataloader():
        for j, pid in enumerate(batch["pair_id"].tolist()):
            r = rows[pid]
            assert labels[int(batch["labels"][j])] == r["label"]
            assert BUCKETS[int(batch["bucket"][j])] == bucket_of[r["query_id"]]
            for a, code in zip(ASPECTS, batch["aspects"][j].tolist(), strict=True):
                assert (ASPECT_VALUES[code] if code >= 0 else None) == r[f"aspect_{a}"]


# -- cache --------------------------------------------------------------------------------


def test_store_is_memmapped(dm):
    store = dm.store
    for name in ("query_tokens", "item_tokens", "query_offsets", "pair_id", "label", "item_row"):
        assert isinstance(store.array(name), np.memmap), name
    assert store.array("item_tokens").dtype == np.uint16


def test_cache_reused_without_retokenizing(data_dir, tokenizer, cache_dir, dm, monkeypatch):
    tokens = dm.store.root / "item_tokens.bin"
    before = tokens.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("retokenized")

    monkeypatch.setattr(ts, "_tokenize_to", boom)
    again = make_dm(data_dir, tokenizer, cache_dir, batch_size=4)
    assert again.store.root == dm.store.root
    assert tokens.stat().st_mtime_ns == before
    # a different max length is a different store (a new key), built next to it
    monkeypatch.undo()
    other = make_dm(data_dir, tokenizer, cache_dir, max_item_tokens=20)
    assert other.store.root != dm.store.root and other.store.root.parent == dm.store.root.parent


def test_stale_store_refused(tmp_path, tokenizer):
    root = tmp_path / "ds"
    make_dataset(root, n_queries=6, seed=1)
    store_dir = tmp_path / "store"
    TokenizedStore.open_or_build(root, tokenizer, store_dir=store_dir)
    with pytest.raises(StaleArtifactError, match=r"max_item_tokens 96 \(store\) != 64") as exc:
        TokenizedStore.open_or_build(root, tokenizer, store_dir=store_dir, max_item_tokens=64)
    assert str(store_dir) in str(exc.value) and "Delete" in str(exc.value)
    make_dataset(root, n_queries=6, seed=2, overwrite=True)  # the dataset changes under the store
    with pytest.raises(StaleArtifactError, match="dataset table items sha256"):
        make_datamodule(root, tokenizer, store_dir=store_dir).prepare_data()


@pytest.mark.parametrize(
    ("victim", "action"),
    [("item_tokens.bin", "truncate"), ("label.npy", "delete"), ("query_offsets.npy", "truncate")],
)
def test_corrupt_store_names_file(tmp_path, tokenizer, victim, action):
    root = tmp_path / "ds"
    make_dataset(root, n_queries=6)
    store = TokenizedStore.open_or_build(root, tokenizer, store_dir=tmp_path / "s")
    path = store.root / victim
    if action == "delete":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DataError, match=victim):
        TokenizedStore.open_or_build(root, tokenizer, store_dir=tmp_path / "s")


def test_nothing_written_beside_dataset(tmp_path, tokenizer, monkeypatch):
    root = tmp_path / "data" / "ds"
    make_dataset(root, n_queries=6)
    before = sorted(p.name for p in (tmp_path / "data").iterdir())
    monkeypatch.chdir(tmp_path)
    dm = make_datamodule(root, tokenizer)
    dm.prepare_data()
    dm.setup()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == before
    assert dm.store.root.parent == Path("data_cache") / "tokenized"
    assert dm.store.root.name.startswith("tiny-")


# -- pickling / workers / Lightning ------------------------------------------------------


def test_loaders_pickle_and_reopen_memmaps_lazily(dm):
    loader = dm.val_dataloader()
    expected = next(iter(loader))
    clone = pickle.loads(pickle.dumps((loader.dataset, loader.sampler, loader.collate_fn)))
    dataset, sampler, collate = clone
    assert isinstance(collate, PairCollator) and collate.store._arrays == {}
    got = collate(dataset[next(iter(sampler))])
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key


def test_worker_processes(data_dir, tokenizer, cache_dir):
    dm = make_dm(data_dir, tokenizer, cache_dir, num_workers=2, batch_size=16)
    single = make_dm(data_dir, tokenizer, cache_dir, num_workers=0, batch_size=16)
    a = [b["pair_id"].tolist() for b in dm.train_dataloader()]
    b = [b["pair_id"].tolist() for b in single.train_dataloader()]
    assert a == b


def test_lightning_trainer_calls_set_epoch(data_dir, tokenizer, cache_dir):
    import lightning.pytorch as pl

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: dict[int, list[int]] = {}

        def training_step(self, batch, _):
            self.seen.setdefault(self.current_epoch, []).extend(batch["pair_id"].tolist())
            return (self.w * batch["labels"].float()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = make_datamodule(data_dir, tokenizer, cache_dir=cache_dir, batch_size=8)
    model = Probe()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    # hyper-parameters go into checkpoints, which torch.load(weights_only=True) must read back
    import io

    buf = io.BytesIO()
    torch.save({"dm": dict(dm.hparams)}, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["dm"]["data_dir"] == str(data_dir)
    assert sorted(model.seen[0]) == sorted(model.seen[1]) == sorted(dm.split_frame("train").pair_id)
    assert model.seen[0] != model.seen[1]  # set_epoch reshuffled
