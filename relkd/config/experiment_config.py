"""The typed schema of an experiment config.

``experiments/base.yaml`` supplies every default; an experiment YAML changes only what it needs;
CLI dotlist overrides come last. OmegaConf merges each layer into this structured schema, so an
unknown key or a value of the wrong type fails at load time, naming the key and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relkd.data.data_config import DataConfig
from relkd.prompts.item_renderer import TEACHER_ITEM_FIELDS

STRATEGIES = (
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_find_unused_parameters_true",
    "fsdp",
    "single_device",
)
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true")
TASKS = ("student", "teacher")  # `relkd train` runs students, `relkd teacher train` teachers
TEACHER_MODES = ("classifier", "cot", "multitask", "progressive")
FINETUNE = ("lora", "full")
PROMPT_FORMATS = ("auto", "chat", "plain")  # auto: chat when the tokenizer has a chat template
AGGREGATIONS = ("verdict", "mean", "fitted")
SIMILARITIES = ("cosine", "dot")
METAPATHS = ("qiq", "iqi")  # click-graph metapaths BERM reads
SEMINAR_ATTENTION = ("exact", "pq")  # GSU scores: exact inner products or PQ lookups
SEMINAR_TEXT = ("encoder", "learned")  # token table: the encoder's (frozen, projected) or learned


@dataclass
class TwoTowerSettings:
    """The representation-based student (model.student: two_tower)."""

    shared: bool = True  # one encoder for queries and items, or two
    similarity: str = "cosine"  # cosine (times a learned scale) | dot
    scale: float = 20.0  # the cosine's initial scale
    concat_head: bool = True  # class head over [u, v, |u-v|, u*v]; false: logits affine in sim


@dataclass
class BermSettings:
    """The BERM student (model.student: berm): 0-order cross-encoder relevance plus k-order
    relevance from click-graph metapath neighbours with attention."""

    metapaths: list[str] = field(default_factory=lambda: ["qiq", "iqi"])  # [] = 0-order only
    order: int = 1  # k: metapath hops (1: q-i-q; 2: also q-i-q-i-q), one attention per order


@dataclass
class SeminarSettings:
    """The behaviour-sequence student (model.student: seminar)."""

    hidden: int = 64
    heads: int = 4  # ESU multi-head target attention
    top_k: int = 16  # GSU: history events kept by target attention
    attention: str = "exact"  # exact | pq (GSU scores from product-quantised history views)
    pq_subquantizers: int = 16  # per view
    pq_bits: int = 8  # 2^bits centroids per sub-quantiser
    text: str = "encoder"  # encoder (its word embeddings, frozen, projected) | learned
    init_from: str | None = None  # a pretraining run folder or .ckpt: restore its net
    history: bool = True  # false: read no history event (the no-behaviour control)


@dataclass
class ModelConfig:
    student: str = "cross_encoder"
    encoder: str = "minilm"  # preset (minilm, tiny-bert) or any Hugging Face id / path
    fallback_encoder: str | None = "tiny-bert"  # used, loudly, if ``encoder`` cannot be loaded
    dropout: float = 0.1
    pooling: str = "cls"  # cls | mean
    # tiny-bert preset sizes (ignored by pretrained encoders)
    tiny_hidden_size: int = 128
    tiny_layers: int = 2
    tiny_heads: int = 2
    encoder_layers: int | None = None  # keep only the first k layers (a smaller student)
    freeze_embeddings: bool = False  # keep the pretrained word-embedding table fixed
    attn_implementation: str = "sdpa"  # sdpa | eager: the encoder's attention kernel
    two_tower: TwoTowerSettings = field(default_factory=TwoTowerSettings)
    berm: BermSettings = field(default_factory=BermSettings)
    seminar: SeminarSettings = field(default_factory=SeminarSettings)


@dataclass
class ScheduleConfig:
    """A multiplier over training progress p in [0, 1] (relkd/losses/weight_schedule.py)."""

    kind: str = "linear"  # linear | cosine | step
    start: float = 0.0  # multiplier at p = 0
    end: float = 1.0  # multiplier reached at p = ramp, held after
    ramp: float = 0.1  # fraction of training in (0, 1]


@dataclass
class AdversarialSettings:
    """Contrastive adversarial training (loss terms adv_ce, adv_kl, adv_contrastive)."""

    norm: float = 5.0  # L2 norm of the embedding perturbation, per example
    relative: bool = False  # norm is a share of each example's embedding norm (its real tokens)
    temperature: float = 0.05  # adv_contrastive: InfoNCE temperature


@dataclass
class SequenceLossSettings:
    """SEMINAR's pretraining terms (next_pair, seq_relevance, view_align)."""

    temperature: float = 0.05  # their InfoNCE / CLIP temperature


