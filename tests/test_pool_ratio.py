"""data.pool_ratio (a nested, hash-ranked subset of the unlabelled pool) and data.with_hidden
(the teacher's pooled hidden states in batches): selection, the DataModule, config checks."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import QueryItemDataModule
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import get_label_scheme
from relkd.data.pool_subset import pool_mask, pool_subset
from relkd.errors import ConfigError
from relkd.teacher_cache import TeacherCache
from relkd.teacher_cache.annotation import Annotation
from relkd.teacher_cache.cache_finalizer import finalize_cache, requested_pairs
from relkd.teacher_cache.cache_writer import Shard, TeacherCacheWriter
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import make_dataset, minilm_path, write_teacher
from tests.v1_teacher_cache import write_v1_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> CanonicalDataset:
    # 8 train queries x 4 labelled items = 32 labelled train pairs; 8 x 9 = 72 pool pairs in train
    root = tmp_path_factory.mktemp("pool") / "tiny"
    return make_dataset(root, n_queries=12, items_per_query=4, unlabeled_per_query=9)


def pair_arrays(dataset: CanonicalDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = dataset.table("pairs", ["pair_id", "label", "split"]).to_pydict()
    pid = np.asarray(t["pair_id"], np.int64)
    labelled = np.asarray([v is not None for v in t["label"]])
    train = np.asarray([s == "train" for s in t["split"]])
    return pid, labelled, train


def write_cache(root: Path, dataset: CanonicalDataset, pair_ids: np.ndarray) -> TeacherCache:
    """A v1 teacher cache over exactly ``pair_ids``."""
    k = dataset.scheme.num_labels
    logits = np.random.default_rng(0).normal(size=(len(pair_ids), k)).astype(np.float32)
    return write_v1_cache(
        root,
        pair_ids,
        logits,
        scheme=dataset.manifest.label_scheme,
        model="test/teacher",
        prompt_template="q {query} i {item}",
        dataset=dataset,
    )


def train_pair_ids(dm: QueryItemDataModule) -> np.ndarray:
    return np.asarray(dm.store.array("pair_id"))[dm.rows("train")]


def test_pool_subset_is_nested_exact_and_order_free() -> None:
    ids = np.arange(5_000, dtype=np.int64) * 13 + 5
    masks = [pool_subset(ids, n) for n in (0, 100, 200, 500)]
    assert [int(m.sum()) for m in masks] == [0, 100, 200, 500]
    for small, big in itertools.pairwise(masks):
        assert not (small & ~big).any()  # the smaller subset lies inside the larger one
    perm = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(pool_subset(ids[perm], 200), masks[2][perm])
    # not just the smallest or the first ids: a hash spreads the subset over the pool
    assert not masks[1][:100].all() and ids[masks[1]].max() > ids[2_500]


def test_datamodule_pool_ratio_draws_nested_subsets_of_exact_size(dataset, tokenizer, tmp_path):
    pid, labelled, train = pair_arrays(dataset)
    n_lab = int((labelled & train).sum())
    cache = write_cache(tmp_path / "all", dataset, pid)  # covers every pair
    pools = []
    for ratio in (0, 1, 1.5, 2):
        dm = make_datamodule(
            dataset.root,
            tokenizer,
            cache_dir=tmp_path / "tok",
            teacher_cache=cache.root,
            include_unlabeled=True,
            pool_ratio=ratio,
        )
        dm.setup()
        drawn = train_pair_ids(dm)
        pool = set(drawn[~np.isin(drawn, pid[labelled])].tolist())
        assert len(pool) == round(ratio * n_lab)  # 0, 32, 48, 64
        assert np.isin(pid[labelled & train], drawn).all()  # every labelled train pair too
        assert pool == set(pid[pool_mask(pid, labelled, train, ratio)].tolist())
        pools.append(pool)
    assert pools[0] == set() and pools[1] < pools[2] < pools[3]
    everything = make_datamodule(
        dataset.root, tokenizer, cache_dir=tmp_path / "tok", teacher_cache=cache.root
    )
    everything.setup()
    assert len(train_pair_ids(everything)) == n_lab  # without include_unlabeled: labelled only


def test_cache_covering_too_few_pool_pairs_is_a_one_line_error(dataset, tokenizer, tmp_path):
    pid, labelled, train = pair_arrays(dataset)
    one_x = pool_mask(pid, labelled, train, 1.0)
    cache = write_cache(tmp_path / "one_x", dataset, pid[labelled | one_x])
    kw = dict(cache_dir=tmp_path / "tok", teacher_cache=cache.root, include_unlabeled=True)
    ok = make_datamodule(dataset.root, tokenizer, pool_ratio=1, **kw)
    ok.setup()  # the 1x cache serves ratio 1
    dm = make_datamodule(dataset.root, tokenizer, pool_ratio=2, **kw)
    with pytest.raises(ConfigError) as err:
        dm.setup()
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert str(cache.root) in msg and "asks for 64 pool pairs" in msg and "covers 32" in msg
    assert "--pool-ratio 2" in msg


def test_grouped_batches_with_a_pool_ratio(dataset, tokenizer, tmp_path):
    pid, labelled, train = pair_arrays(dataset)
    cache = write_cache(tmp_path / "all", dataset, pid)
    dm = make_datamodule(
        dataset.root,
        tokenizer,
        cache_dir=tmp_path / "tok",
        teacher_cache=cache.root,
        include_unlabeled=True,
        pool_ratio=1,
        group_size=3,
        batch_size=6,  # 2 queries of 3
    )
    dm.setup()
    seen = []
    for batch in dm.train_dataloader():
        q = batch["query_index"].view(-1, 3)
        assert (q == q[:, :1]).all()
        seen.append(batch["pair_id"].numpy())
    drawn = set(np.concatenate(seen).tolist())
    pool = set(pid[pool_mask(pid, labelled, train, 1.0)].tolist())
    unlabelled = drawn - set(pid[labelled].tolist())
    assert unlabelled and unlabelled <= pool  # pool rows come only from the chosen subset


def test_pool_ratio_is_checked_by_the_datamodule(dataset, tokenizer, tmp_path):
    cache, *_ = write_teacher(tmp_path / "c", dataset)
    with pytest.raises(ConfigError, match="include_unlabeled"):
        make_datamodule(dataset.root, tokenizer, teacher_cache=cache.root, pool_ratio=1)
    with pytest.raises(ConfigError, match=">= 0"):
        make_datamodule(
            dataset.root, tokenizer, teacher_cache=cache.root, include_unlabeled=True, pool_ratio=-1
        )


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["data.pool_ratio=2"], "data.pool_ratio", "include_unlabeled"),
        (
            ["data.pool_ratio=-1", "data.include_unlabeled=true", "data.teacher_cache=c"],
            "data.pool_ratio",
            ">= 0",
        ),
        (["data.with_hidden=true"], "data.with_hidden", "data.teacher_cache"),
    ],
)
def test_compose_refuses_bad_data_keys(overrides, key, message) -> None:
    with pytest.raises(ConfigError, match=rf"command line: key {key}: .*{message}"):
        compose(EXPERIMENTS / "quickstart.yaml", overrides)
    ok = compose(
        EXPERIMENTS / "quickstart.yaml",
        ["data.pool_ratio=2", "data.include_unlabeled=true", "data.teacher_cache=c"],
    )
    assert ok.data.pool_ratio == 2.0


# -- hidden states -------------------------------------------------------------------------


def write_v2_cache(root: Path, dataset: CanonicalDataset, hidden_dim: int = 6):
    """A finalized v2 cache of the labelled train pairs with ``hidden`` states, as annotate
    writes it (parts, then finalize). Returns (cache, pair_ids, hidden)."""
    scheme = get_label_scheme(dataset.manifest.label_scheme)
    fp = {
        "format": 2,
        "teacher": {"id": "test/teacher"},
        "label_scheme": scheme.name,
        "dataset": {"name": dataset.manifest.name, "tables": dataset.verify()},
    }
    info = {
        "label_scheme": scheme.name,
        "labels": list(scheme.labels),
        "dataset": {"name": dataset.manifest.name, "root": str(dataset.root)},
    }
    pid = requested_pairs(dataset, ["train"], False)
    n, k = len(pid), scheme.num_labels
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    hidden = rng.normal(size=(n, hidden_dim)).astype(np.float16)
    ann = Annotation(
        pair_id=pid,
        logits=logits,
        probs=probs,
        score=probs @ scheme.gain_array(),
        cot=None,
        aspects=np.full((n, 4), -1, np.int8),
        verdict=np.full(n, -1, np.int8),
        cot_ok=np.zeros(n, bool),
        hidden=hidden,
    )
    writer = TeacherCacheWriter.open(root, fp, shard=Shard(), info=info)
    with writer.lock():
        writer.begin({"splits": ["train"], "pool": False, "pool_ratio": None}, requested=n)
        writer.commit(ann)
        writer.finish(True, {})
    finalize_cache(root, dataset.root)
    return TeacherCache.load(root, dataset), pid, hidden


def test_batches_carry_teacher_hidden_states(dataset, tokenizer, tmp_path):
    cache, pid, hidden = write_v2_cache(tmp_path / "v2", dataset, hidden_dim=6)
    assert cache.has_hidden
    dm = make_datamodule(
        dataset.root,
        tokenizer,
        cache_dir=tmp_path / "tok",
        teacher_cache=cache.root,
        with_hidden=True,
        batch_size=16,
    )
    assert dm.teacher_hidden_dim == 6  # readable before setup, to size a model
    dm.prepare_data()
    dm.setup()
    assert dm.teacher_hidden_dim == 6
    by_pid = {int(p): i for i, p in enumerate(pid)}
    covered = missing = 0
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:
            h = batch["teacher_hidden"]
            assert h.dtype == torch.float16 and h.shape == (len(batch["pair_id"]), 6)
            for j, p in enumerate(batch["pair_id"].tolist()):
                assert bool(batch["teacher_mask"][j]) == (p in by_pid)
                if p in by_pid:
                    covered += 1
                    np.testing.assert_array_equal(h[j].numpy(), hidden[by_pid[p]])
                else:
                    missing += 1
                    assert not h[j].any()
    assert covered == len(pid) and missing  # val pairs are not in the cache: zeros
    plain = make_datamodule(
        dataset.root, tokenizer, cache_dir=tmp_path / "tok", teacher_cache=cache.root
    )
    plain.setup()
    assert "teacher_hidden" not in next(iter(plain.train_dataloader()))
    assert plain.teacher_hidden_dim == 0


def test_with_hidden_needs_a_cache_with_hidden_states(dataset, tokenizer, tmp_path):
    cache, *_ = write_teacher(tmp_path / "v1", dataset)  # no hidden states
    dm = make_datamodule(
        dataset.root,
        tokenizer,
        cache_dir=tmp_path / "tok",
        teacher_cache=cache.root,
        with_hidden=True,
    )
    for call in (lambda: dm.teacher_hidden_dim, dm.setup):
        with pytest.raises(ConfigError) as err:
            call()
        msg = str(err.value)
        assert len(msg.splitlines()) == 1
        assert str(cache.root) in msg and "--hidden last|mean" in msg
