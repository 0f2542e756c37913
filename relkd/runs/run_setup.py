"""What a run trains: the DataModule, the LightningModule and run facts, for a student or the
teacher (``task``), built from a composed config. Shared by ``relkd train``, ``relkd teacher
train`` and ``relkd eval``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from datamodules import QueryItemDataModule
from relkd.config.experiment_config import is_zero_shot_teacher
from relkd.data.canonical_dataset import CanonicalDataset


@dataclass
class RunSetup:
    datamodule: QueryItemDataModule
    module: L.LightningModule
    info: dict[str, Any]  # facts for run_info.json
    name: str  # the model's name in printed tables
    make_callbacks: Callable[[Path], list[L.Callback]] = field(default=lambda run_dir: [])

    def callbacks(self, run_dir: Path) -> list[L.Callback]:
        return self.make_callbacks(run_dir)


def setup_run(
    cfg: DictConfig, data_dir: Path, dataset: CanonicalDataset, eval_splits: tuple[str, ...]
) -> RunSetup:
    if cfg.task == "teacher":
        return _teacher(cfg, data_dir, dataset, eval_splits)
    return _student(cfg, data_dir, dataset, eval_splits)


def _student(
    cfg: DictConfig, data_dir: Path, dataset: CanonicalDataset, eval_splits: tuple[str, ...]
) -> RunSetup:
    from relkd.runs.student_factory import build_datamodule, build_student, encoder_spec

    spec = encoder_spec(cfg, data_dir)
    info: dict[str, Any] = {
        "encoder": spec.name,
        "fallback_from": spec.fallback_from,  # model.encoder when it could not be loaded
        "tokenizer": spec.tokenizer,
        "pretrained": spec.pretrained,
    }
    if cfg.data.teacher_cache:
        from relkd.teacher_cache.teacher_cache import cache_identity

        info["teacher_cache"] = cache_identity(cfg.data.teacher_cache)
    return RunSetup(
        datamodule=build_datamodule(cfg, data_dir, spec),
        module=build_student(cfg, spec, dataset.scheme, eval_splits, data_dir),
        info=info,
        name=student_name(cfg.model, spec),
    )


def student_name(model_cfg: DictConfig, spec: Any = None) -> str:
    """How a student shows in printed tables: kind, the encoder it trained (the fallback's
    name, marked, when ``model.encoder`` could not be loaded) and depth if cut."""
    from relkd.nets.student_registry import student_spec

    kind = student_spec(model_cfg.student).display
    encoder = model_cfg.encoder if spec is None else spec.name
    if spec is not None and spec.fallback_from:
        encoder = f"{spec.name} (fallback for {spec.fallback_from})"
    depth = f" L{model_cfg.encoder_layers}" if model_cfg.encoder_layers else ""
    return f"{kind} {encoder}{depth}"


def _teacher(
    cfg: DictConfig, data_dir: Path, dataset: CanonicalDataset, eval_splits: tuple[str, ...]
) -> RunSetup:
    from relkd.runs.teacher_export import TeacherExport
    from relkd.runs.teacher_factory import (
        build_teacher,
        build_teacher_datamodule,
        prompt_spec,
        teacher_spec,
    )

    spec = teacher_spec(cfg, data_dir)
    pspec = prompt_spec(cfg, dataset.scheme, spec)
    parts = build_teacher(cfg, spec, dataset.scheme, pspec, eval_splits)
    base_sha = spec.weights_sha256()
    template = pspec.template()
    t = cfg.teacher
    zero_shot = is_zero_shot_teacher(cfg)
    lora = {
        "r": t.lora.r,
        "alpha": t.lora.alpha,
        "dropout": t.lora.dropout,
        "target_modules": list(t.lora.target_modules),
        "train_new_weights": t.lora.train_new_weights,
    }
    info = {
        "teacher": {
            "model": spec.name,
            "pretrained": spec.pretrained,
            "tokenizer": spec.tokenizer,
            "revision": spec.revision,
            "weights_sha256": base_sha,
            "gguf_sha256": spec.gguf_sha256,
            "newly_initialised": parts.new_weights,
            "finetune": t.finetune,
            "lora": lora if t.finetune == "lora" else None,
            "zero_shot": zero_shot,  # trainer.max_epochs=0: the base model judges, untrained
            "chat": pspec.chat,
        },
        "template": {"version": template.version, "mode": template.mode, "sha256": template.sha256},
        "parameters": parts.module.trainable_counts(),
    }
    export = {
        "spec": spec,
        "base_sha256": base_sha,
        "prompt_spec": pspec,
        "finetune": t.finetune,
        "lora": lora,
        "tokenizer": parts.tokenizer,
        "extra": {"dataset": {"name": dataset.manifest.name, "root": str(data_dir)}},
    }
    return RunSetup(
        datamodule=build_teacher_datamodule(cfg, data_dir, spec, pspec),
        module=parts.module,
        info=info,
        name=f"teacher {spec.name} [{t.mode}{', zero-shot' if zero_shot else ''}]",
        make_callbacks=lambda run_dir: [TeacherExport(run_dir, export)],
    )
