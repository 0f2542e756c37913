"""`relkd pipeline`: every step runs once, a second run reuses each finished step, and the table
holds one row per model; a half-finished step and bad pipeline files are refused."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from relkd.cli import main
from relkd.config import compose
from relkd.errors import ConfigError
from relkd.pipeline import load_pipeline
from relkd.pipeline.pipeline_runner import PipelineRunner
from tests.conftest import REPO, tiny_overrides
from tests.teacher_fixtures import tiny_teacher

PIPELINES = REPO / "experiments" / "pipeline"


def tiny_pipeline(tmp: Path, data_root: Path) -> Path:
    """The quickstart pipeline, shrunk like the other tests shrink the quickstart experiment."""
    student = [o for o in tiny_overrides(tmp, data_root) if not o.startswith("output_dir=")]
    teacher = [o for o in tiny_teacher(tmp, data_root) if not o.startswith("output_dir=")]
    text = f"""
name: tiny
output_dir: {tmp / "pipe"}
teacher:
  experiment: {REPO / "experiments/teacher/embedded.yaml"}
  overrides: {json.dumps(teacher)}
annotate:
  splits: [train]
  pool_ratio: 1.0
  batch_size: 32
students:
  - name: hard
    experiment: {REPO / "experiments/mkd/cross_encoder_no_kd.yaml"}
    overrides: {json.dumps(student)}
  - name: kd+pool
    experiment: {REPO / "experiments/walmart/pool_1x.yaml"}
    distil: true
    overrides: {json.dumps([*student, "data.batch_size=16"])}
