"""The schema of a study YAML (experiments/studies/*.yaml), read by ``relkd tune``.

A study names one base experiment, what every trial overrides, and the search space: the loss
weights on a simplex (``space.weights``), the ``kd_ratio`` shorthand, the soft-KL temperature,
and any other config key (``space.params``). Unknown keys are errors, as in experiment YAMLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from relkd.config.yaml_file import read_yaml
from relkd.errors import ConfigError
from relkd.losses.registry import LABEL_TERMS, SCORE_KD_TERMS

SAMPLERS = ("tpe", "random")
PRUNERS = ("none", "median", "hyperband", "successive_halving", "threshold")
DIRECTIONS = ("maximize", "minimize")


@dataclass
class ParamSpec:
    """One searched key: a float/int range (``low``, ``high``, ``log``, ``step``, ``int``) or a
    categorical (``choices``)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    int: bool = False
    choices: list[Any] | None = None


@dataclass
class SearchSpaceConfig:
    # loss.weights terms searched on the simplex: their sum stays the base experiment's, so
    # w and 2w (the same loss, twice the learning rate) are never two trials
    weights: list[str] = field(default_factory=list)
    kd_ratio: ParamSpec | None = None  # loss.kd_ratio in [low, high] (label vs score KD share)
    temperature: ParamSpec | None = None  # loss.temperature (soft_kl's T)
    params: dict[str, ParamSpec] = field(default_factory=dict)  # any other config key


@dataclass
class SamplerConfig:
    kind: str = "tpe"
    seed: int | None = None  # null: each worker draws its own (distributed workers must differ)
    startup_trials: int = 5  # random trials before TPE models the space


@dataclass
class PrunerConfig:
    kind: str = "median"
    startup_trials: int = 3  # median: trials that are never pruned
    warmup_epochs: int = 1  # median: epochs before a trial can be pruned
    min_epochs: int = 1  # hyperband, successive_halving: the smallest budget (epochs)
    reduction_factor: int = 3  # hyperband, successive_halving
    lower: float | None = None  # threshold: prune below this after warmup_epochs (a floor,
    upper: float | None = None  # e.g. BM25's NDCG@10), or above ``upper``
    # what each validation reports to the pruner: a logged metric such as val/class_nll (the
    # class cross-entropy, steadier than NDCG early on); null: the study's own metric
    monitor: str | None = None
    # maximize | minimize: the monitor's own direction; one opposite to the study's is reported
    # negated, so the pruner keeps the trials that are better on it. null: the study's direction
    monitor_direction: str | None = None


@dataclass
class HeartbeatConfig:
    """A worker killed mid-trial stops beating; after ``grace`` seconds the next worker marks its
    trial failed and re-queues its parameters (at most ``max_retry`` times)."""

    interval: int = 30
    grace: int = 120
    max_retry: int = 2


@dataclass
class ObjectiveConfig:
    """What a trial's value is made of."""

    # train each trial once per seed (the experiment's ``seed``) and report the mean of the
    # metric over the seeds (their std a user attribute); [] = once, at the experiment's seed
    seeds: list[int] = field(default_factory=list)


@dataclass
class StudyConfig:
    name: str = "study"
    output_dir: str = "runs/studies"  # trials run under <output_dir>/<name>/trial-<n>/
    experiment: str = "experiments/quickstart.yaml"  # as given, beside this file, or bundled
    overrides: list[str] = field(default_factory=list)  # every trial's, first
    trials: int = 20  # finished (complete + pruned) trials the study reaches, over all workers
    metric: str = "val/ndcg@10"  # reported each validation; the objective is its value on
    # the best checkpoint (metrics.json)
    direction: str = "maximize"
    latency_objective: bool = False  # also minimise ms per pair (multi-objective; no pruning)
    storage: str | None = None  # default sqlite:///<output_dir>/<name>/study.db
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    # run each trial inside the worker's own process (no interpreter start, no re-import of
    # torch and Lightning per trial); DDP trials always get their own processes
    in_process: bool = True
    space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)

    @property
    def pruning_monitor(self) -> str:
        """The logged metric each validation reports to the pruner."""
        return self.pruner.monitor or self.metric

    @property
    def pruning_sign(self) -> float:
        """-1 when the monitor improves the other way than the study's objective."""
        own = self.pruner.monitor_direction or self.direction
        return 1.0 if own == self.direction else -1.0

    @property
    def metric_split(self) -> str:
        return self.metric.split("/", 1)[0]

    @property
    def metric_key(self) -> str:
        return self.metric.split("/", 1)[1]


def _check_range(path: Path, key: str, spec: ParamSpec) -> None:
    if spec.choices is not None:
        if not spec.choices or spec.low is not None or spec.high is not None:
            raise ConfigError(f"{path}: key {key}: give either choices or low/high")
        return
    if spec.low is None or spec.high is None or not spec.low < spec.high:
        raise ConfigError(f"{path}: key {key}: needs low < high (or choices)")
    if spec.log and spec.low <= 0:
        raise ConfigError(f"{path}: key {key}: log scale needs low > 0")
    if spec.log and spec.step is not None:
        raise ConfigError(f"{path}: key {key}: log and step cannot be combined")


