"""``relkd train`` / ``relkd teacher train EXPERIMENT.yaml [key=value ...]``: compose, build,
fit, evaluate, report. Students and the teacher share this path and the run folder layout; only
the DataModule encoding and the LightningModule differ (relkd/runs/run_setup.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pyarrow.compute as pc
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from relkd.artifacts.atomic_files import atomic_write_json
from relkd.artifacts.checkpoint_file import read_checkpoint
from relkd.config import compose, save, to_container
from relkd.config.experiment_config import is_zero_shot_teacher
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.fsdp_strategy import build_strategy
from relkd.runs.launch import Launch, check_launch, detect_launch, rank_zero_first
from relkd.runs.resume_state import AtomicCheckpointIO, ResumeState, StepCheckpoint
from relkd.runs.run_dir import VERSION_ENV, choose_run_dir
from relkd.runs.run_report import RunReport
from relkd.runs.run_setup import RunSetup, setup_run

log = logging.getLogger(__name__)
TRAINER_KEYS_OPTIONAL = (
    "val_check_interval",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
)


def is_launcher_rank_zero() -> bool:
    """True in the process the user started, or global rank 0 under torchrun / SLURM."""
    return detect_launch().is_rank_zero


def has_labelled(dataset: CanonicalDataset, split: str) -> bool:
    pairs = dataset.table("pairs", columns=["label", "split"])
    labelled = pc.and_(pc.is_valid(pairs["label"]), pc.equal(pairs["split"], split))
    return bool(pc.any(labelled).as_py())


def dataset_info(
    data_dir: Path, dataset: CanonicalDataset, tables_read: dict[str, str]
) -> dict[str, Any]:
    """run_info.json's record of the data: the folder, its name and the sha256 of every table
    as verified against its manifest when the run started."""
    return {"root": str(data_dir), "name": dataset.manifest.name, "tables_read": tables_read}


def trainer_kwargs(t: Any, module: L.LightningModule | None = None) -> dict[str, Any]:
    """``L.Trainer`` arguments from ``trainer``; ``fsdp`` wraps ``module``'s transformer blocks."""
    kwargs = {
        "accelerator": t.accelerator,
        "devices": t.devices,
        "num_nodes": t.num_nodes,
        "strategy": build_strategy(t, module) if module is not None else t.strategy,
        "precision": t.precision,
        "max_epochs": t.max_epochs,
        "max_steps": t.max_steps,
        "accumulate_grad_batches": t.accumulate_grad_batches,
        "gradient_clip_val": t.gradient_clip_val,
        "log_every_n_steps": t.log_every_n_steps,
        "deterministic": t.deterministic,
        "enable_progress_bar": t.enable_progress_bar,
    }
    for key in TRAINER_KEYS_OPTIONAL:
        if t[key] is not None:
            kwargs[key] = t[key]
    return kwargs


def _resume_dir(cfg: DictConfig) -> tuple[Path, Path]:
    run_dir = Path(cfg.resume)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise ConfigError(f"resume: {ckpt} not found; is {run_dir} a relkd run folder?")
    read_checkpoint(ckpt, "resume")  # a foreign or corrupt file: one line, nothing unpickled
    return run_dir, ckpt


def compose_for_run(experiment: str | Path, overrides: list[str]) -> DictConfig:
    """The config to run. With ``resume=RUN_DIR`` that is the run's own saved config.yaml plus
    the command-line overrides (e.g. a larger ``trainer.max_epochs``), never the experiment
    YAML again, so a resumed run keeps its dataset, model and loss."""
    cfg = compose(experiment, overrides)
    if not cfg.resume:
        return cfg
    saved = Path(cfg.resume) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume: {saved} not found; is {cfg.resume} a relkd run folder?")
    return compose(saved, overrides, with_base=False)


def train_from_cli(experiment: str | Path, overrides: list[str], task: str = "student") -> Path:
    """``relkd train`` (task student) or ``relkd teacher train`` (task teacher)."""
    cfg = compose_for_run(experiment, overrides)
    if cfg.task != task:
        command = "relkd teacher train" if cfg.task == "teacher" else "relkd train"
        raise ConfigError(f"{experiment}: task is {cfg.task!r}; run it with `{command}`")
    return run_training(cfg)


