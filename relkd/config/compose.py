"""Compose an experiment config: schema defaults <- base.yaml <- experiment YAML <- CLI overrides.

Every layer is merged into the structured schema, so unknown keys and wrong types fail early
with a ConfigError naming the key and the file (or ``command line``) that set it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from omegaconf.nodes import StringNode

from relkd.config.experiment_config import (
    AGGREGATIONS,
    FINETUNE,
    METAPATHS,
    PRECISIONS,
    PROMPT_FORMATS,
    SEMINAR_ATTENTION,
    SEMINAR_TEXT,
    SIMILARITIES,
    STRATEGIES,
    TASKS,
    TEACHER_MODES,
    ExperimentConfig,
    is_zero_shot_teacher,
)
from relkd.config.yaml_file import read_yaml
from relkd.data.data_config import data_problems
from relkd.data.schema import EVAL_QUERY_POLICIES
from relkd.errors import ConfigError
from relkd.experiment_files import bundled_experiment, bundled_experiments, find_experiment

BASE_NAME = "base.yaml"
# the experiments bundled with relkd (in a source checkout: the repository's experiments/)
BUNDLED_EXPERIMENTS = bundled_experiments()
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class Layer:
    source: str  # a file path or "command line"
    conf: DictConfig


def _read_yaml(path: Path) -> DictConfig:
    return read_yaml(path, "experiment")


def _base_for(experiment: Path) -> Path | None:
    """A base.yaml beside the experiment (a folder of one's own experiments may bring its own),
    else the bundled one."""
    for candidate in (experiment.parent / BASE_NAME, BUNDLED_EXPERIMENTS / BASE_NAME):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(path: Path, conf: DictConfig, seen: tuple[Path, ...] = ()) -> list[Layer]:
    """``extends: other.yaml`` (relative to the file) layers that experiment first, so an
    ablation holds only what it changes from the recipe it ablates. A name that is not beside
    the file may be a bundled one (``extends: mkd/cross_encoder``), so a YAML of one's own can
    build on a bundled recipe."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"{path}: key extends: cycle ({chain})")
    parent_name = conf.pop("extends", None)
    if parent_name is None:
        return [Layer(str(path), conf)]
    if not isinstance(parent_name, str):
        raise ConfigError(f"{path}: key extends: must be a file name")
    beside = path.parent / parent_name
    parent = beside if beside.is_file() else bundled_experiment(parent_name)
    if parent is None:
        raise ConfigError(
            f"{path}: key extends: {beside} not found (nor a bundled experiment {parent_name!r})"
        )
    parent_conf = _read_yaml(parent)
    parent_conf.pop("experiment", None)  # the experiment is named by the leaf file
    return [*_with_parents(parent, parent_conf, (*seen, path.resolve())), Layer(str(path), conf)]


def _key_is_set(conf: DictConfig, key: str) -> bool:
    return OmegaConf.select(conf, key, default="__relkd_missing__") != "__relkd_missing__"


def _blame(layers: Sequence[Layer], key: str) -> str:
    """The last layer that sets ``key``: that is where a bad value came from."""
    for layer in reversed(layers):
        if _key_is_set(layer.conf, key):
            return layer.source
    return "defaults"


def _string_typed(schema: DictConfig, key: str) -> bool:
    """Whether ``key`` (dotted) is a ``str`` (or ``str | None``) setting of the schema."""
    node: Any = schema
    for part in key.split("."):
        if not isinstance(node, DictConfig) or node._is_none() or part not in node:
            return False  # not a section, or an optional one that is unset (null)
        node = node._get_node(part)
    return isinstance(node, StringNode)


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """``key=value`` overrides as a config layer. Values are YAML, as in OmegaConf's dotlist,
    except for the schema's string settings: their text is kept as written, so a digest such as
    ``version=76e112215421`` (YAML: a float, inf) or ``version=123456789012`` (an int) stays that
    string; ``null`` still means None."""
    try:
        conf = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{COMMAND_LINE}: cannot parse overrides ({exc})") from None
    schema = OmegaConf.structured(ExperimentConfig)
    for item in overrides:
        key, raw = (part.strip() for part in item.split("=", 1))
        if not _string_typed(schema, key):
            continue
        value = OmegaConf.select(conf, key)
        if value is not None and not isinstance(value, str):
            OmegaConf.update(conf, key, raw, merge=False)
    return conf


def compose(
    experiment: str | Path, overrides: Sequence[str] = (), with_base: bool = True
) -> DictConfig:
    """Load and validate an experiment; returns a read-only DictConfig on the schema.

    ``experiment`` is a file, or the name of a bundled one (``quickstart``, ``mkd/cross_encoder``:
    see relkd.experiment_files). ``with_base=False`` reads a file that is already complete, such
    as a run's saved config.yaml.
    """
    path = find_experiment(experiment) if with_base else Path(experiment)
    layers: list[Layer] = []
    base = _base_for(path) if with_base else None
    if base is not None and base.resolve() != path.resolve():
        layers.append(Layer(str(base), _read_yaml(base)))
    exp_conf = _read_yaml(path)
    if "experiment" not in exp_conf:
        exp_conf.experiment = path.stem
    layers.extend(_with_parents(path, exp_conf) if with_base else [Layer(str(path), exp_conf)])
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"{COMMAND_LINE}: overrides must look like key=value, got {bad}")
        layers.append(Layer(COMMAND_LINE, parse_overrides(overrides)))

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
    from relkd.losses.registry import LOSS_TERMS, effective_weights, kd_ratio_problem
    from relkd.nets.student_registry import STUDENT_SPECS

    t, m = cfg.trainer, cfg.model
    _validate_data(cfg, layers)
    _check(
        t.strategy in STRATEGIES, layers, "trainer.strategy", f"{t.strategy!r} not in {STRATEGIES}"
    )
    _check(
        str(t.precision) in PRECISIONS,
        layers,
        "trainer.precision",
        f"{t.precision!r} not in {PRECISIONS}",
    )
    _check(
        m.student in STUDENT_SPECS,
        layers,
        "model.student",
        f"{m.student!r} not in {sorted(STUDENT_SPECS)}",
    )
    _check(m.pooling in ("cls", "mean"), layers, "model.pooling", "must be cls or mean")
    _check(
        m.encoder_layers is None or m.encoder_layers >= 1,
        layers,
        "model.encoder_layers",
        "must be >= 1 (or null for every layer)",
    )
    _check(
        m.two_tower.similarity in SIMILARITIES,
        layers,
        "model.two_tower.similarity",
        f"{m.two_tower.similarity!r} not in {SIMILARITIES}",
    )
    _check(m.two_tower.scale > 0, layers, "model.two_tower.scale", "must be > 0")
    _check(0.0 <= m.dropout < 1.0, layers, "model.dropout", "must be in [0, 1)")
    unknown = sorted(set(cfg.loss.weights) - set(LOSS_TERMS))
    _check(
        not unknown,
        layers,
        "loss.weights",
        f"unknown loss term(s) {unknown}; known: {sorted(LOSS_TERMS)}",
    )
    _check(
        all(w >= 0 for w in cfg.loss.weights.values()),
        layers,
        "loss.weights",
        "weights must be >= 0",
    )
    problem = kd_ratio_problem(cfg.loss)
    _check(problem is None, layers, "loss.kd_ratio", str(problem))
    _check(
        bool(effective_weights(cfg.loss)),
        layers,
        "loss.weights",
        "at least one weight must be > 0",
    )
    _check(cfg.loss.temperature > 0, layers, "loss.temperature", "must be > 0")
    _check(cfg.loss.listwise_temperature > 0, layers, "loss.listwise_temperature", "must be > 0")
    _validate_schedules(cfg, layers)
    _validate_graph_and_robust(cfg, layers)
    _validate_seminar(cfg, layers)
    _check(cfg.optim.lr > 0, layers, "optim.lr", "must be > 0")
    _validate_ranges(cfg, layers)
    _check(
        cfg.optim.scheduler in ("linear", "constant"),
        layers,
        "optim.scheduler",
        "linear or constant",
    )
    _check(cfg.task in TASKS, layers, "task", f"{cfg.task!r} not in {TASKS}")
    _validate_teacher(cfg, layers)
    _check(cfg.checkpoint.mode in ("min", "max"), layers, "checkpoint.mode", "must be min or max")
    _check(len(cfg.eval.splits) > 0, layers, "eval.splits", "name at least one split")
    bad_splits = sorted(set(cfg.eval.splits) - {"train", "val", "test"})
    _check(not bad_splits, layers, "eval.splits", f"unknown split(s) {bad_splits}")


