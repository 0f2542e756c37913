"""Build the teacher's DataModule and TeacherSFTModule from a composed config (train and eval)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from datamodules import QueryItemDataModule
from datamodules.prompt_store import PromptSpec, special_ids
from lightning_modules.teacher_sft_module import TeacherSFTModule
from relkd.data.data_config import DataConfig
from relkd.data.label_scheme import LabelScheme
from relkd.errors import ConfigError
from relkd.losses.registry import build_loss
from relkd.nets.causal_lm_presets import CausalLMSpec, base_param_name, resolve_causal_lm
from relkd.nets.causal_lm_teacher import CausalLMTeacher, TeacherTokens
from relkd.nets.tokenizer_info import load_tokenizer
from relkd.prompts.verbalizer import Verbalizer

log = logging.getLogger(__name__)


def teacher_spec(cfg: DictConfig, data_dir: Path) -> CausalLMSpec:
    """Resolve ``teacher.model``; a fallback vocabulary (no MiniLM) and converted GGUF models are
    cached under data.cache_dir."""
    return resolve_causal_lm(cfg.teacher, data_dir, cfg.data.cache_dir)


def prompt_spec(cfg: DictConfig, scheme: LabelScheme, spec: CausalLMSpec) -> PromptSpec:
    """The teacher's prompts; ``teacher.prompt.format: auto`` uses the chat template of
    ``spec``'s tokenizer when it has one."""
    t = cfg.teacher
    p, n = t.prompt, t.prompt.neighbors
    words = Verbalizer(scheme.labels, dict(t.label_words)).words
    chat = p.format != "plain" and spec.chat_template() is not None  # plain: never loaded
    if p.format == "chat" and not chat:
        raise ConfigError(
            f"teacher.prompt.format: chat, but the tokenizer of {spec.name!r} has no chat "
            "template; use format plain (or auto)"
        )
    return PromptSpec(
        mode=t.mode,
        label_words=words,
        item_fields=tuple(p.item_fields),
        max_query_tokens=p.max_query_tokens,
        max_item_tokens=p.max_item_tokens,
        max_neighbor_tokens=n.max_tokens,
        query_neighbors=n.query_k,
        item_neighbors=n.item_k,
        min_impressions=n.min_impressions,
        min_ctr=n.min_ctr,
        eval_queries=n.eval_queries,
        echo_query=p.echo_query,
        cot_source=t.cot.source,
        cot_file=t.cot.file,
        labelled_only=True,
        chat=chat,
    )


def build_teacher_datamodule(
    cfg: DictConfig, data_dir: Path, spec: CausalLMSpec, pspec: PromptSpec
) -> QueryItemDataModule:
    return QueryItemDataModule(
        data_dir,
        spec.tokenizer,
        DataConfig.of(cfg.data),
        encoding="prompt",
        prompt_spec=pspec,
        seed=cfg.seed,
    )


@dataclass
class TeacherParts:
    module: TeacherSFTModule
    tokenizer: Any
    new_weights: list[str]


def build_teacher(
    cfg: DictConfig,
    spec: CausalLMSpec,
    scheme: LabelScheme,
    pspec: PromptSpec,
    eval_splits: tuple[str, ...],
) -> TeacherParts:
    """The causal LM (LoRA-wrapped or fully trainable) inside a TeacherSFTModule."""
    t = cfg.teacher
    tokenizer = load_tokenizer(spec.tokenizer)
    lm, new_weights = spec.build(seed=cfg.seed)
    if t.gradient_checkpointing:
        # transformers 5 renamed it; older releases only have the gradient_* name
        enable = getattr(lm, "activation_checkpointing_enable", None)
        (enable or lm.gradient_checkpointing_enable)()
    if t.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        lm_cfg = LoraConfig(
            r=t.lora.r,
            lora_alpha=t.lora.alpha,
            lora_dropout=t.lora.dropout,
            target_modules=list(t.lora.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            lm = get_peft_model(lm, lm_cfg)
        except ValueError as exc:
            raise ConfigError(f"teacher.lora.target_modules: {exc}") from None
        if t.gradient_checkpointing:
            lm.enable_input_require_grads()
        if t.lora.train_new_weights and new_weights:
            new = set(new_weights)
            for name, param in lm.named_parameters():
                if base_param_name(name) in new:
                    param.requires_grad_(True)
    elif t.freeze:
        patterns = [re.compile(p) for p in t.freeze]
        frozen = 0
        for name, param in lm.named_parameters():
            if any(r.search(name) for r in patterns):
                param.requires_grad_(False)
                frozen += 1
        if not frozen:
            raise ConfigError(f"teacher.freeze: {list(t.freeze)} match no parameter of {spec.name}")
        log.info("teacher: %d parameter tensors frozen by teacher.freeze", frozen)
    ids = special_ids(tokenizer)
    tokens = TeacherTokens.of(tokenizer, pspec.template(), ids["end_id"], ids["pad_id"])
    net = CausalLMTeacher(lm, tokens, t.mode, max_new_tokens=t.cot.max_new_tokens)
    module = TeacherSFTModule(
        net=net,
        loss=build_loss(cfg.loss, scheme),
        scheme=scheme,
        optim=dict(cfg.optim),
        eval_splits=eval_splits,
        new_weights=new_weights,
        label_words=pspec.label_words,
        tokenizer=tokenizer,
        aggregation=t.aggregation,
        explain_eval=t.cot.explain_eval,
    )
    return TeacherParts(module=module, tokenizer=tokenizer, new_weights=new_weights)


__all__ = ["build_teacher", "build_teacher_datamodule", "prompt_spec", "teacher_spec"]