@dataclass
class LossConfig:
    """Weights per loss term (0 disables a term); Optuna searches these later."""

    weights: dict[str, float] = field(default_factory=lambda: {"hard_ce": 1.0})
    # (1 - r) to the label terms, r to score distillation, each group normalised; None: off
    kd_ratio: float | None = None
    label_smoothing: float = 0.0
    temperature: float = 1.0
    listwise_temperature: float = 0.1
    # soft_target_ce: label -> {label: weight}, the target distribution of that label
    soft_targets: dict[str, dict[str, float]] = field(default_factory=dict)
    # graded_bce: label -> grade in [0, 1]; unnamed labels: top 1, second 0.5, rest 0
    grades: dict[str, float] = field(default_factory=dict)
    # term -> schedule of its weight's multiplier (default: a linear warm-up 0 -> 1 over 10%)
    schedules: dict[str, ScheduleConfig] = field(default_factory=dict)
    # multiplier of loss.temperature over training (soft_kl only); None: constant
    temperature_schedule: ScheduleConfig | None = None
    adversarial: AdversarialSettings = field(default_factory=AdversarialSettings)
    sequence: SequenceLossSettings = field(default_factory=SequenceLossSettings)


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    # base weights the checkpoint lacks (MiniLM's LM-head transform) train fully and are saved
    # beside the adapter; false keeps them frozen at their seeded initialisation
    train_new_weights: bool = True


@dataclass
class NeighborSettings:
    """ProRBP behaviour neighbours shown in the teacher's prompt (k = 0 leaves a side out)."""

    query_k: int = 0  # items clicked for the query
    item_k: int = 0  # queries that led to clicks on the item
    min_impressions: int = 1  # m
    min_ctr: float = 0.2  # c
    eval_queries: str = "logs"  # logs | hidden (drop val/test queries' own logs)
    max_tokens: int = 16  # budget of each neighbour text


@dataclass
class PromptSettings:
    item_fields: list[str] = field(default_factory=lambda: list(TEACHER_ITEM_FIELDS))
    max_query_tokens: int = 32
    max_item_tokens: int = 96
    echo_query: bool = False  # repeat the query after the item (causal attention sees both ways)
    format: str = "auto"  # auto | chat (the tokenizer's chat template) | plain
    neighbors: NeighborSettings = field(default_factory=NeighborSettings)


@dataclass
class CotSettings:
    source: str = "rules"  # rules (the dataset's aspect facts) | jsonl
    file: str | None = None  # JSONL with pair_id and cot when source is jsonl
    max_new_tokens: int = 48
    explain_eval: bool = True  # multitask: also generate explanations when evaluating


@dataclass
class TinyDecoderSettings:
    hidden_size: int = 64
    layers: int = 2
    heads: int = 2


@dataclass
class TeacherConfig:
    """The LLM teacher (``relkd teacher train``)."""

    # preset (minilm-causal, tiny-causal, smollm2-135m-instruct), a .gguf file, or an HF causal
    # LM id / path
    model: str = "minilm-causal"
    trust_remote_code: bool = False
    revision: str | None = None
    mode: str = "classifier"  # classifier | cot | multitask | progressive
    finetune: str = "lora"  # lora | full
    lora: LoraSettings = field(default_factory=LoraSettings)
    gradient_checkpointing: bool = False
    # finetune full: regexes (re.search) over base parameter names to keep frozen, e.g. the
    # embeddings and the lowest layers; backward then stops below the first trainable layer
    freeze: list[str] = field(default_factory=list)
    label_words: dict[str, str] = field(default_factory=dict)  # label -> word; default lower-case
    prompt: PromptSettings = field(default_factory=PromptSettings)
    cot: CotSettings = field(default_factory=CotSettings)
    aggregation: str = "verdict"  # progressive: verdict | mean | fitted (on val)
    tiny: TinyDecoderSettings = field(default_factory=TinyDecoderSettings)


@dataclass
class OptimConfig:
    lr: float = 5e-5
    head_lr: float | None = None  # student head / teacher's newly initialised weights; default lr
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: str = "linear"  # linear | constant
    fused: bool = True  # fused AdamW kernel where the device supports it


@dataclass
class FsdpSettings:
    sharding_strategy: str = "FULL_SHARD"  # FULL_SHARD | SHARD_GRAD_OP | HYBRID_SHARD | NO_SHARD
    activation_checkpointing: bool = False  # recompute each wrapped decoder layer in backward
    cpu_offload: bool = False


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1  # int, list of ids, or "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_epochs: int = 3
    max_steps: int = -1
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = 1.0
    val_check_interval: int | float | None = None
    log_every_n_steps: int = 10
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_test_batches: int | float | None = None
    deterministic: bool = True
    enable_progress_bar: bool = True
    compile: bool = False  # torch.compile the net (pays only for long runs)
    fsdp: FsdpSettings = field(default_factory=lambda: FsdpSettings())


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    patience: int = 2
    min_delta: float = 0.0


@dataclass
class CheckpointConfig:
    monitor: str = "val/ndcg@10"
    mode: str = "max"
    every_n_train_steps: int | None = None  # also save last.ckpt every n optimiser steps


@dataclass
class EvalConfig:
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    bm25_baseline: bool = True  # print BM25 on the same split beside the student


@dataclass
class ExperimentConfig:
    experiment: str = "base"
    task: str = "student"  # student (relkd train) | teacher (relkd teacher train)
    seed: int = 0
    output_dir: str = "runs"
    version: str | None = None  # default: version_<n>
    resume: str | None = None  # a run dir; training continues from its checkpoints/last.ckpt
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def is_zero_shot_teacher(cfg: Any) -> bool:
    """A teacher run with ``trainer.max_epochs=0`` (and no max_steps): the base model judges
    from the prompt, untrained (docs/teacher.md)."""
    t = cfg.trainer
    return cfg.task == "teacher" and t.max_epochs == 0 and t.max_steps == -1