def _validate_data(cfg: DictConfig, layers: Sequence[Layer]) -> None:
    """The rules between data settings (DataConfig's own), for the batches this run builds: a
    teacher's prompts, or its student's encoding; each blamed on the layer that set the key."""
    from relkd.nets.student_registry import STUDENT_SPECS

    if cfg.task == "teacher":
        encoding = "prompt"
    elif cfg.model.student in STUDENT_SPECS:
        encoding = STUDENT_SPECS[cfg.model.student].encoding
    else:
        return  # validate() reports the unknown model.student
    for key, message in data_problems(cfg.data, encoding):
        _check(False, layers, f"data.{key}", message)


def _validate_ranges(cfg: DictConfig, layers: Sequence[Layer]) -> None:
    """Numeric settings that torch or Lightning would otherwise reject deep inside training
    (an OverflowError from ``max_epochs=-1``, a negative learning rate in the scheduler)."""
    t, o = cfg.trainer, cfg.optim
    _check(
        t.max_epochs >= 1 or t.max_steps > 0 or is_zero_shot_teacher(cfg),
        layers,
        "trainer.max_epochs",
        "must be >= 1 (or set trainer.max_steps > 0; 0 only for a zero-shot teacher)",
    )
    _check(t.max_steps == -1 or t.max_steps > 0, layers, "trainer.max_steps", "-1 or > 0")
    _check(t.num_nodes >= 1, layers, "trainer.num_nodes", "must be >= 1")
    for key in ("accumulate_grad_batches", "log_every_n_steps"):
        _check(t[key] >= 1, layers, f"trainer.{key}", "must be >= 1")
    clip = t.gradient_clip_val
    _check(clip is None or clip >= 0, layers, "trainer.gradient_clip_val", "must be >= 0 or null")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        _check(t[key] is None or t[key] >= 0, layers, f"trainer.{key}", "must be >= 0 or null")
    _check(o.head_lr is None or o.head_lr > 0, layers, "optim.head_lr", "must be > 0 or null")
    _check(o.weight_decay >= 0, layers, "optim.weight_decay", "must be >= 0")
    _check(0.0 <= o.warmup_ratio <= 1.0, layers, "optim.warmup_ratio", "must be in [0, 1]")
    _check(cfg.early_stopping.patience >= 0, layers, "early_stopping.patience", "must be >= 0")
    every = cfg.checkpoint.every_n_train_steps
    _check(every is None or every >= 1, layers, "checkpoint.every_n_train_steps", ">= 1 or null")


