"""Build the DataModule and the student from a composed config (shared by train and eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules import QueryItemDataModule
from lightning_modules.student_module import StudentModule
from relkd.config.experiment_config import STUDENTS
from relkd.errors import ConfigError
from relkd.losses.registry import build_loss
from relkd.nets.cross_encoder import CrossEncoder
from relkd.nets.encoder_presets import EncoderSpec, resolve_encoder


def encoder_spec(cfg: Any, data_dir: Path) -> EncoderSpec:
    """Resolve ``model.encoder``; a fallback vocabulary (no MiniLM) is cached under data.cache_dir."""
    return resolve_encoder(cfg.model, data_dir, Path(cfg.data.cache_dir) / "tokenizers")


def build_datamodule(cfg: Any, data_dir: Path, spec: EncoderSpec) -> QueryItemDataModule:
    d = cfg.data
    return QueryItemDataModule(
        data_dir=data_dir,
        tokenizer=spec.tokenizer,
        cache_dir=d.cache_dir,
        max_length=d.max_length,
        max_query_tokens=d.max_query_tokens,
        max_item_tokens=d.max_item_tokens,
        item_fields=tuple(d.item_fields),
        encoding=STUDENTS[cfg.model.student],
        batch_size=d.batch_size,
        eval_batch_size=d.eval_batch_size,
        group_size=d.group_size,
        length_bucketing=d.length_bucketing,
        include_unlabeled=d.include_unlabeled,
        teacher_cache=d.teacher_cache,
        with_cot=d.with_cot,
        num_workers=d.num_workers,
        seed=cfg.seed,
    )


def build_student(
    cfg: Any, spec: EncoderSpec, scheme: Any, eval_splits: tuple[str, ...]
) -> StudentModule:
    if cfg.model.student not in STUDENTS:
        raise ConfigError(f"model.student: {cfg.model.student!r} not in {sorted(STUDENTS)}")
    net = CrossEncoder(
        spec.build(dropout=cfg.model.dropout),
        num_labels=scheme.num_labels,
        dropout=cfg.model.dropout,
        pooling=cfg.model.pooling,
    )
    return StudentModule(
        net=net,
        loss=build_loss(cfg.loss, scheme),
        scheme=scheme,
        optim=dict(cfg.optim),
        eval_splits=eval_splits,
    )


__all__ = ["build_datamodule", "build_student", "encoder_spec"]
