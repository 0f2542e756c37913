"""`relkd explain`: a tiny MKD student (CoT-aspect heads, trained on a teacher cache) explains
pairs of its dataset and free text, beside a cached teacher and the session's tiny `cot` teacher
generating on the spot; the numbers shown are the ones evaluation computes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from relkd.cli import main
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.explain import PairExplainer, PairExplanation, render_explanation
from tests.conftest import REPO, tiny_overrides
from tests.datamodule_fixtures import make_dataset, write_teacher
from tests.v1_teacher_cache import write_v1_cache


@pytest.fixture(scope="module")
def dataset(cot_teacher_run: Path) -> CanonicalDataset:
    """The synthetic dataset the session's cot teacher (and the student) trained on."""
    info = json.loads((cot_teacher_run / "run_info.json").read_text())
    return CanonicalDataset(info["dataset"]["root"])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("explain")


@pytest.fixture(scope="module")
def cache(work: Path, dataset: CanonicalDataset) -> Path:
    """A teacher cache with CoT text and aspect judgements for every pair."""
    write_teacher(work / "cache", dataset, keep=1.0)
    return work / "cache"


@pytest.fixture(scope="module")
def run(work: Path, cache: Path, shared_data_root: Path) -> Path:
    """MKD cross-encoder: hard labels + soft KL + cot_aspects heads, a dozen steps."""
    argv = [
        "train",
        str(REPO / "experiments" / "mkd" / "cross_encoder.yaml"),
        *tiny_overrides(work / "runs", shared_data_root),
        f"data.teacher_cache={cache}",
        "data.max_length=32",
        "trainer.limit_train_batches=12",
    ]
    assert main(argv) == 0
    return next((work / "runs").glob("*/version_*"))


@pytest.fixture(scope="module")
def explainer(run: Path, cache: Path) -> PairExplainer:
    return PairExplainer(run, teacher=cache)


@pytest.fixture(scope="module")
def test_predictions(run: Path) -> dict[int, dict]:
    rows = pq.read_table(run / "predictions" / "test.parquet").to_pylist()
    return {r["pair_id"]: r for r in rows}


def first_probability(text: str, label: str) -> float:
    """The first probability on the label's bar row: the student's (left) panel."""
    line = next(ln for ln in text.splitlines() if re.match(rf"│ {label} ", ln))
    return float(re.search(r"\d\.\d{3}", line).group())


def test_pair_probabilities_are_the_runs_own_evaluation(
    explainer: PairExplainer, test_predictions: dict[int, dict]
) -> None:
    pids = sorted(test_predictions)[:6]
    explained = explainer.explain_pairs(pids)
    labels = explainer.scorer.labels
    assert labels == ("Exact", "Substitute", "Complement", "Irrelevant")
    for pid, expl in zip(pids, explained, strict=True):
        assert isinstance(expl, PairExplanation) and expl.checkpoint.name == "best.ckpt"
        assert expl.student_kind == "cross_encoder"
        pred = test_predictions[pid]
        # the eval path's probabilities and ranking score for this pair_id, from relkd train
        np.testing.assert_allclose(expl.student.dist.probs, pred["probs"], atol=1e-5)
        assert expl.student.dist.score == pytest.approx(pred["score"], abs=1e-5)
        assert expl.pair.pair_id == pid and expl.pair.split == "test"
        assert expl.pair.gold == labels[pred["label"]]
        text = render_explanation(expl)
        for label, p in zip(labels, pred["probs"], strict=True):
            assert first_probability(text, label) == pytest.approx(p, abs=5e-4)
        assert f"predicted {labels[int(np.argmax(pred['probs']))]}" in text