def _validate_graph_and_robust(cfg: DictConfig, layers: Sequence[Layer]) -> None:
    """BERM's metapaths and adversarial training (the data settings: _validate_data)."""
    from relkd.losses.registry import ADVERSARIAL_TERMS, effective_weights
    from relkd.nets.student_registry import student_spec

    m = cfg.model
    student = student_spec(m.student)
    paths = list(m.berm.metapaths)
    unknown = sorted(set(paths) - set(METAPATHS))
    _check(not unknown, layers, "model.berm.metapaths", f"unknown {unknown}; known {METAPATHS}")
    _check(len(set(paths)) == len(paths), layers, "model.berm.metapaths", "repeats a metapath")
    _check(m.berm.order in (1, 2), layers, "model.berm.order", "must be 1 or 2")
    active = set(effective_weights(cfg.loss))
    adv = sorted(active & ADVERSARIAL_TERMS)
    _check(
        not adv or student.perturbable,
        layers,
        "loss.weights",
        f"{adv} perturb a cross-encoder's word embeddings; model.student is {m.student}",
    )
    _check(
        not adv or bool(active - ADVERSARIAL_TERMS),
        layers,
        "loss.weights",
        f"{adv} perturb along the gradient of the other terms, and none has a weight > 0",
    )
    a = cfg.loss.adversarial
    _check(a.norm > 0, layers, "loss.adversarial.norm", "must be > 0")
    _check(a.temperature > 0, layers, "loss.adversarial.temperature", "must be > 0")


