"""`relkd teacher train` end to end on a tiny teacher: the run folder, TensorBoard, the adapter,
`relkd eval` on a teacher run, the CoT modes, and the task guard."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_modules.relevance_module import flatten_metrics
from relkd.cli import main
from tests.conftest import REPO
from tests.teacher_fixtures import TEACHER, build_tiny_qwen, run_teacher


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    # LoRA over a frozen random base (the preset itself fine-tunes fully; see the CoT tests)
    lora = {"teacher.finetune": "lora", "teacher.lora.train_new_weights": False}
    return run_teacher(tmp_path_factory.mktemp("teacher_cls"), shared_data_root, **lora)


def test_run_folder_contents(classifier_run: Path) -> None:
    run = classifier_run
    assert run.parent.name == "teacher_embedded"
    for name in (
        "config.yaml",
        "run_info.json",
        "metrics.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "predictions/test.parquet",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/relkd_teacher.json",
        "adapter/new_weights.safetensors",  # a config-built base is all new: saved with the adapter
        "adapter/tokenizer/tokenizer.json",
    ):
        assert (run / name).is_file(), name
    info = json.loads((run / "run_info.json").read_text())
    assert info["task"] == "teacher" and info["teacher"]["model"] == "tiny-causal"
    assert info["parameters"]["trainable"] < info["parameters"]["total"]
    assert info["prompt_store"]["truncated"]["item"] > 0  # the 32-token item budget cut some
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        overall = metrics[split]["overall"]
        for key in ("ndcg@10", "auc", "class_accuracy", "class_ece"):
            assert overall[key] is not None, key
        assert set(metrics[split]["buckets"]) <= {"head", "torso", "tail"}
    manifest = json.loads((run / "adapter" / "relkd_teacher.json").read_text())
    assert (
        manifest["mode"] == "classifier"
        and manifest["template"]["sha256"] == info["template"]["sha256"]
    )
    assert manifest["base"]["name"] == "tiny-causal" and manifest["finetune"] == "lora"


def test_tensorboard_has_every_loss_term_and_metric(classifier_run: Path) -> None:
    acc = EventAccumulator(str(classifier_run), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss/soft_target_ce", "test/class_ece", "test/ndcg@10"} <= tags
    metrics = json.loads((classifier_run / "metrics.json").read_text())
    for tag, value in flatten_metrics("test", metrics["test"]).items():
        assert acc.Scalars(tag)[-1].value == pytest.approx(value, rel=1e-5, abs=1e-6), tag


def test_eval_reproduces_a_teacher_run(classifier_run: Path, capsys) -> None:
    assert main(["eval", str(classifier_run), "--split", "test"]) == 0
    out = json.loads(next((classifier_run / "eval").glob("*/metrics.json")).read_text())
    want = json.loads((classifier_run / "metrics.json").read_text())["test"]["overall"]
    for key in ("ndcg@10", "auc", "class_accuracy"):
        assert out["test"]["overall"][key] == pytest.approx(want[key], abs=1e-6), key
    assert "teacher tiny-causal [classifier]" in capsys.readouterr().out


def test_train_and_teacher_train_refuse_each_others_task(tmp_path: Path, capsys) -> None:
    assert main(["train", str(TEACHER / "embedded.yaml")]) == 2
    assert "relkd teacher train" in capsys.readouterr().err
    assert main(["teacher", "train", str(REPO / "experiments" / "quickstart.yaml")]) == 2
    assert "task is 'student'" in capsys.readouterr().err


def test_cot_teacher_reports_parse_rate_and_aspect_accuracy(cot_teacher_run: Path) -> None:
    run = cot_teacher_run
    metrics = json.loads((run / "metrics.json").read_text())
    cot = metrics["test"]["cot"]
    assert 0.0 <= cot["parse_rate"] <= 1.0 and "verdict_cue_rate" in cot
    assert set(cot["aspect_accuracy"]) == {"category", "brand", "model", "attributes"}
    preds = pq.read_table(run / "predictions" / "test.parquet")
    assert {"cot", "aspect_pred"} <= set(preds.column_names)
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert {"train/loss/cot_lm", "test/cot/parse_rate"} <= set(acc.Tags()["scalars"])


def test_progressive_teacher_with_neighbours_and_fitted_aggregation(
    tmp_path, shared_data_root
) -> None:
    run = run_teacher(
        tmp_path, shared_data_root, preset="prorbp", **{"teacher.aggregation": "fitted"}
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["cot"]["parse_rate"] == 1.0  # guided steps always parse
    assert metrics["test"]["cot"]["aggregation"] == "fitted on val"
    manifest = json.loads((run / "adapter" / "relkd_teacher.json").read_text())
    assert manifest["aggregator"]["kind"] == "multinomial_logistic"
    info = json.loads((run / "run_info.json").read_text())
    assert info["prompt_store"]["neighbors"]["train"]["pairs_with_query_neighbors"] > 0


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"))


@pytest.mark.parametrize("mode", ["classifier", "progressive"])
def test_any_hf_causal_lm_path_works(tmp_path, shared_data_root, tiny_qwen, mode) -> None:
    extra = {
        "teacher.model": str(tiny_qwen),
        "teacher.finetune": "lora",
        "teacher.lora.target_modules": "[q_proj,v_proj]",
        "teacher.mode": mode,
    }
    if mode == "progressive":
        extra["loss.weights.aspect_ce"] = 1.0
    run = run_teacher(tmp_path, shared_data_root, **extra)
    info = json.loads((run / "run_info.json").read_text())
    assert info["teacher"]["newly_initialised"] == []  # a complete checkpoint: nothing new
    assert info["teacher"]["weights_sha256"]  # hashed from the local folder
    manifest = json.loads((run / "adapter" / "relkd_teacher.json").read_text())
    assert manifest["new_weights"] is None and manifest["base"]["pretrained"] == str(tiny_qwen)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["overall"]["ndcg@10"] is not None
    if mode == "progressive":
        assert metrics["test"]["cot"]["parse_rate"] == 1.0