def test_aspect_heads_are_the_trained_loss_heads(
    explainer: PairExplainer, run: Path, test_predictions: dict[int, dict]
) -> None:
    from relkd.runs.student_factory import build_student

    student = explainer.scorer.student
    module = build_student(student.cfg, student.spec, student.scheme, ("test",), student.data_dir)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    pid = sorted(test_predictions)[0]
    expl = explainer.explain_pair(pid)
    dm = explainer.datamodule
    row = np.flatnonzero(np.asarray(dm.store.array("pair_id")) == pid)
    with torch.no_grad():
        features = module(dm.eval_collator(row))["features"]
        probs = module.loss.terms["cot_aspects"].logits(features).softmax(-1)[0]
    assert [a.aspect for a in expl.student.aspects] == list(ASPECTS)
    for j, head in enumerate(expl.student.aspects):
        assert head.value == ASPECT_VALUES[int(probs[j].argmax())]
        assert head.prob == pytest.approx(float(probs[j].max()), abs=1e-5)
    text = render_explanation(expl)
    assert "student head" in text
    for head in expl.student.aspects:
        assert re.search(rf"{head.aspect}\s+{head.value}\s+{head.prob:.3f}", text)


def test_cached_teacher_beside_the_student(
    run: Path, cache: Path, test_predictions: dict[int, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    pid = sorted(test_predictions)[1]
    assert main(["explain", "--run", str(run), "--pair-id", str(pid), "--teacher", str(cache)]) == 0
    out = capsys.readouterr().out
    table = pq.read_table(cache / "teacher.parquet").to_pylist()
    cached = next(r for r in table if r["pair_id"] == pid)
    assert "teacher · from its cache" in out and f"CoT cot for {pid}" in out
    labels = ("Exact", "Substitute", "Complement", "Irrelevant")
    student_probs = test_predictions[pid]["probs"]
    for label, p, s in zip(labels, cached["probs"], student_probs, strict=True):
        line = next(ln for ln in out.splitlines() if re.match(rf"│ {label} ", ln))
        assert first_probability(out, label) == pytest.approx(s, abs=5e-4)  # the left panel
        assert re.findall(r"\d\.\d{3}", line)[1] == f"{p:.3f}"  # the right panel
    student = labels[int(np.argmax(test_predictions[pid]["probs"]))]
    teacher = labels[int(np.argmax(cached["probs"]))]
    call = f"both say {student}" if student == teacher else f"teacher says {teacher}"
    assert call in out and (("DISAGREE" in out) == (student != teacher))


def test_the_runs_own_cache_is_the_default_teacher(
    run: Path, test_predictions: dict[int, dict]
) -> None:
    pid = sorted(test_predictions)[2]
    expl = PairExplainer(run).explain_pair(pid)
    assert expl.teacher.source == "cache" and expl.teacher.cot == f"cot for {pid}"


def test_free_text_is_encoded_like_the_catalogue(
    explainer: PairExplainer, dataset: CanonicalDataset, test_predictions: dict[int, dict]
) -> None:
    """The catalogue's item text (its item_fields joined as the store joins them) given as free
    text must reach the student token for token, with the same probabilities."""
    pid = sorted(test_predictions)[3]
    store = explainer.datamodule.store
    row = int(np.flatnonzero(np.asarray(store.array("pair_id")) == pid)[0])
    q_row, i_row = int(store.array("query_row")[row]), int(store.array("item_row")[row])
    fields = list(explainer.scorer.student.cfg.data.item_fields)
    item = dataset.table("items", fields).slice(i_row, 1).to_pylist()[0]
    text = " | ".join(str(item[f]).strip() for f in fields if item[f] and str(item[f]).strip())
    query = dataset.table("queries", ["text"]).column("text")[q_row].as_py()
    free, pair = explainer.explain_texts([(query, text)])[0], explainer.explain_pair(pid)
    assert free.pair.source == "text" and free.pair.item == text and free.pair.pair_id is None
    assert free.pair.student_input == pair.pair.student_input
    np.testing.assert_allclose(free.student.dist.probs, pair.student.dist.probs, atol=1e-5)
    assert (
        free.teacher.source == "none" and "free text is not in teacher cache" in free.teacher.where
    )


def test_free_text_teacher_generates_on_the_spot(
    run: Path, cot_teacher_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    explainer = PairExplainer(run, teacher=cot_teacher_run)
    expl = explainer.explain_text("  road cycling helmet ", "Peakform green road cycling helmet")
    explainer.close()
    assert expl.pair.student_input == (
        "[CLS] road cycling helmet [SEP] peakform green road cycling helmet [SEP]",
    )
    teacher = expl.teacher
    assert teacher.source == "generated" and teacher.where == str(cot_teacher_run)
    assert isinstance(teacher.cot, str) and teacher.cot  # decoded by the real generate loop
    assert teacher.dist is not None and teacher.dist.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert expl.agree == (teacher.verdict == expl.student.dist.predicted)
    argv = ["explain", "road cycling helmet", "Peakform green road cycling helmet"]
    assert main([*argv, "--run", str(run), "--teacher", str(cot_teacher_run)]) == 0
    out = capsys.readouterr().out
    assert "free text: the item text is used as the item's title" in out
    assert "teacher · generated now" in out and f"CoT {teacher.cot[:20]}" in out


def test_teacher_run_answers_from_its_cache_else_generates(
    run: Path, cot_teacher_run: Path, dataset: CanonicalDataset, work: Path, test_predictions
) -> None:
    teacher = work / "teacher_run"
    shutil.copytree(cot_teacher_run / "adapter", teacher / "adapter")
    cached, uncached = sorted(test_predictions)[:2]
    cache = teacher / "teacher_cache" / dataset.root.name
    pid = np.asarray([cached], dtype=np.int64)

    write_v1_cache(
        cache,
        pid,
        np.asarray([[2.0, 0.0, 0.0, 0.0]], np.float32),
        cot=["kept"],
        scheme="esci",
        model="test",
        prompt_template="t",
        dataset=dataset,
    )
    explainer = PairExplainer(run, teacher=teacher, prompt_cache=work / "prompts")
    first, second = explainer.explain_pairs([cached, uncached])
    explainer.close()
    assert first.teacher.source == "cache" and first.teacher.cot == "kept"
    assert first.teacher.verdict == "Exact"
    assert second.teacher.source == "generated" and second.teacher.where == str(teacher)
    assert second.teacher.dist is not None and isinstance(second.teacher.cot, str)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("relkd: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def other_cache(work: Path) -> Path:
    """A teacher cache annotated on another dataset."""
    other = make_dataset(work / "other_data")
    write_teacher(work / "other_cache", other)
    return work / "other_cache"


@pytest.fixture(scope="module")
def stale_cache(work: Path, other_cache: Path) -> Path:
    """A cache that names the student's dataset but was written from other tables."""
    stale = work / "stale_cache"
    shutil.copytree(other_cache, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["dataset"]["name"] = "synthetic"
    (stale / "manifest.json").write_text(json.dumps(manifest))
    return stale


def test_bad_input_is_a_one_line_error(
    run: Path,
    cot_teacher_run: Path,
    other_cache: Path,
    stale_cache: Path,
    work: Path,
    test_predictions: dict[int, dict],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid = str(sorted(test_predictions)[0])
    no_ckpt = work / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(run / "config.yaml", no_ckpt / "config.yaml")
    not_teacher = work / "not_teacher"
    not_teacher.mkdir()
    r = ["--run", str(run)]
    cases = [
        (["q", "i", "--run", str(no_ckpt)], f"{no_ckpt / 'checkpoints' / 'best.ckpt'} not found"),
        ([*r, "--pair-id", "987654321"], "--pair-id 987654321: not in dataset"),
        ([*r, "q", "i", "--pair-id", "1"], "not both"),
        (r, "give QUERY and ITEM text, or --pair-id N"),
        ([*r, "q"], "ITEM: missing"),
        ([*r, "  ", "i"], "QUERY: empty"),
        ([*r, "q", ""], "ITEM: empty"),
        ([*r, "q", "i", "--teacher", str(not_teacher)], f"--teacher {not_teacher}: neither"),
        (["q", "i", "--run", str(cot_teacher_run)], "a teacher run; relkd explain explains"),
        (
            [*r, "--pair-id", pid, "--teacher", str(other_cache)],
            f"{other_cache / 'manifest.json'}: field dataset: the cache was annotated on "
            "dataset 'tiny'",
        ),
        (
            [*r, "--pair-id", pid, "--teacher", str(stale_cache)],
            f"{stale_cache}: teacher cache is stale",
        ),
    ]
    for argv, message in cases:
        assert message in one_line_error(capsys, ["explain", *argv]), argv