def _validate_seminar(cfg: DictConfig, layers: Sequence[Layer]) -> None:
    """The behaviour-sequence student: its history fields, PQ attention and pretraining terms."""
    from relkd.losses.registry import SEQUENCE_TERMS, effective_weights
    from relkd.nets.student_registry import student_spec

    q, s, m = cfg.data.sequences, cfg.model.seminar, cfg.model
    seminar = student_spec(m.student).reads_sequences  # the behaviour-sequence student
    _check(
        q.train_on == "pairs" or seminar,
        layers,
        "data.sequences.train_on",
        f"events feeds the seminar student's pretraining; model.student is {m.student}",
    )
    _check(s.hidden >= 1, layers, "model.seminar.hidden", "must be >= 1")
    _check(s.heads >= 1, layers, "model.seminar.heads", "must be >= 1")
    _check(
        s.hidden % s.heads == 0,
        layers,
        "model.seminar.heads",
        f"must divide model.seminar.hidden ({s.hidden})",
    )
    _check(s.top_k >= 1, layers, "model.seminar.top_k", "must be >= 1")
    _check(
        s.attention in SEMINAR_ATTENTION,
        layers,
        "model.seminar.attention",
        f"{s.attention!r} not in {SEMINAR_ATTENTION}",
    )
    _check(s.pq_subquantizers >= 1, layers, "model.seminar.pq_subquantizers", "must be >= 1")
    _check(
        s.hidden % s.pq_subquantizers == 0,
        layers,
        "model.seminar.pq_subquantizers",
        f"must divide model.seminar.hidden ({s.hidden})",
    )
    _check(1 <= s.pq_bits <= 16, layers, "model.seminar.pq_bits", "must be in [1, 16]")
    _check(
        s.history or s.attention == "exact",
        layers,
        "model.seminar.attention",
        "pq quantises history events, and model.seminar.history is false",
    )
    _check(
        s.text in SEMINAR_TEXT, layers, "model.seminar.text", f"{s.text!r} not in {SEMINAR_TEXT}"
    )
    _check(
        s.init_from is None or seminar,
        layers,
        "model.seminar.init_from",
        f"restores a seminar net; model.student is {m.student}",
    )
    seq_terms = sorted(set(effective_weights(cfg.loss)) & SEQUENCE_TERMS)
    _check(
        not seq_terms or seminar,
        layers,
        "loss.weights",
        f"{seq_terms} read a behaviour-sequence student's outputs; model.student is {m.student}",
    )
    _check(cfg.loss.sequence.temperature > 0, layers, "loss.sequence.temperature", "must be > 0")


def _validate_schedules(cfg: DictConfig, layers: Sequence[Layer]) -> None:
    """loss.schedules (active terms only) and loss.temperature_schedule (needs soft_kl)."""
    from relkd.losses.registry import effective_weights
    from relkd.losses.weight_schedule import SCHEDULE_KINDS

    active = effective_weights(cfg.loss)

    def check_schedule(key: str, s: Any, positive: bool) -> None:
        _check(s.kind in SCHEDULE_KINDS, layers, key, f"kind {s.kind!r} not in {SCHEDULE_KINDS}")
        _check(0.0 < s.ramp <= 1.0, layers, key, f"ramp must be in (0, 1], got {s.ramp}")
        if positive:
            ok, bound = s.start > 0 and s.end > 0, "> 0 (a temperature multiplier)"
        else:
            ok, bound = s.start >= 0 and s.end >= 0, ">= 0"
        _check(ok, layers, key, f"start and end must be {bound}, got {s.start}, {s.end}")

    for name, schedule in cfg.loss.schedules.items():
        key = f"loss.schedules.{name}"
        _check(
            name in active,
            layers,
            key,
            f"{name!r} is not a loss term with weight > 0 (active: {sorted(active)})",
        )
        check_schedule(key, schedule, positive=False)
    if cfg.loss.temperature_schedule is not None:
        key = "loss.temperature_schedule"
        _check(
            "soft_kl" in active,
            layers,
            key,
            "scales loss.temperature, which only soft_kl uses: give soft_kl a weight > 0 "
            "or set it null",
        )
        check_schedule(key, cfg.loss.temperature_schedule, positive=True)


