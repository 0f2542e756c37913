"""Compose an experiment config: schema defaults <- base.yaml <- experiment YAML <- CLI overrides.

Every layer is merged into the structured schema, so unknown keys and wrong types fail early
with a ConfigError naming the key and the file (or ``command line``) that set it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from relkd.config.experiment_config import (
    DATASET_KINDS,
    PRECISIONS,
    STRATEGIES,
    STUDENTS,
    ExperimentConfig,
)
from relkd.errors import ConfigError

BASE_NAME = "base.yaml"
REPO_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class Layer:
    source: str  # a file path or "command line"
    conf: DictConfig


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        conf = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and OmegaConf errors alike
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(conf, DictConfig):
        raise ConfigError(f"{path}: top level must be a mapping")
    return conf


def _base_for(experiment: Path) -> Path | None:
    for candidate in (experiment.parent / BASE_NAME, REPO_EXPERIMENTS / BASE_NAME):
        if candidate.is_file():
            return candidate
    return None


def _key_is_set(conf: DictConfig, key: str) -> bool:
    return OmegaConf.select(conf, key, default="__relkd_missing__") != "__relkd_missing__"


def _blame(layers: Sequence[Layer], key: str) -> str:
    """The last layer that sets ``key``: that is where a bad value came from."""
    for layer in reversed(layers):
        if _key_is_set(layer.conf, key):
            return layer.source
    return "defaults"


def compose(
    experiment: str | Path, overrides: Sequence[str] = (), with_base: bool = True
) -> DictConfig:
    """Load and validate an experiment; returns a read-only DictConfig on the schema.

    ``with_base=False`` reads a file that is already complete, such as a run's saved config.yaml.
    """
    path = Path(experiment)
    layers: list[Layer] = []
    base = _base_for(path) if with_base else None
    if base is not None and base.resolve() != path.resolve():
        layers.append(Layer(str(base), _read_yaml(base)))
    exp_conf = _read_yaml(path)
    if "experiment" not in exp_conf:
        exp_conf.experiment = path.stem
    layers.append(Layer(str(path), exp_conf))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"{COMMAND_LINE}: overrides must look like key=value, got {bad}")
        try:
            layers.append(Layer(COMMAND_LINE, OmegaConf.from_dotlist(list(overrides))))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{COMMAND_LINE}: cannot parse overrides ({exc})") from None

    cfg = OmegaConf.structured(ExperimentConfig)
    for layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer.conf)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or "?"
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"{layer.source}: key {key}: {reason}") from None
    validate(cfg, layers)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _check(ok: bool, layers: Sequence[Layer], key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{_blame(layers, key)}: key {key}: {message}")


def validate(cfg: DictConfig, layers: Sequence[Layer] = ()) -> None:
    """Semantic checks the type system cannot express (choices, ranges, known loss terms)."""
    from relkd.losses.registry import LOSS_TERMS

    t, d, m = cfg.trainer, cfg.data, cfg.model
    _check(
        t.strategy in STRATEGIES, layers, "trainer.strategy", f"{t.strategy!r} not in {STRATEGIES}"
    )
    _check(
        str(t.precision) in PRECISIONS,
        layers,
        "trainer.precision",
        f"{t.precision!r} not in {PRECISIONS}",
    )
    _check(d.kind in DATASET_KINDS, layers, "data.kind", f"{d.kind!r} not in {DATASET_KINDS}")
    _check(d.kind != "path" or bool(d.path), layers, "data.path", "required when data.kind is path")
    _check(d.synthetic.pairs > 0, layers, "data.synthetic.pairs", "must be > 0")
    _check(d.batch_size > 0, layers, "data.batch_size", "must be > 0")
    _check(d.eval_batch_size > 0, layers, "data.eval_batch_size", "must be > 0")
    _check(d.group_size == 0 or d.group_size >= 2, layers, "data.group_size", "must be 0 or >= 2")
    _check(
        d.group_size == 0 or d.batch_size % d.group_size == 0,
        layers,
        "data.batch_size",
        f"must be a multiple of data.group_size ({d.group_size}) in grouped mode",
    )
    _check(d.max_length >= 8, layers, "data.max_length", "must be >= 8")
    _check(
        m.student in STUDENTS, layers, "model.student", f"{m.student!r} not in {sorted(STUDENTS)}"
    )
    _check(m.pooling in ("cls", "mean"), layers, "model.pooling", "must be cls or mean")
    _check(0.0 <= m.dropout < 1.0, layers, "model.dropout", "must be in [0, 1)")
    unknown = sorted(set(cfg.loss.weights) - set(LOSS_TERMS))
    _check(
        not unknown,
        layers,
        "loss.weights",
        f"unknown loss term(s) {unknown}; known: {sorted(LOSS_TERMS)}",
    )
    _check(
        any(w > 0 for w in cfg.loss.weights.values()),
        layers,
        "loss.weights",
        "at least one weight must be > 0",
    )
    _check(
        all(w >= 0 for w in cfg.loss.weights.values()),
        layers,
        "loss.weights",
        "weights must be >= 0",
    )
    _check(cfg.loss.temperature > 0, layers, "loss.temperature", "must be > 0")
    _check(cfg.optim.lr > 0, layers, "optim.lr", "must be > 0")
    _check(
        cfg.optim.scheduler in ("linear", "constant"),
        layers,
        "optim.scheduler",
        "linear or constant",
    )
    _check(cfg.checkpoint.mode in ("min", "max"), layers, "checkpoint.mode", "must be min or max")
    _check(len(cfg.eval.splits) > 0, layers, "eval.splits", "name at least one split")
    bad_splits = sorted(set(cfg.eval.splits) - {"train", "val", "test"})
    _check(not bad_splits, layers, "eval.splits", f"unknown split(s) {bad_splits}")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def save(cfg: DictConfig, path: str | Path) -> None:
    """Write the fully resolved config (what actually ran) as YAML."""
    OmegaConf.save(cfg, Path(path), resolve=True)
