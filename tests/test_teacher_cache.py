"""TeacherCache: write/load, verification, and the pair_id join into DataModule batches."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import get_label_scheme
from relkd.data.manifest import sha256_file
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import DataError, StaleArtifactError
from relkd.teacher_cache import TeacherCache
from relkd.teacher_cache.teacher_cache import MANIFEST, TEACHER_FILE
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import make_dataset, minilm_path, write_teacher
from tests.v1_teacher_cache import write_v1_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> CanonicalDataset:
    return make_dataset(tmp_path_factory.mktemp("tc") / "tiny", n_queries=12, unlabeled_per_query=3)


@pytest.fixture(scope="module")
def teacher(dataset, tmp_path_factory):
    return write_teacher(tmp_path_factory.mktemp("teacher") / "cache", dataset, keep=0.7)


def test_write_then_load_round_trip(dataset, teacher):
    cache, pid, logits, aspects = teacher
    loaded = TeacherCache.load(cache.root, dataset)
    assert len(loaded) == len(pid) and loaded.labels == dataset.scheme.labels
    np.testing.assert_array_equal(loaded.pair_id, pid)
    np.testing.assert_allclose(loaded.logits, logits, rtol=1e-6)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(loaded.probs, probs, rtol=1e-5)
    np.testing.assert_allclose(loaded.score, probs @ dataset.scheme.gain_array(), rtol=1e-5)
    np.testing.assert_array_equal(loaded.aspect_codes, aspects)
    schema = pq.read_schema(loaded.path)
    assert schema.field("logits").type == pa.list_(pa.float32(), dataset.scheme.num_labels)
    assert schema.field("pair_id").type == pa.int64()
    assert [f"aspect_{a}" in schema.names for a in ASPECTS] == [True] * 4
    manifest = json.loads((cache.root / MANIFEST).read_text())
    assert manifest["kind"] == "teacher_cache" and manifest["rows"] == len(pid)
    assert manifest["labels"] == list(dataset.scheme.labels)
    assert manifest["model"] == {"id": "test/teacher", "revision": "abc"}
    assert len(manifest["prompt_template"]["sha256"]) == 64
    assert manifest["dataset"]["tables"]["pairs"] == dataset.manifest.tables["pairs"].sha256
    assert manifest["sha256"] == sha256_file(cache.root / TEACHER_FILE)
    assert loaded.cot(np.array([3, -1])) == [f"cot for {pid[3]}", None]


def test_align_by_pair_id_with_shuffled_rows_and_missing_pairs(teacher):
    cache, pid, _, _ = teacher
    rng = np.random.default_rng(0)
    query = np.concatenate([rng.permutation(pid)[:20], [-5, 123456789]])
    rows = cache.align(query)
    assert (rows[:20] >= 0).all() and (rows[20:] == -1).all()
    np.testing.assert_array_equal(cache.pair_id[rows[:20]], query[:20])


def test_batches_carry_teacher_fields_joined_by_pair_id(dataset, teacher, tokenizer, tmp_path):
    cache, pid, logits, aspects = teacher
    by_pid = {int(p): i for i, p in enumerate(pid)}
    dm = make_datamodule(
        dataset.root,
        tokenizer,
        cache_dir=tmp_path,
        teacher_cache=cache.root,
        with_cot=True,
        batch_size=10,
    )
    dm.prepare_data()
    dm.setup()
    seen_missing = seen_present = 0
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:
            assert batch["teacher_logits"].dtype.is_floating_point
            assert batch["teacher_logits"].shape == (len(batch["pair_id"]), 4)
            assert batch["teacher_mask"].dtype == torch.bool
            assert len(batch["teacher_cot"]) == len(batch["pair_id"])
            for j, p in enumerate(batch["pair_id"].tolist()):
                row = by_pid.get(p)
                assert bool(batch["teacher_mask"][j]) == (row is not None)
                if row is None:
                    seen_missing += 1
                    assert not batch["teacher_logits"][j].any()
                    assert (batch["teacher_aspects"][j] == -1).all()
                    assert batch["teacher_cot"][j] == ""
                else:
                    seen_present += 1
                    np.testing.assert_allclose(batch["teacher_logits"][j].numpy(), logits[row])
                    assert batch["teacher_aspects"][j].tolist() == aspects[row].tolist()
                    assert batch["teacher_cot"][j] == f"cot for {p}"
                    assert float(batch["teacher_score"][j]) == pytest.approx(
                        float(cache.score[row])
                    )
    assert seen_missing and seen_present


def test_cot_only_when_requested_and_unlabelled_pool(dataset, teacher, tokenizer, tmp_path):
    cache = teacher[0]
    kw = dict(cache_dir=tmp_path, teacher_cache=cache, batch_size=16)
    plain = make_datamodule(dataset.root, tokenizer, **kw)
    plain.setup()
    batch = next(iter(plain.train_dataloader()))
    assert "teacher_cot" not in batch and "teacher_logits" in batch
    assert (batch["labels"] >= 0).all()

    pooled = make_datamodule(dataset.root, tokenizer, include_unlabeled=True, **kw)
    pooled.setup()
    labels = np.concatenate([b["labels"].numpy() for b in pooled.train_dataloader()])
    masks = np.concatenate([b["teacher_mask"].numpy() for b in pooled.train_dataloader()])
    assert (labels == -1).any()
    assert masks[labels == -1].all()  # unlabelled rows only where the teacher covers them
    assert len(labels) > len(plain.split_frame("train"))


def test_grouped_mode_with_teacher_strata(dataset, teacher, tokenizer, tmp_path):
    cache = teacher[0]
    dm = make_datamodule(
        dataset.root,
        tokenizer,
        cache_dir=tmp_path,
        teacher_cache=cache,
        include_unlabeled=True,
        group_size=3,
        batch_size=6,  # 2 queries of 3
    )
    dm.setup()
    for batch in dm.train_dataloader():
        q = batch["query_index"].view(-1, 3)
        assert (q == q[:, :1]).all()


def test_pickled_cache_reopens(teacher):
    cache = teacher[0]
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._table is None
    np.testing.assert_array_equal(clone.logits, cache.logits)


def test_corrupt_cache_names_file(dataset, tmp_path):
    cache, *_ = write_teacher(tmp_path / "c", dataset)
    raw = bytearray(cache.path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    cache.path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"teacher\.parquet: corrupt"):
        TeacherCache.load(tmp_path / "c", dataset)
    cache.path.unlink()
    with pytest.raises(DataError, match=r"teacher\.parquet: missing"):
        TeacherCache.load(tmp_path / "c", dataset)


def test_stale_cache_refused(tmp_path):
    root = tmp_path / "ds"
    ds = make_dataset(root, n_queries=6, seed=1)
    write_teacher(tmp_path / "c", ds)
    ds2 = make_dataset(root, n_queries=6, seed=2, overwrite=True)
    with pytest.raises(
        StaleArtifactError,
        match=r"stale: field dataset\.tables of .*manifest\.json records other sha256s for \[.*'pairs'",
    ) as exc:
        TeacherCache.load(tmp_path / "c", ds2)
    assert str(tmp_path / "c") in str(exc.value)


def test_mismatched_scheme_refused(dataset, tmp_path):
    write_teacher(tmp_path / "c", dataset, scheme="wands")
    with pytest.raises(DataError, match=r"manifest\.json: label scheme 'wands'"):
        TeacherCache.load(tmp_path / "c", dataset)


def test_label_order_mismatch_refused(dataset, tmp_path):
    cache, *_ = write_teacher(tmp_path / "c", dataset)
    path = cache.root / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="does not match the dataset"):
        TeacherCache.load(cache.root, dataset)


def test_unknown_pair_ids_refused_with_count(dataset, tmp_path):
    scheme = get_label_scheme("esci")
    pid = np.concatenate([dataset.table("pairs").column("pair_id").to_numpy()[:5], [1, 2, 3]])
    write_v1_cache(
        tmp_path / "c",
        pid,
        np.zeros((8, 4)),
        scheme=scheme,
        model="m",
        prompt_template="p",
        dataset=dataset,
    )
    with pytest.raises(DataError, match=r"teacher\.parquet: 3 pair_id value"):
        TeacherCache.load(tmp_path / "c", dataset)


def test_duplicate_pair_ids_refused(dataset, tmp_path):
    cache, *_ = write_teacher(tmp_path / "c", dataset)
    table = pq.read_table(cache.path)
    table = pa.concat_tables([table, table.slice(0, 2)])
    pq.write_table(table, cache.path)
    path = cache.root / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(rows=table.num_rows, sha256=sha256_file(cache.path))
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"teacher\.parquet: 2 duplicate pair_id"):
        TeacherCache.load(cache.root, dataset)


def test_write_validates_inputs(dataset, tmp_path):
    kw = dict(scheme="esci", model="m", prompt_template="p", dataset=dataset)
    with pytest.raises(ValueError, match="shape"):
        write_v1_cache(tmp_path / "a", [1, 2], np.zeros((2, 3)), **kw)
    with pytest.raises(ValueError, match="unique"):
        write_v1_cache(tmp_path / "b", [1, 1], np.zeros((2, 4)), **kw)
    with pytest.raises(ValueError, match="outside"):
        write_v1_cache(tmp_path / "c", [1], np.zeros((1, 4)), aspects={"brand": ["maybe"]}, **kw)
    cache = write_v1_cache(
        tmp_path / "d",
        [1, 2],
        np.zeros((2, 4)),
        aspects={"brand": ["match", None]},
        **kw,
    )
    assert cache.aspect_codes[:, ASPECTS.index("brand")].tolist() == [
        ASPECT_VALUES.index("match"),
        -1,
    ]
    with pytest.raises(DataError, match="already exists"):
        write_v1_cache(tmp_path / "d", [1], np.zeros((1, 4)), **kw)


def test_overwrite_refuses_a_folder_that_is_not_a_cache(dataset, teacher, tmp_path):
    _, pid, logits, _ = teacher
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a relkd teacher cache"):
        write_v1_cache(
            precious,
            pid,
            logits,
            scheme="esci",
            model="m",
            prompt_template="t",
            dataset=dataset.root,
            overwrite=True,
        )
    assert [p.name for p in precious.iterdir()] == ["results.csv"]
    # a real cache is replaced
    kw = dict(scheme="esci", model="m", prompt_template="t", dataset=dataset.root)
    write_v1_cache(tmp_path / "real", pid, logits, **kw)
    again = write_v1_cache(
        tmp_path / "real",
        pid[:3],
        logits[:3],
        scheme="esci",
        model="m",
        prompt_template="t",
        dataset=dataset.root,
        overwrite=True,
    )
    assert TeacherCache.load(again.root).rows == 3