def _validate_teacher(cfg: DictConfig, layers: Sequence[Layer]) -> None:
    """The teacher section, and loss terms that only a teacher (or only some modes) can use."""
    from relkd.losses.registry import (
        DISTILLATION_TERMS,
        GROUPED_TERMS,
        TEACHER_ONLY_TERMS,
        effective_weights,
    )
    from relkd.prompts.item_renderer import ITEM_FIELDS

    t = cfg.teacher
    active = set(effective_weights(cfg.loss))  # after loss.kd_ratio's expansion
    _check(t.mode in TEACHER_MODES, layers, "teacher.mode", f"{t.mode!r} not in {TEACHER_MODES}")
    _check(t.finetune in FINETUNE, layers, "teacher.finetune", f"{t.finetune!r} not in {FINETUNE}")
    _check(
        t.aggregation in AGGREGATIONS,
        layers,
        "teacher.aggregation",
        f"{t.aggregation!r} not in {AGGREGATIONS}",
    )
    _check(
        t.aggregation == "verdict" or t.mode == "progressive",
        layers,
        "teacher.aggregation",
        "mean and fitted aggregate progressive steps; use teacher.mode progressive",
    )
    _check(t.lora.r >= 1, layers, "teacher.lora.r", "must be >= 1")
    for pattern in t.freeze:
        try:
            re.compile(pattern)
        except re.error as exc:
            _check(False, layers, "teacher.freeze", f"{pattern!r} is not a regex ({exc})")
    _check(
        not t.freeze or t.finetune == "full",
        layers,
        "teacher.freeze",
        "freezes parameters of full fine-tuning; LoRA already freezes the base",
    )
    _check(0.0 <= t.lora.dropout < 1.0, layers, "teacher.lora.dropout", "must be in [0, 1)")
    _check(bool(t.lora.target_modules), layers, "teacher.lora.target_modules", "name a module")
    p, n = t.prompt, t.prompt.neighbors
    bad = sorted(set(p.item_fields) - set(ITEM_FIELDS))
    _check(
        not bad, layers, "teacher.prompt.item_fields", f"unknown {bad}; known {list(ITEM_FIELDS)}"
    )
    _check(bool(p.item_fields), layers, "teacher.prompt.item_fields", "name at least one field")
    _check(
        p.format in PROMPT_FORMATS,
        layers,
        "teacher.prompt.format",
        f"{p.format!r} not in {PROMPT_FORMATS}",
    )
    for key in ("max_query_tokens", "max_item_tokens"):
        _check(p[key] >= 1, layers, f"teacher.prompt.{key}", "must be >= 1")
    _check(n.query_k >= 0 and n.item_k >= 0, layers, "teacher.prompt.neighbors", "k must be >= 0")
    _check(
        n.min_impressions >= 1, layers, "teacher.prompt.neighbors.min_impressions", "must be >= 1"
    )
    _check(0.0 <= n.min_ctr <= 1.0, layers, "teacher.prompt.neighbors.min_ctr", "must be in [0, 1]")
    _check(
        n.eval_queries in EVAL_QUERY_POLICIES,
        layers,
        "teacher.prompt.neighbors.eval_queries",
        f"{n.eval_queries!r} not in {EVAL_QUERY_POLICIES}",
    )
    _check(n.max_tokens >= 1, layers, "teacher.prompt.neighbors.max_tokens", "must be >= 1")
    _check(t.cot.source in ("rules", "jsonl"), layers, "teacher.cot.source", "rules or jsonl")
    _check(
        t.cot.source != "jsonl" or bool(t.cot.file),
        layers,
        "teacher.cot.source",
        "jsonl needs teacher.cot.file (the JSONL of pair_id and cot)",
    )
    _check(t.cot.max_new_tokens >= 1, layers, "teacher.cot.max_new_tokens", "must be >= 1")
    if cfg.task == "student":
        misplaced = sorted(active & TEACHER_ONLY_TERMS)
        _check(not misplaced, layers, "loss.weights", f"{misplaced} are teacher-only terms")
        kd = sorted(active & DISTILLATION_TERMS)
        _check(
            not kd or bool(cfg.data.teacher_cache),
            layers,
            "loss.weights",
            f"{kd} distil from a teacher cache: set data.teacher_cache",
        )
        grouped = sorted(active & GROUPED_TERMS)
        _check(
            not grouped or cfg.data.group_size >= 2,
            layers,
            "loss.weights",
            f"{grouped} compare items of a query: set data.group_size >= 2",
        )
        # data.with_hidden may be absent from the schema (older configs): only a False blocks
        with_hidden = OmegaConf.select(cfg, "data.with_hidden", default=None)
        _check(
            "hidden_mse" not in active or with_hidden is not False,
            layers,
            "loss.weights",
            "hidden_mse reads the teacher's hidden states: set data.with_hidden (and annotate "
            "the cache with --hidden)",
        )
        return
    kd = sorted(active & DISTILLATION_TERMS)
    _check(not kd, layers, "loss.weights", f"{kd} are student distillation terms")
    _check(
        "cot_lm" not in active or t.mode != "classifier",
        layers,
        "loss.weights",
        "cot_lm trains a CoT response; teacher.mode classifier has none",
    )
    _check(
        "aspect_ce" not in active or t.mode != "classifier",
        layers,
        "loss.weights",
        "aspect_ce reads CoT aspect slots; teacher.mode classifier has none",
    )
    _check(
        t.mode != "cot" or "cot_lm" in active,
        layers,
        "teacher.mode",
        "cot is SFT on the CoT: give loss.weights.cot_lm a weight > 0",
    )


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def save(cfg: DictConfig, path: str | Path) -> None:
    """Write the fully resolved config (what actually ran) as YAML."""
    OmegaConf.save(cfg, Path(path), resolve=True)
