"""`relkd teacher annotate` and the v2 teacher cache on a tiny trained teacher: resume after
SIGKILL, shards + finalize, fingerprint refusal, checksums, CoT and hidden states, the join."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from relkd.cli import main
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.teacher_cache.cache_finalizer import requested_pairs
from relkd.teacher_cache.cache_writer import Shard, listed_parts
from relkd.teacher_cache.teacher_cache import TeacherCache
from tests.conftest import REPO, tiny_overrides
from tests.datamodule_factory import make_datamodule
from tests.teacher_fixtures import run_teacher
from tests.test_kill_resume import KILLS, kill_at, run_to_end


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    return run_teacher(tmp_path_factory.mktemp("annotate_cls"), shared_data_root)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prompt_cache")


def annotate(run: Path, out: Path, prompts: Path, *extra: str) -> int:
    args = ["teacher", "annotate", str(run), "--out", str(out), "--prompt-cache", str(prompts)]
    return main([*args, "--quiet", *extra])


def dataset_of(run: Path) -> Path:
    return Path(json.loads((run / "adapter" / "relkd_teacher.json").read_text())["dataset"]["root"])


def arrays(cache_root: Path) -> dict[str, np.ndarray]:
    cache = TeacherCache.load(cache_root)
    return {
        "pair_id": np.asarray(cache.pair_id),
        "logits": np.asarray(cache.logits),
        "probs": np.asarray(cache.probs),
        "score": np.asarray(cache.score),
    }


@pytest.fixture(scope="module")
def reference(cls_run: Path, prompts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted, unsharded run over the train split."""
    out = tmp_path_factory.mktemp("reference") / "cache"
    assert annotate(cls_run, out, prompts, "--splits", "train", "--part-size", "16") == 0
    return out


