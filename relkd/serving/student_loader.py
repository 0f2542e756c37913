"""Rebuild a trained student from its run folder: the net with the checkpoint's weights, in eval
mode, and a DataModule over the run's dataset (for real batches and the item table).

Like ``relkd eval``, the run is rebuilt from its saved config.yaml (paths in it are relative to
the working directory the run was trained from). Only the ``net.`` weights of the Lightning
checkpoint are read (loss-owned ``loss.`` parameters are training-only); the checkpoint is
read by relkd.artifacts.checkpoint_file (``weights_only=True``), so no pickled code runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from datamodules import QueryItemDataModule
from relkd.artifacts.checkpoint_file import check_state_fits, checkpoint_state, net_weights
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import LabelScheme
from relkd.errors import ConfigError
from relkd.nets.encoder_presets import EncoderSpec
from relkd.nets.student_registry import student_spec
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.run_dir import checkpoint_path
from relkd.runs.student_factory import build_datamodule, build_net, encoder_spec

EVAL_OVERRIDES = ["trainer.devices=1", "trainer.strategy=auto", "trainer.num_nodes=1"]
# Serving never reads the teacher: batches are built without a teacher cache (it may be large,
# slow to verify, or no longer on this machine).
NO_TEACHER = {
    "teacher_cache": None,
    "include_unlabeled": False,
    "pool_ratio": None,
    "with_cot": False,
    "with_hidden": False,
}


@dataclass
class LoadedStudent:
    """A student rebuilt from a run (or a config), ready for export or benchmarking."""

    cfg: DictConfig  # the composed config (read only)
    net: nn.Module  # CrossEncoder or TwoTower, float32, eval mode
    spec: EncoderSpec
    data_dir: Path
    dataset: CanonicalDataset
    tables_read: dict[str, str]  # dataset table -> verified sha256
    checkpoint: Path | None  # None: untrained (built from a config)

    @property
    def kind(self) -> str:
        """The ONNX graph family the student serves as (``cross_encoder`` or ``two_tower``);
        its model.student name for one that is not servable (berm, seminar)."""
        student = student_spec(self.cfg.model.student)
        return student.serving_graph or student.name

    @property
    def scheme(self) -> LabelScheme:
        return self.dataset.scheme

    def datamodule(self, data_dir: Path | None = None, **data: Any) -> QueryItemDataModule:
        """The run's DataModule (no teacher cache), with its tokenized store open.

        ``data_dir`` batches another dataset with this student's tokenizer (``relkd explain``'s
        free text); ``data`` replaces ``data.*`` settings (e.g. ``cache_dir``).
        """
        merged = OmegaConf.merge(self.cfg.data, NO_TEACHER, data)
        cfg = OmegaConf.merge(self.cfg, {"data": merged})
        dm = build_datamodule(cfg, self.data_dir if data_dir is None else data_dir, self.spec)
        dm.prepare_data()
        dm.setup("test")
        return dm


def run_config(run_dir: str | Path) -> Any:
    """The run's composed config.yaml; ConfigError for a missing file or a teacher run."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: not found; is {run_dir} a relkd run folder?")
    cfg = compose(config_path, EVAL_OVERRIDES, with_base=False)
    if cfg.task == "teacher":
        raise ConfigError(
            f"{config_path}: task is 'teacher'; relkd export serves students "
            "(cross_encoder, two_tower), not the LLM teacher"
        )
    return cfg


def net_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The student's weights (``net.`` keys, prefix removed) of a relkd checkpoint."""
    return net_weights(checkpoint_state(path))


def student_from_config(
    cfg: DictConfig, state: dict[str, torch.Tensor] | None = None, source: Path | None = None
) -> LoadedStudent:
    """Build the student ``cfg`` describes; load ``state`` (net weights, read from the
    checkpoint ``source``) when given."""
    if cfg.task == "teacher":
        raise ConfigError("task: 'teacher' is not a student")
    data_dir = resolve_dataset(cfg.data, build=False)
    dataset = CanonicalDataset(data_dir)
    tables_read = dataset.verify()  # refuse a table edited since its manifest was written
    spec = encoder_spec(cfg, data_dir)
    net = build_net(cfg, spec, dataset.scheme.num_labels, data_dir)
    if state is not None:
        target = (
            f"model.student={cfg.model.student} (model.encoder={cfg.model.encoder}) on "
            f"{data_dir} ({dataset.scheme.name}: {dataset.scheme.num_labels} labels)"
        )
        check_state_fits(source or "checkpoint", state, net.state_dict(), target)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"{source or 'checkpoint'}: weights do not fit the configured student "
                f"(model.student={cfg.model.student}, model.encoder={cfg.model.encoder}): {first}"
            ) from None
    net = net.float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return LoadedStudent(cfg, net, spec, data_dir, dataset, tables_read, source)


def load_student(run_dir: str | Path, ckpt: str | Path = "best") -> LoadedStudent:
    """Rebuild a student run: config.yaml, the checkpoint's ``net.`` weights, eval mode.

    Raises ConfigError for a folder without config.yaml, a teacher run, a missing or unreadable
    checkpoint, or weights that do not fit the configured student.
    """
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    path = checkpoint_path(run_dir, ckpt)
    return student_from_config(cfg, net_state_dict(path), source=path)


__all__ = [
    "LoadedStudent",
    "checkpoint_path",
    "load_student",
    "net_state_dict",
    "run_config",
    "student_from_config",
]