def run_training(
    cfg: DictConfig,
    callbacks: Sequence[L.Callback] = (),
    after_fit: Callable[[L.Trainer], None] | None = None,
) -> Path:
    """Train and evaluate one experiment; returns its run folder.

    ``callbacks`` join the run's own (``relkd tune`` adds its pruning callback); ``after_fit``
    runs on every rank between fit and test, where a pruned trial stops (Optuna's
    ``check_pruned()`` under DDP)."""
    inherited_version = os.environ.get(VERSION_ENV)
    try:
        return _run(cfg, tuple(callbacks), after_fit)
    finally:
        if inherited_version is None:
            os.environ.pop(VERSION_ENV, None)


def _run(
    cfg: DictConfig,
    extra_callbacks: tuple[L.Callback, ...] = (),
    after_fit: Callable[[L.Trainer], None] | None = None,
) -> Path:
    launch = detect_launch()
    check_launch(launch, cfg.trainer)
    resume = _resume_dir(cfg) if cfg.resume else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    def claim() -> tuple[Path, Path]:
        """Rank 0: build the dataset if missing, refuse an edited one, take a run folder."""
        data_dir = resolve_dataset(cfg.data, build=launch.is_rank_zero)
        # Before a run folder is claimed: a table edited since its manifest is refused up front.
        CanonicalDataset(data_dir).verify()
        if resume is not None:
            return data_dir, resume[0]
        return data_dir, choose_run_dir(
            cfg.output_dir, cfg.experiment, cfg.version, claim=launch.is_rank_zero
        )

    exp_dir = Path(cfg.output_dir) / cfg.experiment
    parents_made = [p for p in (exp_dir, exp_dir.parent) if not p.exists()]
    data_dir, run_dir = rank_zero_first(launch, claim)
    os.environ[VERSION_ENV] = run_dir.name  # ranks Lightning starts take the same folder
    fresh = resume is None and launch.is_rank_zero
    try:
        return _train(cfg, launch, data_dir, run_dir, resume, extra_callbacks, after_fit)
    except BaseException:
        if fresh:
            _discard_unfinished(run_dir, parents_made)
        raise


def _discard_unfinished(run_dir: Path, parents_made: list[Path]) -> None:
    """A new run that failed before its first checkpoint leaves nothing behind: not its folder
    (nothing in it could be resumed or compared), nor the parents this run created, if still
    empty. One with a checkpoint is kept for ``resume=``."""
    if any((run_dir / "checkpoints").glob("*.ckpt")):
        log.warning("run stopped early; %s is kept: continue it with resume=%s", run_dir, run_dir)
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in parents_made:  # deepest first; another run's files keep a parent in place
        with contextlib.suppress(OSError):
            parent.rmdir()


