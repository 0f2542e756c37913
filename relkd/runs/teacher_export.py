"""After a teacher run's final evaluation: export its adapter and record its prompt store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L

from relkd.artifacts.atomic_files import atomic_write_json
from relkd.teacher.teacher_adapter import export_teacher


class TeacherExport(L.Callback):
    """On rank 0 at the end of ``trainer.test`` (the best weights are loaded): write
    ``<run>/adapter/`` (relkd/teacher/teacher_adapter.py) and add the prompt store's facts
    (path, truncation counts, neighbour coverage) to ``run_info.json``."""

    def __init__(self, run_dir: Path, export_kwargs: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.export_kwargs = export_kwargs

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        export_teacher(pl_module, self.run_dir / "adapter", **self.export_kwargs)
        info_path = self.run_dir / "run_info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        store = getattr(trainer.datamodule, "store", None)
        if store is not None:
            m = store.manifest
            info["prompt_store"] = {
                "path": str(store.root),
                "counts": m.get("counts"),
                "truncated": m.get("truncated"),
                "neighbors": m.get("neighbors"),
                "cot": m.get("cot"),
            }
        info["parameters"] = pl_module.trainable_counts()
        atomic_write_json(info_path, info)