bm25: true
"""
    path = tmp / "tiny.yaml"
    path.write_text(text)
    return path


def test_pipeline_runs_then_reuses_every_step(
    tmp_path: Path, shared_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_pipeline(tmp_path, shared_data_root)
    assert main(["pipeline", str(path)]) == 0
    first = capsys.readouterr().out
    for name in ("BM25", "hard", "kd+pool", "teacher"):
        assert f"| {name} " in first
    # every other row as a paired difference against the first student, with its interval
    assert "Paired differences against 'hard'" in first
    rows = [line for line in first.splitlines() if line.startswith("| kd+pool ")]
    assert len(rows) == 3  # the metrics, the paired differences, the step's time
    assert re.search(r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]", rows[1])
    assert re.search(r"\| (ran|reused) \| +\d+ s \|", rows[2]) and "| step " in first
    summary = json.loads((tmp_path / "pipe" / "tiny" / "comparison.json").read_text())
    assert summary["baseline"] == "hard" and set(summary["paired"]) == {
        "BM25",
        "kd+pool",
        "teacher",
    }
    bm25 = {(d["bucket"], d["metric"]) for d in summary["paired"]["BM25"]}
    assert bm25 == {("overall", "ndcg@10"), ("tail", "ndcg@10")}  # BM25 has no class probs
    steps = {s["step"]: s for s in summary["steps"]}
    assert not steps["teacher"]["reused"] and steps["annotate"]["pairs_annotated"] > 0
    kd_run = Path(steps["kd+pool"]["run"])
    saved = compose(kd_run / "config.yaml", with_base=False)
    assert saved.data.teacher_cache == steps["annotate"]["cache"]
    assert saved.data.pool_ratio == 1.0 and saved.loss.weights["margin_mse"] > 0
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "pipe").rglob("metrics.json")}

    assert main(["pipeline", str(path)]) == 0
    second = capsys.readouterr().out
    again = json.loads((tmp_path / "pipe" / "tiny" / "comparison.json").read_text())
    assert all(s.get("reused", True) for s in again["steps"])
    assert {s["step"]: s for s in again["steps"]}["annotate"]["pairs_annotated"] == 0
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing retrained
    assert again["rows"] == summary["rows"]
    assert "steps reused" in second

    # a changed student setting (the command line beats the step's own overrides) is a new
    # student step; the teacher, which never reads model.*, and its cache are reused
    assert main(["pipeline", str(path), "model.dropout=0.2"]) == 0
    third = json.loads((tmp_path / "pipe" / "tiny" / "comparison.json").read_text())
    by_step = {s["step"]: s for s in third["steps"]}
    assert by_step["hard"]["run"] != steps["hard"]["run"] and not by_step["hard"]["reused"]
    assert (
        compose(Path(by_step["hard"]["run"]) / "config.yaml", with_base=False).model.dropout == 0.2
    )
    assert by_step["teacher"]["reused"] and by_step["annotate"]["pairs_annotated"] == 0

    # a step stopped after its last checkpoint but before its metrics (a kill, the end of a
    # session) continues from checkpoints/last.ckpt: its run folder and weights are kept
    (kd_run / "metrics.json").unlink()
    ckpt = kd_run / "checkpoints" / "best.ckpt"
    before = ckpt.stat().st_mtime_ns
    assert main(["pipeline", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"continuing the unfinished step from {kd_run / 'checkpoints' / 'last.ckpt'}" in out
    resumed = json.loads((tmp_path / "pipe" / "tiny" / "comparison.json").read_text())
    kd_step = {s["step"]: s for s in resumed["steps"]}["kd+pool"]
    assert Path(kd_step["run"]) == kd_run and not kd_step["reused"]
    assert ckpt.stat().st_mtime_ns == before  # no epoch trained again
    assert resumed["rows"]["kd+pool"] == summary["rows"]["kd+pool"]


def test_a_half_finished_step_is_refused_not_overwritten(
    tmp_path: Path, shared_data_root: Path
) -> None:
    path = tiny_pipeline(tmp_path, shared_data_root)
    runner = PipelineRunner(load_pipeline(path), path, [])
    _, run_dir = runner.compose_teacher()
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("half")
    with pytest.raises(ConfigError, match=r"did not finish, and has no checkpoints/last\.ckpt"):
        runner.teacher()
    assert (run_dir / "config.yaml").read_text() == "half"


def test_bad_pipeline_files_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstudents:\n  - name: a\n    epochs: 3\n")
    with pytest.raises(ConfigError, match="epochs"):
        load_pipeline(bad)
    bad.write_text("name: x\nstudnets: []\n")
    with pytest.raises(ConfigError, match="studnets"):
        load_pipeline(bad)
    bad.write_text("name: x\nstudents: []\n")
    with pytest.raises(ConfigError, match="students"):
        load_pipeline(bad)


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_pipeline_step_composes(path: Path) -> None:
    runner = PipelineRunner(load_pipeline(path), path, [])
    cfg, _ = runner.compose_teacher()
    assert cfg.task == "teacher"
    for step in runner.cfg.students:
        extra = ["data.teacher_cache=some/cache"] if step.distil else []
        cfg, run_dir = runner.compose_step(step.experiment, [*step.overrides, *extra], "s", None)
        assert cfg.task == "student" and run_dir.parent.name == "s"


def test_table_reports_mean_and_std_over_seeds() -> None:
    from relkd.pipeline.comparison_table import bucket_table, comparison_table

    def result(ndcg: float, tail_acc: float | None) -> dict:
        tail = {"ndcg@10": ndcg - 0.1}
        if tail_acc is not None:
            tail["class_accuracy"] = tail_acc
        return {"overall": {"ndcg@10": ndcg}, "buckets": {"tail": tail}}

    table = comparison_table({"bm25": result(0.7, None), "s": [result(0.8, 0.5), result(0.9, 0.7)]})
    lines = table.splitlines()
    assert lines[2].split("|")[1].strip() == "bm25" and "-" in lines[2].split("|")[4]
    cells = [c.strip() for c in lines[3].split("|")]
    assert cells[2] == "0.8500 ± 0.0707" and cells[3] == "0.7500 ± 0.0707"
    assert cells[5] == "0.6000 ± 0.1414"
    assert len(bucket_table({"s": [result(0.8, 0.5)]}).splitlines()) == 2 + 4


def test_seeds_layer_last_and_get_their_own_runs(tmp_path: Path) -> None:
    path = PIPELINES / "quickstart.yaml"
    runner = PipelineRunner(load_pipeline(path), path, ["seed=7"])
    step = runner.cfg.students[0]
    runs = set()
    for seed in (0, 1):
        cfg, run_dir = runner.compose_step(
            step.experiment, step.overrides, "s", None, [f"seed={seed}"]
        )
        assert cfg.seed == seed
        runs.add(run_dir)
    assert len(runs) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nseeds: [1, 1]\nstudents:\n  - name: a\n")
    with pytest.raises(ConfigError, match="seeds"):
        load_pipeline(bad)


def test_overrides_may_follow_the_seeds_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import relkd.pipeline

    seen = {}

    def fake(path, overrides, seeds=None):
        seen.update(path=str(path), overrides=overrides, seeds=seeds)
        return "table"

    monkeypatch.setattr(relkd.pipeline, "run_pipeline", fake)
    assert main(["pipeline", "p.yaml", "a.b=1", "--seeds", "0,2", "c.d=2"]) == 0
    assert seen == {"path": "p.yaml", "overrides": ["a.b=1", "c.d=2"], "seeds": [0, 2]}
    capsys.readouterr()
    assert main(["pipeline", "p.yaml", "--seeds", "0", "--bogus"]) == 2  # a usage error
    assert capsys.readouterr().err.startswith(
        "relkd: error: relkd: unrecognized arguments: --bogus"
    )


def test_a_given_teacher_run_is_used_not_trained(tmp_path: Path, shared_data_root: Path) -> None:
    path = tiny_pipeline(tmp_path, shared_data_root)
    cfg = load_pipeline(path)
    given = tmp_path / "my_teacher"
    cfg.teacher.run = str(given)
    runner = PipelineRunner(cfg, path, [])
    given.mkdir()
    (given / "config.yaml").write_text("task: teacher\n")
    with pytest.raises(ConfigError, match="not a finished teacher run"):
        runner.teacher()
    (given / "metrics.json").write_text(json.dumps({"test": {"overall": {"ndcg@10": 0.5}}}))
    result = runner.teacher()
    assert result.run_dir == given and result.reused
    assert result.metrics["test"]["overall"]["ndcg@10"] == 0.5
    assert not (tmp_path / "pipe").exists()  # nothing trained


def test_robustness_table_reports_clean_and_mean_drops() -> None:
    from relkd.pipeline.comparison_table import robustness_table

    def report(clean: float, typo: float) -> dict:
        return {
            "clean": {"overall": {"ndcg@10": clean}},
            "typo": {"drop": {"ndcg@10": typo - clean}},
        }

    table = robustness_table({"a": [report(0.8, 0.7), report(0.6, 0.6)]}, ["typo", "synonym"])
    row = next(line for line in table.splitlines() if line.startswith("| a"))
    assert "0.7000 ± 0.1414" in row  # clean mean ± sample std
    assert "-0.0500 ± 0.0707" in row  # the mean drop
    assert row.rstrip(" |").endswith("-")  # no synonym report


def test_a_bad_perturbation_kind_fails_before_training(
    tmp_path: Path, shared_data_root: Path
) -> None:
    path = tiny_pipeline(tmp_path, shared_data_root)
    cfg = load_pipeline(path)
    cfg.perturb = ["typo", "spelling"]
    with pytest.raises(ConfigError, match="spelling"):
        PipelineRunner(cfg, path, []).run()
    assert not (tmp_path / "pipe").exists()


def test_output_dir_moves_every_step_and_placement_keys_are_refused(tmp_path: Path) -> None:
    path = PIPELINES / "quickstart.yaml"
    runner = PipelineRunner(load_pipeline(path), path, [f"output_dir={tmp_path / 'x'}", "seed=3"])
    assert runner.root == tmp_path / "x" / "quickstart"
    step = runner.cfg.students[0]
    cfg, run_dir = runner.compose_step(step.experiment, step.overrides, "s", None)
    assert run_dir.parent.parent == tmp_path / "x" / "quickstart"
    assert cfg.output_dir == str(tmp_path / "x" / "quickstart") and cfg.seed == 3
    for key in ("version", "experiment", "resume"):
        with pytest.raises(ConfigError, match=f"key {key}: the pipeline sets it for each step"):
            PipelineRunner(load_pipeline(path), path, [f"{key}=abc"])


@pytest.mark.parametrize("digest", ["76e112215421", "123456789012"])
def test_a_digest_that_looks_like_a_number_names_the_run_folder(
    digest: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step digest such as 76e112215421 (YAML: inf) or 123456789012 (an int) is the version
    string of the run, as written: the step's run folder is the one the pipeline looks in."""
    import relkd.pipeline.pipeline_runner as pr

    monkeypatch.setattr(pr, "step_fingerprint", lambda cfg, extra=None: digest)
    path = PIPELINES / "quickstart.yaml"
    runner = PipelineRunner(load_pipeline(path), path, [f"output_dir={tmp_path}"])
    step = runner.cfg.students[0]
    cfg, run_dir = runner.compose_step(step.experiment, step.overrides, "s", None)
    assert cfg.version == digest and run_dir.name == digest
    from relkd.runs.run_dir import VERSION_ENV, choose_run_dir

    monkeypatch.delenv(VERSION_ENV, raising=False)
    try:
        assert choose_run_dir(cfg.output_dir, cfg.experiment, cfg.version) == run_dir
    finally:
        os.environ.pop(VERSION_ENV, None)  # choose_run_dir shares its choice there
    assert run_dir.is_dir()