def _train(
    cfg: DictConfig,
    launch: Launch,
    data_dir: Path,
    run_dir: Path,
    resume: tuple[Path, Path] | None,
    extra_callbacks: tuple[L.Callback, ...],
    after_fit: Callable[[L.Trainer], None] | None,
) -> Path:
    dataset = CanonicalDataset(data_dir)
    tables_read = dataset.verify()
    resume_ckpt = resume[1] if resume is not None else None
    config = to_container(cfg)
    eval_splits = tuple(cfg.eval.splits)
    prepared: list[RunSetup] = []

    def prepare_artifacts() -> None:
        """Rank 0 builds the tokenized store (graph, sequences, terms) before the others
        open it; under torchrun/SLURM they would otherwise race to build it."""
        prepared.append(setup_run(cfg, data_dir, dataset, eval_splits))
        prepared[0].datamodule.prepare_data()

    if launch.external:
        rank_zero_first(launch, prepare_artifacts)
    setup = prepared[0] if prepared else setup_run(cfg, data_dir, dataset, eval_splits)
    setup.datamodule.prepare_data_per_node = False  # one build per job, not one per node
    if launch.is_rank_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save(cfg, run_dir / "config.yaml")
        info = {
            "task": cfg.task,
            "dataset": dataset_info(data_dir, dataset, tables_read),
            **setup.info,
            "resumed_from": str(resume_ckpt) if resume_ckpt else None,
        }
        atomic_write_json(run_dir / "run_info.json", info)

    dm = setup.datamodule
    dm.test_splits = eval_splits
    module = setup.module
    logger = TensorBoardLogger(
        save_dir=str(run_dir.parent.parent),
        name=run_dir.parent.name,
        version=run_dir.name,
        default_hp_metric=False,
    )
    # Without labelled val pairs there is nothing to select on: keep the latest weights as best.
    validates = cfg.trainer.limit_val_batches != 0
    monitor = cfg.checkpoint.monitor if validates and has_labelled(dataset, "val") else None
    if monitor is None:
        log.warning(
            "%s: no validation during fit (no labelled val pairs, or trainer.limit_val_batches=0): "
            "no early stopping, best.ckpt = latest",
            data_dir,
        )
    ckpt_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=cfg.checkpoint.mode,
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,  # best.ckpt / last.ckpt are overwritten, never -v1 copies
    )
    callbacks: list[L.Callback] = [ckpt_cb, LearningRateMonitor(logging_interval="step")]
    if cfg.checkpoint.every_n_train_steps:
        # last.ckpt only, every n optimiser steps (a kill loses at most n); best.ckpt stays the
        # monitored callback's alone. Both write the one last.ckpt (no version counter).
        steps = cfg.checkpoint.every_n_train_steps
        callbacks.append(StepCheckpoint(steps, run_dir / "checkpoints"))
    callbacks.append(ResumeState())
    if cfg.early_stopping.enabled and monitor is not None:
        callbacks.append(
            EarlyStopping(
                monitor=monitor,
                mode=cfg.checkpoint.mode,
                patience=cfg.early_stopping.patience,
                min_delta=cfg.early_stopping.min_delta,
                check_on_train_epoch_end=False,  # only after validation, which logs the metric
                strict=False,  # a val split whose queries all lack positives logs no NDCG
            )
        )
    extra = {"experiment": cfg.experiment, "version": run_dir.name, "dataset": str(data_dir)}
    callbacks.append(RunReport(run_dir / "metrics.json", config, extra=extra))
    callbacks.extend(setup.callbacks(run_dir))
    callbacks.extend(extra_callbacks)
    trainer = L.Trainer(
        **trainer_kwargs(cfg.trainer, module),
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # the DataModule's samplers shard across ranks themselves
        plugins=[AtomicCheckpointIO()],  # a kill mid-write never leaves a truncated checkpoint
    )
    trainer.fit(
        module,
        datamodule=dm,
        ckpt_path=str(resume_ckpt) if resume_ckpt else None,
        weights_only=True,
    )
    if after_fit is not None:
        after_fit(trainer)
    best: str | None = ckpt_cb.best_model_path or str(run_dir / "checkpoints" / "last.ckpt")
    if is_zero_shot_teacher(cfg):
        best = None  # a zero-shot teacher: the base model as loaded judges, no checkpoint
    trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)
    if trainer.is_global_zero:
        _print_summary(cfg, run_dir, data_dir, setup)
    return run_dir


def _print_summary(cfg: DictConfig, run_dir: Path, data_dir: Path, setup: RunSetup) -> None:
    from relkd.metrics.report import format_metrics_table

    metrics = json.loads((run_dir / "metrics.json").read_text())
    evaluated = [s for s in cfg.eval.splits if s in metrics]
    if not evaluated:
        print(f"\nrun: {run_dir} (no labelled pairs in {list(cfg.eval.splits)} to evaluate)")
        return
    split = "test" if "test" in evaluated else evaluated[-1]
    rows = {f"{setup.name} ({split})": metrics[split]}
    if cfg.eval.bm25_baseline:
        from relkd.baselines.bm25_baseline import run_bm25_baseline

        bm25 = run_bm25_baseline(
            data_dir, split=split, out=run_dir / "bm25" / "metrics.json", verbose=False
        )
        rows[f"bm25 ({split})"] = bm25["metrics"]
    print(f"\nrun: {run_dir}")
    print(format_metrics_table(rows))