def test_covers_the_request_and_matches_the_teachers_own_predictions(
    cls_run: Path, prompts: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cache"
    assert annotate(cls_run, out, prompts, "--splits", "test") == 0
    cache = TeacherCache.load(out, dataset_of(cls_run))
    test_pairs = requested_pairs(CanonicalDataset(dataset_of(cls_run)), ["test"], False)
    assert np.array_equal(cache.pair_id, test_pairs)
    # the run's own evaluation of the test split, written by `relkd teacher train`
    pred = pq.read_table(cls_run / "predictions" / "test.parquet").to_pydict()
    by_pid = {p: np.asarray(v) for p, v in zip(pred["pair_id"], pred["probs"], strict=True)}
    got = np.stack([by_pid[int(p)] for p in cache.pair_id])
    np.testing.assert_allclose(cache.probs, got, atol=1e-5)
    np.testing.assert_allclose(cache.probs.sum(1), 1.0, atol=1e-5)
    assert not cache.has_cot  # a classifier teacher writes no CoT


def test_second_identical_run_does_no_work(
    cls_run: Path, prompts: Path, reference: Path, capsys, monkeypatch
):
    import relkd.teacher.teacher_adapter as adapter

    def no_load(*args, **kwargs):
        raise AssertionError("a run with nothing to annotate loaded the teacher's weights")

    monkeypatch.setattr(adapter, "load_teacher", no_load)
    before = {p["file"]: p["sha256"] for p in listed_parts(reference)}
    capsys.readouterr()
    assert annotate(cls_run, reference, prompts, "--splits", "train", "--part-size", "16") == 0
    out = capsys.readouterr().out
    assert " 0 pairs annotated" in out and "already cached" in out
    assert {p["file"]: p["sha256"] for p in listed_parts(reference)} == before


def _parts_committed(shard_file: Path) -> int:
    try:
        return len(json.loads(shard_file.read_text())["parts"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(
    cls_run: Path, prompts: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cache"
    cmd = [
        sys.executable,
        "-m",
        "relkd.cli",
        "teacher",
        "annotate",
        str(cls_run),
        "--out",
        str(out),
        "--prompt-cache",
        str(prompts),
        "--splits",
        "train",
        "--part-size",
        "16",
        "--batch-size",
        "4",
        "--quiet",
    ]
    shard_file = out / "shards" / "0-of-1.json"
    total_parts = len(listed_parts(reference))
    log = tmp_path / "annotate.log"
    rng = random.Random(0)
    kills = 0
    # one kill during start-up, then kills after a random number of further committed parts
    # plus a random delay, so the kill lands inside batches, part writes and manifest writes
    for attempt in range(KILLS + 2):  # an attempt that finishes first kills nothing
        if attempt == 0:
            ready, delay = (lambda: True), rng.uniform(0.2, 1.5)
        else:
            target = min(_parts_committed(shard_file) + rng.randint(1, 4), total_parts - 1)
            ready = lambda n=target: _parts_committed(shard_file) >= n  # noqa: E731
            delay = rng.uniform(0, 0.03)
        kills += kill_at(cmd, tmp_path, log, delay, ready, timeout=120)
        if kills == KILLS:
            break
    assert kills >= KILLS
    assert _parts_committed(shard_file) < total_parts  # the kills did interrupt the work
    run_to_end(cmd, tmp_path, log)
    got, want = arrays(out), arrays(reference)
    assert np.array_equal(got["pair_id"], want["pair_id"])  # every pair exactly once
    assert len(np.unique(got["pair_id"])) == len(got["pair_id"])
    for name in ("logits", "probs", "score"):
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    assert not list((out / "parts" / "0-of-1").glob(".tmp-*"))


def test_shards_then_finalize_equal_one_unsharded_run(
    cls_run: Path, prompts: Path, reference: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cache"
    common = ["--splits", "train", "--part-size", "16"]
    assert annotate(cls_run, out, prompts, *common, "--shard", "0/2") == 0
    assert "finalize" in capsys.readouterr().out
    with pytest.raises(Exception, match="not finalized"):
        TeacherCache.load(out)
    assert main(["teacher", "cache", "finalize", str(out)]) == 2
    assert "shard(s) 1/2 never ran" in capsys.readouterr().err
    assert main(["teacher", "cache", "status", str(out)]) == 0
    status = capsys.readouterr().out
    assert "shard 0/2" in status and "complete" in status and "not finalized" in status
    assert annotate(cls_run, out, prompts, *common, "--shard", "1/2") == 0
    assert main(["teacher", "cache", "finalize", str(out)]) == 0
    assert main(["teacher", "cache", "status", str(out)]) == 0
    assert "finalized (" in capsys.readouterr().out
    got, want = arrays(out), arrays(reference)
    assert np.array_equal(got["pair_id"], want["pair_id"])
    np.testing.assert_allclose(got["probs"], want["probs"], atol=1e-5)
    # the shards split the pairs between them, about evenly
    a = Shard(0, 2).select(want["pair_id"]).sum()
    assert 0.3 < a / len(want["pair_id"]) < 0.7


def test_fingerprint_mismatch_is_refused_and_force_writes_beside(
    cls_run: Path, prompts: Path, reference: Path, capsys
) -> None:
    manifest = (reference / "manifest.json").read_bytes()
    rc = annotate(cls_run, reference, prompts, "--splits", "train", "--hidden", "last")
    assert rc == 2
    err = capsys.readouterr().err
    assert "another fingerprint" in err and "hidden" in err and "--force" in err
    assert (reference / "manifest.json").read_bytes() == manifest
    rc = annotate(cls_run, reference, prompts, "--splits", "test", "--hidden", "last", "--force")
    assert rc == 0
    beside = reference.with_name(reference.name + ".v2")
    cache = TeacherCache.load(beside)
    assert cache.has_hidden and cache.hidden.dtype == np.float16
    assert (reference / "manifest.json").read_bytes() == manifest


def test_hidden_state_is_the_last_prompt_tokens(cls_run: Path, prompts: Path, tmp_path: Path):
    from datamodules.prompt_collator import PromptCollator
    from datamodules.prompt_store import PromptStore
    from relkd.nets.kv_decoder import base_model
    from relkd.teacher.teacher_adapter import load_teacher

    out = tmp_path / "cache"
    assert annotate(cls_run, out, prompts, "--splits", "val", "--hidden", "last") == 0
    cache = TeacherCache.load(out)
    teacher = load_teacher(cls_run / "adapter")
    store_dir = next(p for p in prompts.iterdir() if (p / "manifest.json").is_file())
    store = PromptStore(store_dir, json.loads((store_dir / "manifest.json").read_text()))
    rows = np.flatnonzero(np.isin(store.view("pair_id"), cache.pair_id[:3]))
    batch = PromptCollator(store, with_response=False)(rows)
    model = base_model(teacher.net.lm)
    with torch.inference_mode():
        hs = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        ).hidden_states[-1]
    last = batch["attention_mask"].sum(1) - 1
    want = hs[torch.arange(len(rows)), last].numpy()
    got = cache.hidden[cache.align(batch["pair_id"].numpy())].astype(np.float32)
    np.testing.assert_allclose(got, want, atol=2e-2, rtol=1e-2)


def test_flipped_byte_in_a_part_is_named(cls_run: Path, prompts: Path, tmp_path: Path, capsys):
    out = tmp_path / "cache"
    assert annotate(cls_run, out, prompts, "--splits", "val", "--part-size", "32") == 0
    part = out / listed_parts(out)[1]["file"]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["teacher", "cache", "finalize", str(out), "--data", str(dataset_of(cls_run))]) == 2
    err = capsys.readouterr().err.strip()
    assert str(part) in err and "sha256" in err and len(err.splitlines()) == 1
    # resuming refuses too, naming the part, rather than trusting it
    assert annotate(cls_run, out, prompts, "--splits", "val", "--part-size", "32") == 2
    assert str(part) in capsys.readouterr().err


def test_a_folder_that_is_not_a_cache_is_refused_untouched(
    cls_run: Path, prompts: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert annotate(cls_run, out, prompts, "--splits", "val", "--force") == 2
    assert "teacher cache" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_cot_teacher_writes_parsed_cot(cot_teacher_run: Path, tmp_path: Path, prompts: Path):
    run = cot_teacher_run
    out = tmp_path / "cache"
    assert annotate(run, out, prompts, "--splits", "val", "--batch-size", "16") == 0
    cache = TeacherCache.load(out, dataset_of(run))
    assert cache.has_cot
    texts = cache.cot(np.arange(cache.rows))
    assert all(isinstance(t, str) and t for t in texts)
    parts = listed_parts(out)
    first = pq.read_table(out / parts[0]["file"]).to_pydict()
    rows = cache.align(np.asarray(first["pair_id"]))
    assert cache.cot(rows) == first["cot"]  # offsets + bytes give back the part's strings


def test_cot_rows_stay_aligned_with_their_pairs(
    cot_teacher_run: Path, tmp_path: Path, prompts: Path, monkeypatch
) -> None:
    """The tiny teacher's CoT does not parse yet, so the decode -> parse -> store path is pinned
    with a teacher whose CoT is a known function of its prompt: after length sorting, batching
    and finalize, every pair must carry the verdict, aspects and logits of its own prompt."""
    from datamodules.prompt_store import PromptStore
    from relkd.data.schema import ASPECT_VALUES, ASPECTS
    from relkd.nets.causal_lm_teacher import CausalLMTeacher, Prediction
    from relkd.prompts.cot_template import CotTemplate
    from relkd.teacher.teacher_adapter import load_teacher

    teacher = load_teacher(cot_teacher_run / "adapter")
    words = {k: teacher.manifest["label_words"][k] for k in teacher.manifest["labels"]}
    labels = list(words)
    tok = teacher.tokenizer

    def choice(ids: np.ndarray) -> tuple[int, dict[str, str]]:
        c = int(ids.sum()) % len(labels)
        return c, {a: ASPECT_VALUES[(c + j) % 3] for j, a in enumerate(ASPECTS)}

    def fake_predict(self, batch, explain=False):
        rows, gen = [], []
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
            c, aspects = choice(ids[mask.bool()].numpy())
            text, _ = CotTemplate(words).render(aspects, labels[c])
            gen.append(tok(text, add_special_tokens=False)["input_ids"] + [self.tokens.end_id])
            rows.append(c)
        logits = torch.nn.functional.one_hot(torch.tensor(rows), len(labels)).float() * 5
        return Prediction(logits=logits, generated=gen, verdict_found=torch.ones(len(rows)) > 0)

    monkeypatch.setattr(CausalLMTeacher, "predict", fake_predict)
    out = tmp_path / "cache"
    assert annotate(cot_teacher_run, out, prompts, "--splits", "train", "--batch-size", "7") == 0
    cache = TeacherCache.load(out)
    ok = np.load(out / "final" / "cot_ok.npy")
    verdict = np.load(out / "final" / "verdict.npy")
    assert ok.all()
    store_dir = next(
        p for p in prompts.iterdir() if (p / "manifest.json").is_file() and "-cot-" in p.name
    )
    store = PromptStore(store_dir, json.loads((store_dir / "manifest.json").read_text()))
    offsets, tokens = store.view("prompt_offsets"), store.view("prompt_tokens")
    where = {int(p): r for r, p in enumerate(store.view("pair_id"))}
    for i, pid in enumerate(cache.pair_id.tolist()):
        r = where[pid]
        c, aspects = choice(np.asarray(tokens[offsets[r] : offsets[r + 1]]))
        assert verdict[i] == c and cache.logits[i].argmax() == c
        assert cache.aspect_codes[i].tolist() == [ASPECT_VALUES.index(aspects[a]) for a in ASPECTS]


def test_student_trains_from_an_annotated_cache_with_the_pool(
    cls_run: Path, prompts: Path, shared_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cache"
    assert annotate(cls_run, out, prompts, "--splits", "train,val,test", "--pool") == 0
    data = dataset_of(cls_run)
    cache = TeacherCache.load(out, data)
    pairs = CanonicalDataset(data).table("pairs", ["pair_id", "label"])
    assert cache.rows == pairs.num_rows  # every labelled pair and the whole pool
    assert pc.sum(pc.is_null(pairs["label"])).as_py() > 0
    dm = make_datamodule(
        data,
        str(
            json.loads((cls_run / "adapter" / "relkd_teacher.json").read_text())["base"][
                "tokenizer"
            ]
        ),
        cache_dir=tmp_path / "tok",
        teacher_cache=out,
        include_unlabeled=True,
        batch_size=32,
    )
    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    rows = cache.align(batch["pair_id"].numpy())
    assert (rows >= 0).all() and batch["teacher_mask"].all()
    np.testing.assert_allclose(batch["teacher_logits"].numpy(), cache.logits[rows])
    overrides = tiny_overrides(tmp_path / "student", shared_data_root)
    rc = main(
        [
            "train",
            str(REPO / "experiments" / "quickstart.yaml"),
            *overrides,
            f"data.teacher_cache={out}",
            "data.include_unlabeled=true",
            "trainer.limit_train_batches=20",
            "loss.weights.soft_kl=0.5",
            "loss.weights.score_mse=0.5",
            "loss.weights.margin_mse=0.5",
            "loss.weights.listwise_kl=0.5",
            "data.group_size=4",
        ]
    )
    assert rc == 0
    info = json.loads(next((tmp_path / "student").glob("*/version_*/run_info.json")).read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert info["teacher_cache"]["fingerprint_sha256"] == manifest["fingerprint_sha256"]
    assert info["teacher_cache"]["rows"] == cache.rows
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = next((tmp_path / "student").glob("*/version_*"))
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    logged = set(acc.Tags()["scalars"])
    terms = {"soft_kl", "score_mse", "margin_mse", "listwise_kl", "hard_ce"}
    assert {f"train/loss/{t}" for t in terms} <= logged
    assert all(e.value > 0 for e in acc.Scalars("train/loss/soft_kl"))
    # grouped batches hold several items per query, so margins exist to be matched
    assert all(e.value > 0 for e in acc.Scalars("train/loss/margin_mse"))


def test_only_prepare_data_hashes_the_cache_under_ddp(
    cls_run: Path, reference: Path, tmp_path: Path, monkeypatch
) -> None:
    """Rank 0's prepare_data checks the sha256 of every final file once; setup on the other
    ranks checks sizes only, so N ranks do not each read the whole cache."""
    import datamodules.query_item_datamodule as qdm
    import relkd.teacher_cache.teacher_cache as tc

    hashed: list[str] = []
    real = tc.sha256_file
    monkeypatch.setattr(tc, "sha256_file", lambda p: hashed.append(str(p)) or real(p))
    tok = json.loads((cls_run / "adapter" / "relkd_teacher.json").read_text())["base"]["tokenizer"]
    kw = dict(cache_dir=tmp_path / "tok", teacher_cache=reference, batch_size=8)
    rank0 = make_datamodule(dataset_of(cls_run), tok, **kw)
    rank0.prepare_data()
    assert any("final" in h for h in hashed)
    hashed.clear()
    monkeypatch.setattr(qdm.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(qdm.dist, "get_world_size", lambda: 2)
    rank1 = make_datamodule(dataset_of(cls_run), tok, **kw)
    rank1.setup()
    assert hashed == [] and rank1.teacher is not None and rank1.teacher.rows > 0


def test_shard_from_a_slurm_array_or_torchrun(monkeypatch) -> None:
    from relkd.errors import DataError

    for key in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(DataError, match="--shard env"):
        Shard.parse("env")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert Shard.parse("env") == Shard(3, 4)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    assert Shard.parse("env") == Shard(1, 8)
    for bad in ("2/2", "1", "a/b", "-1/3"):
        with pytest.raises(DataError, match="--shard"):
            Shard.parse(bad)
    # every pair lands in exactly one of n shards
    ids = np.arange(10_000, dtype=np.int64) * 7 + 11
    hits = sum(Shard(i, 5).select(ids).astype(int) for i in range(5))
    assert (hits == 1).all()


def test_a_cache_being_created_by_another_shard_is_joined(
    cls_run: Path, prompts: Path, tmp_path: Path
) -> None:
    """Shards of an array start together: one may find the folder holding only another's
    temporary manifest. It must join the cache, not call the folder foreign."""
    out = tmp_path / "cache"
    out.mkdir()
    (out / ".tmp-manifest.json.abc123").write_text("{")
    assert annotate(cls_run, out, prompts, "--splits", "val", "--shard", "0/2") == 0
    assert (out / "manifest.json").is_file() and listed_parts(out)


def test_limit_is_a_partial_run_that_a_full_run_completes(
    cls_run: Path, prompts: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cache"
    assert annotate(cls_run, out, prompts, "--splits", "val", "--limit", "5") == 0
    assert "5 pairs annotated" in capsys.readouterr().out
    assert main(["teacher", "cache", "status", str(out)]) == 0
    assert "INCOMPLETE" in capsys.readouterr().out
    assert annotate(cls_run, out, prompts, "--splits", "val") == 0
    assert "5 already cached" in capsys.readouterr().out
    cache = TeacherCache.load(out)
    assert cache.rows == len(requested_pairs(CanonicalDataset(dataset_of(cls_run)), ["val"], False))


def test_pool_ratio_annotates_the_nested_pool_subset_and_a_larger_ratio_adds_to_it(
    cls_run: Path, prompts: Path, tmp_path: Path, capsys
) -> None:
    from relkd.data.pool_subset import pool_mask

    ds = CanonicalDataset(dataset_of(cls_run))
    t = ds.table("pairs", ["pair_id", "label", "split"]).to_pydict()
    pid = np.asarray(t["pair_id"], np.int64)
    labelled = np.asarray([v is not None for v in t["label"]])
    train = np.asarray([s == "train" for s in t["split"]])
    val = labelled & (np.asarray(t["split"]) == "val")
    out = tmp_path / "cache"
    assert annotate(cls_run, out, prompts, "--splits", "val", "--pool-ratio", "0.05") == 0
    small = pool_mask(pid, labelled, train, 0.05)
    assert small.sum() == round(0.05 * (labelled & train).sum()) > 0
    np.testing.assert_array_equal(TeacherCache.load(out, ds).pair_id, np.sort(pid[val | small]))
    capsys.readouterr()
    # a larger ratio into the same folder (same fingerprint) adds only the missing pairs, here
    # from two shards that `cache finalize` then joins
    for shard in ("0/2", "1/2"):
        args = ("--splits", "val", "--pool-ratio", "0.1", "--shard", shard)
        assert annotate(cls_run, out, prompts, *args) == 0
    skipped = re.findall(r"(\d+) already cached", capsys.readouterr().out)
    assert sum(map(int, skipped)) == (val | small).sum()
    assert main(["teacher", "cache", "finalize", str(out)]) == 0
    big = pool_mask(pid, labelled, train, 0.1)
    assert not (small & ~big).any()
    cache = TeacherCache.load(out, ds)
    np.testing.assert_array_equal(cache.pair_id, np.sort(pid[val | big]))
    request = json.loads((out / "manifest.json").read_text())["finalized"]["request"]
    assert request == {"splits": ["val"], "pool": True, "pool_ratio": 0.1}
    total = sum(int(p["rows"]) for p in listed_parts(out))
    assert total == cache.rows  # nothing was annotated twice