def test_every_step_is_composed_before_any_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A student naming a missing experiment, or a bad override, fails before the teacher
    trains (it used to fail after 13 minutes of teacher training)."""
    trained: list[str] = []
    monkeypatch.setattr(PipelineRunner, "_train", lambda self, name, *a: trained.append(name))
    base = (PIPELINES / "quickstart.yaml").read_text()
    missing = tmp_path / "missing.yaml"
    missing.write_text(
        base.replace("experiments/walmart/pool_1x.yaml", "experiments/walmart/pool_9x.yaml")
    )
    with pytest.raises(ConfigError, match=r"students\[1\].*pool_9x"):
        run_pipeline_file(missing, tmp_path)
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        base.replace("    distil: true", "    distil: true\n    overrides: [optim.lrr=1]")
    )
    with pytest.raises(ConfigError, match=r"students\[1\].*optim.lrr"):
        run_pipeline_file(typo, tmp_path)
    assert trained == []  # nothing trained, not even the teacher


def run_pipeline_file(path: Path, out: Path) -> str:
    return PipelineRunner(load_pipeline(path), path, [f"output_dir={out}"]).run()


def test_pipelines_under_one_output_dir_share_their_teacher(tmp_path: Path) -> None:
    """The teacher never reads a student setting: two pipelines with the same teacher and data
    train it once (<output_dir>/teachers/<digest>); other data is another teacher."""
    runs = {}
    for name in ("walmart", "berm", "quickstart"):
        path = PIPELINES / f"{name}.yaml"
        runs[name] = PipelineRunner(load_pipeline(path), path, [f"output_dir={tmp_path}"])
    teacher = {name: r.compose_teacher()[1] for name, r in runs.items()}
    assert teacher["walmart"] == teacher["berm"]
    assert teacher["walmart"].parent == tmp_path / "teachers"
    assert teacher["quickstart"] != teacher["walmart"]  # its own, smaller dataset


def test_the_smollm2_main_job_shares_the_quickstart_hard_label_step() -> None:
    # the same student, same pairs: its folder is named by a fingerprint without the teacher, so
    # the two pipelines under one output_dir train it once and differ in the distilled row only
    steps = {}
    for name in ("quickstart", "quickstart_smollm2"):
        path = PIPELINES / f"{name}.yaml"
        runner = PipelineRunner(load_pipeline(path), path, [])
        hard = runner.cfg.students[0]
        steps[name] = runner.compose_step(hard.experiment, hard.overrides, "s", None)[1].name
    assert steps["quickstart"] == steps["quickstart_smollm2"]
    teacher = PipelineRunner(
        load_pipeline(PIPELINES / "quickstart_smollm2.yaml"),
        PIPELINES / "quickstart_smollm2.yaml",
        [],
    ).compose_teacher()[0]
    assert teacher.teacher.model == "smollm2-135m-instruct"
