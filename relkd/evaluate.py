"""``relkd eval RUN_DIR [--data DIR] [--split S] [--ckpt best|last|PATH]``: re-evaluate a run.

The student or teacher (the config's ``task``) is rebuilt from the run's saved config.yaml and
its checkpoint; the threshold is
tuned on the dataset's val split (when it has one) and applied to the requested split. Results
go to ``RUN_DIR/eval/<dataset>-<split>/metrics.json`` and never overwrite the run's own metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L

from relkd.config import compose, to_container
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.run_dir import checkpoint_path
from relkd.runs.run_report import RunReport
from relkd.runs.run_setup import setup_run


def evaluate_run(
    run_dir: str | Path, data: str | Path | None = None, split: str = "test", ckpt: str = "best"
) -> dict[str, Any]:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: not found; is {run_dir} a relkd run folder?")
    overrides = ["trainer.devices=1", "trainer.strategy=auto", "trainer.num_nodes=1"]
    if data is not None:
        overrides += ["data.kind=path", f"data.path={data}"]
    cfg = compose(config_path, overrides, with_base=False)
    path = checkpoint_path(run_dir, ckpt)
    data_dir = resolve_dataset(cfg.data, build=False)
    dataset = CanonicalDataset(data_dir)
    tables_read = dataset.verify()  # refuse a table edited since its manifest was written
    splits = ("val", split) if split != "val" else ("val",)
    setup = setup_run(cfg, data_dir, dataset, splits)
    dm = setup.datamodule
    dm.test_splits = splits
    module = setup.module
    out = run_dir / "eval" / f"{data_dir.name}-{split}" / "metrics.json"
    extra = {"checkpoint": str(path), "dataset": str(data_dir), "tables_read": tables_read}
    report = RunReport(out, to_container(cfg), extra=extra)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        logger=False,
        callbacks=[report],
        enable_progress_bar=cfg.trainer.enable_progress_bar,
        use_distributed_sampler=False,
    )
    trainer.test(module, datamodule=dm, ckpt_path=str(path), verbose=False)
    metrics = json.loads(out.read_text())
    from relkd.metrics.report import format_metrics_table

    print(f"checkpoint: {path}\nmetrics: {out}")
    print(format_metrics_table({f"{setup.name} ({split})": metrics[split]}))
    if "cot" in metrics[split]:
        print(f"CoT: {json.dumps(metrics[split]['cot'], sort_keys=True)}")
    return metrics