def _unknown_config_key(key: str) -> str | None:
    """Why ``key`` is not an experiment config key (None when it is). Checked when the study
    is read, so a typo fails at once instead of failing every trial in a row."""
    from relkd.config.experiment_config import ExperimentConfig
    from relkd.losses.registry import LOSS_TERMS

    node: Any = OmegaConf.structured(ExperimentConfig)
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return f"{'.'.join(parts[:depth])} is a value, not a section"
        if OmegaConf.get_type(node) is dict:  # an open mapping such as loss.weights
            if ".".join(parts[:depth]) == "loss.weights" and part not in LOSS_TERMS:
                return f"unknown loss term {part!r}; known: {sorted(LOSS_TERMS)}"
            return None
        if part not in node:
            where = ".".join(parts[:depth]) or "the experiment config"
            return f"not a config key ({where} has no {part!r})"
        node = node[part]
    return None


def _check(path: Path, cfg: StudyConfig) -> None:
    if not cfg.name.strip() or "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(f"{path}: key name: a folder name, got {cfg.name!r}")
    if cfg.trials < 0:
        raise ConfigError(f"{path}: key trials: must be >= 0")
    if "/" not in cfg.metric:
        raise ConfigError(f"{path}: key metric: a logged split/key such as val/ndcg@10")
    for key, value, allowed in (
        ("direction", cfg.direction, DIRECTIONS),
        ("sampler.kind", cfg.sampler.kind, SAMPLERS),
        ("pruner.kind", cfg.pruner.kind, PRUNERS),
    ):
        if value not in allowed:
            raise ConfigError(f"{path}: key {key}: {value!r} is not one of {list(allowed)}")
    p = cfg.pruner
    if p.monitor is not None and "/" not in p.monitor:
        raise ConfigError(f"{path}: key pruner.monitor: a logged split/key such as val/class_nll")
    if p.monitor_direction is not None and p.monitor_direction not in DIRECTIONS:
        raise ConfigError(
            f"{path}: key pruner.monitor_direction: {p.monitor_direction!r} is not one of "
            f"{list(DIRECTIONS)}"
        )
    if p.kind == "threshold" and p.monitor_direction not in (None, cfg.direction):
        raise ConfigError(
            f"{path}: key pruner.monitor_direction: a threshold pruner reads the monitor as "
            "logged; give lower/upper on it and leave the direction the study's"
        )
    if cfg.pruner.kind == "threshold" and cfg.pruner.lower is None and cfg.pruner.upper is None:
        raise ConfigError(f"{path}: key pruner.lower: a threshold pruner needs lower or upper")
    if cfg.latency_objective and cfg.pruner.kind != "none":
        raise ConfigError(
            f"{path}: key pruner.kind: Optuna cannot prune a multi-objective study "
            "(latency_objective: true); set it to none"
        )
    seeds = cfg.objective.seeds
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: key objective.seeds: a seed is repeated ({seeds})")
    space = cfg.space
    if len(space.weights) == 1:
        raise ConfigError(f"{path}: key space.weights: a simplex needs two or more terms")
    for term in space.weights:
        problem = _unknown_config_key(f"loss.weights.{term}")
        if problem:
            raise ConfigError(f"{path}: key space.weights: {problem}")
    if len(set(space.weights)) != len(space.weights):
        raise ConfigError(f"{path}: key space.weights: a term is repeated")
    spans_both = bool(set(space.weights) & LABEL_TERMS) and bool(
        set(space.weights) & SCORE_KD_TERMS
    )
    if space.kd_ratio is not None and spans_both:
        raise ConfigError(
            f"{path}: key space.kd_ratio: the weights simplex already splits label terms from "
            "score distillation; search one or the other, not the same weighting twice"
        )
    for name, spec in (
        ("space.kd_ratio", space.kd_ratio),
        ("space.temperature", space.temperature),
    ):
        if spec is not None:
            _check_range(path, name, spec)
    ratio = space.kd_ratio
    if ratio is not None and ratio.choices is None and (ratio.low < 0 or ratio.high > 1):  # type: ignore[operator]
        raise ConfigError(f"{path}: key space.kd_ratio: a ratio within [0, 1]")
    searched = {"loss.kd_ratio", "loss.temperature", *(f"loss.weights.{t}" for t in space.weights)}
    for key, spec in space.params.items():
        if key in searched or "=" in key:
            raise ConfigError(
                f"{path}: key space.params.{key}: "
                + ("searched twice" if key in searched else "a config key such as optim.lr")
            )
        problem = _unknown_config_key(key)
        if problem:
            raise ConfigError(f"{path}: key space.params.{key}: {problem}")
        _check_range(path, f"space.params.{key}", spec)
    if not (space.weights or space.kd_ratio or space.temperature or space.params):
        raise ConfigError(f"{path}: key space: name at least one thing to search")


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and check a study YAML; a ConfigError names the file and the key."""
    path = Path(path)
    raw = read_yaml(path, "study")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(StudyConfig), raw)
        cfg: StudyConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"{path}: key {key}: {str(exc).splitlines()[0]}") from None
    _check(path, cfg)
    return cfg
