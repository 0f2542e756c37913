"""`relkd ablate`: every variant x seed runs once as its own process (two at a time), a second
run reuses them all, the tables and the HParams view are written; bad ablation files are one-line
ConfigErrors naming the file and the key; the shipped ablations compose."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from relkd.ablate import load_ablation
from relkd.ablate.ablation_runner import AblationRunner
from relkd.cli import main
from relkd.errors import ConfigError
from tests.conftest import QUICKSTART, REPO, tiny_overrides

ABLATIONS = REPO / "experiments" / "ablations"


def tiny_ablation(tmp: Path, data_root: Path) -> Path:
    shared = [o for o in tiny_overrides(tmp, data_root) if not o.startswith("output_dir=")]
    path = tmp / "tiny.yaml"
    path.write_text(
        f"""
name: tiny
output_dir: {tmp / "abl"}
experiment: {QUICKSTART}
overrides: {json.dumps(shared)}
seeds: [0, 1]
variants:
  - {{name: lr 3e-3, overrides: []}}
  - {{name: lr 1e-4, overrides: [optim.lr=1e-4]}}
"""
    )
    return path


def test_ablation_runs_then_reuses_every_run(
    tmp_path: Path, shared_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_ablation(tmp_path, shared_data_root)
    assert main(["ablate", str(path), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 runs: 0 reused, 4 ran, 0 resumed, 0 failed" in out
    root = tmp_path / "abl" / "tiny"
    metrics = sorted(root.glob("*/*/metrics.json"))
    assert len(metrics) == 4
    assert {p.parent.parent.name for p in metrics} == {"lr-3e-3", "lr-1e-4"}
    for m in metrics:  # the run's log and resolved config sit beside its folder
        assert m.parent.with_name(m.parent.name + ".log").is_file()
        assert m.parent.with_name(m.parent.name + ".yaml").is_file()
    with (root / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    test_overall = [r for r in rows if r["split"] == "test" and r["group"] == "overall"]
    assert len(test_overall) == 4 and {r["seed"] for r in test_overall} == {"0", "1"}
    assert {"ndcg@10", "class_accuracy", "auc"} <= set(rows[0])
    assert {r["group"] for r in rows} >= {"overall", "head", "torso", "tail"}
    md = (root / "results.md").read_text()
    assert "| lr 3e-3 " in md and "| lr 1e-4 " in md and " ± " in md and "**" in md
    # the second variant against the first: a paired difference with its interval
    assert "Paired differences against 'lr 3e-3'" in md and "Paired differences" in out
    paired = [line for line in md.splitlines() if line.startswith("| lr 1e-4 ")][1]
    assert paired.count("[") == 4 and "±" not in paired
    assert "By popularity bucket" in md
    assert md.split("\n\n")[1] in out  # the main table is printed
    assert list((root / "hparams").rglob("events.out.tfevents.*"))
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    mtimes = {
        p: t for p, t in mtimes.items() if "hparams" not in p.parts and "results" not in p.name
    }

    assert main(["ablate", str(path), "--jobs", "2"]) == 0
    again = capsys.readouterr().out
    assert "4 runs: 4 reused, 0 ran, 0 resumed, 0 failed" in again
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing ran, nothing rewritten
    assert (root / "results.md").read_text() == md


def test_output_dir_moves_the_ablation(tmp_path: Path) -> None:
    path = tiny_ablation(tmp_path, tmp_path / "data")
    runner = AblationRunner(load_ablation(path), path, [f"output_dir={tmp_path / 'moved'}"])
    runs = runner.plan()
    assert runner.root == tmp_path / "moved" / "tiny"
    assert all(r.run_dir.parent.parent == runner.root for r in runs)
    with pytest.raises(ConfigError, match="key version: the ablation sets it for each variant"):
        AblationRunner(load_ablation(path), path, ["version=1"])


def _error(tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\noutput_dir: {tmp_path / 'abl'}\nexperiment: {QUICKSTART}\n{body}")
    assert main(["ablate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert not (tmp_path / "abl").exists()  # nothing ran
    return err


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("variants: [{name: a}]\nbogus: 1\n", "bogus"),
        ("variants: [{name: a, overides: []}]\n", "variants[0].overides"),
        ("variants: [{name: a}, {name: a}]\n", "key variants"),
        ("variants: []\n", "key variants"),
        ("variants: [{name: a}, {name: b, overrides: [loss.nope=1]}]\n", "variants[1].overrides"),
        ("grid: {model.dropout: [0.0, 0.1], optim.nope: [1]}\n", "key grid"),
        ("overrides: [trainer.nope=1]\nvariants: [{name: a}]\n", "key overrides"),
    ],
)
def test_bad_ablation_is_one_line_naming_file_and_key(
    tmp_path: Path, body: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert key in _error(tmp_path, body, capsys)


def test_unknown_override_names_the_config_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "variants: [{name: a}, {name: b, overrides: [loss.nope=1]}]\n"
    assert "loss.nope" in _error(tmp_path, body, capsys)


@pytest.mark.parametrize("name", ["mkd.yaml", "walmart_pool.yaml"])
def test_shipped_ablations_compose_every_variant(name: str) -> None:
    path = ABLATIONS / name
    cfg = load_ablation(path)
    runs = AblationRunner(cfg, path, ["data.teacher_cache=cache"]).plan()
    assert len(runs) == len({r.run_dir for r in runs}) >= 4 * len(cfg.seeds)
    if name == "walmart_pool.yaml":
        assert sorted({r.config.data.pool_ratio for r in runs}) == [0.0, 1.0, 2.0, 5.0]
    else:
        weights = {r.variant.name: dict(r.config.loss.weights) for r in runs}
        assert sum(w["soft_kl"] == 0 for w in weights.values()) == 2
        assert sum(w["cot_aspects"] == 0 for w in weights.values()) == 2
    with pytest.raises(ConfigError, match="teacher_cache"):  # the cache is the user's to give
        AblationRunner(cfg, path, []).plan()
