"""The README's main job, unshrunk (slow: about 6 minutes on a 2-core CPU).

Run with ``python -m pytest -m slow``. It asserts the issue's quality bar: the MiniLM
cross-encoder beats BM25 on NDCG@10 on the synthetic test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relkd.config import compose
from relkd.train import run_training
from tests.conftest import QUICKSTART


@pytest.mark.slow
def test_quickstart_student_beats_bm25(tmp_path: Path) -> None:
    cfg = compose(
        QUICKSTART,
        [
            f"output_dir={tmp_path / 'runs'}",
            f"data.dataset_root={tmp_path / 'datasets'}",
            f"data.cache_dir={tmp_path / 'tokenized'}",
            "trainer.enable_progress_bar=false",
        ],
    )
    run_dir = run_training(cfg)
    student = json.loads((run_dir / "metrics.json").read_text())["test"]["overall"]["ndcg@10"]
    bm25 = json.loads((run_dir / "bm25" / "metrics.json").read_text())["metrics"]["overall"][
        "ndcg@10"
    ]
    assert student > bm25, (student, bm25)
