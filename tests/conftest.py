"""Shared fixtures. Like lightning-hydra-template, tests shrink the REAL experiment config
(experiments/quickstart.yaml) with overrides rather than keeping a separate test config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"


@pytest.fixture(scope="session")
def shared_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic datasets and tokenized caches shared by the training tests of one session."""
    return tmp_path_factory.mktemp("shared_data")


def tiny_overrides(output_dir: Path, data_root: Path, **extra: object) -> list[str]:
    """Shrink quickstart to seconds: a 2-layer 32-wide BERT, a few hundred pairs, 1 epoch."""
    values: dict[str, object] = {
        "output_dir": output_dir,
        "data.dataset_root": data_root / "datasets",
        "data.cache_dir": data_root / "tokenized",
        "data.synthetic.pairs": 1200,
        "data.synthetic.unlabeled_ratio": 5.0,
        "data.synthetic.val_pairs": 0,  # no held-out evaluation queries: seconds, not minutes
        "data.synthetic.test_pairs": 0,
        "data.batch_size": 16,
        "data.eval_batch_size": 64,
        "model.encoder": "tiny-bert",
        "model.fallback_encoder": "null",
        "model.tiny_hidden_size": 32,
        "model.tiny_layers": 1,
        "model.tiny_heads": 2,
        "model.dropout": 0.0,
        "optim.lr": 3e-3,
        "trainer.max_epochs": 1,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": False,
        "trainer.log_every_n_steps": 1,
        "eval.bm25_baseline": False,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def cot_teacher_run(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    """A tiny `cot` teacher run, trained once per session (teacher and annotate tests)."""
    from tests.teacher_fixtures import run_teacher

    return run_teacher(tmp_path_factory.mktemp("teacher_cot"), shared_data_root, preset="cot")
