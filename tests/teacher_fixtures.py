"""A tiny teacher run (random 1-layer decoder, a few hundred pairs) shared by teacher tests."""

from __future__ import annotations

from pathlib import Path

from relkd.cli import main
from tests.conftest import REPO

TEACHER = REPO / "experiments" / "teacher"


def tiny_teacher(tmp: Path, data_root: Path, **extra: object) -> list[str]:
    values: dict[str, object] = {
        "output_dir": tmp / "runs",
        "data.dataset_root": data_root / "datasets",
        "data.cache_dir": data_root / "tokenized",
        "data.synthetic.pairs": 1200,
        "data.synthetic.val_pairs": 0,
        "data.synthetic.test_pairs": 0,
        "data.batch_size": 16,
        "data.eval_batch_size": 64,
        "teacher.model": "tiny-causal",
        "teacher.tiny.hidden_size": 32,
        "teacher.tiny.layers": 1,
        "teacher.prompt.max_item_tokens": 32,
        "teacher.cot.max_new_tokens": 24,
        "optim.lr": 3e-3,
        "optim.head_lr": 3e-3,
        "trainer.max_epochs": 1,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": False,
        "trainer.log_every_n_steps": 1,
        "trainer.limit_val_batches": "null",
        "eval.bm25_baseline": False,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def run_teacher(tmp: Path, data_root: Path, preset: str = "embedded", **extra: object) -> Path:
    assert (
        main(
            [
                "teacher",
                "train",
                str(TEACHER / f"{preset}.yaml"),
                *tiny_teacher(tmp, data_root, **extra),
            ]
        )
        == 0
    )
    runs = sorted((tmp / "runs").glob("*/version_*"))
    assert len(runs) == 1
    return runs[0]
