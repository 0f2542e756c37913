"""Load a Hugging Face tokenizer and describe it: what the tokenized store is keyed by and the
special token ids the collator needs (so collation never needs the tokenizer object itself)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from relkd.artifacts.identity import sha256_hex
from relkd.errors import ConfigError


def load_tokenizer(name_or_path: Any) -> Any:
    """``AutoTokenizer.from_pretrained(name_or_path)`` (fast when available); a tokenizer object
    is returned unchanged. Set ``HF_HUB_OFFLINE=1`` to keep a hub name from touching the network."""
    if not isinstance(name_or_path, str):
        return name_or_path
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tokenizer {name_or_path!r}: cannot load ({exc})") from None


@dataclass(frozen=True)
class TokenizerInfo:
    """A tokenizer's identity (name, class, vocab hash) and the ids collation uses.

    ``cls_id``/``sep_id`` fall back to BOS/EOS for tokenizers without CLS/SEP; ``pad_id`` falls back
    to ``sep_id``. ``has_token_types`` says whether the model expects ``token_type_ids``.
    """

    name: str
    cls_name: str
    vocab_size: int
    vocab_sha256: str  # the vocab incl. added tokens, and how non-special added tokens match
    cls_id: int
    sep_id: int
    pad_id: int
    has_token_types: bool

    @classmethod
    def of(cls, tokenizer: Any) -> TokenizerInfo:
        vocab = tokenizer.get_vocab()
        blob = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
        added = added_tokens(tokenizer)
        if added:  # how added tokens match changes ids as much as the vocab does
            blob += json.dumps(added, ensure_ascii=False).encode()
        cls_id = _first_id(tokenizer, "cls_token_id", "bos_token_id")
        sep_id = _first_id(tokenizer, "sep_token_id", "eos_token_id")
        name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
        if cls_id is None or sep_id is None:
            raise ConfigError(
                f"tokenizer {name!r} has no CLS/BOS or SEP/EOS token; the pair collator needs both"
            )
        pad_id = getattr(tokenizer, "pad_token_id", None)
        return cls(
            name=name,
            cls_name=type(tokenizer).__name__,
            vocab_size=max(len(tokenizer), max(vocab.values(), default=0) + 1),
            vocab_sha256=sha256_hex(blob),
            cls_id=int(cls_id),
            sep_id=int(sep_id),
            pad_id=int(sep_id if pad_id is None else pad_id),
            has_token_types="token_type_ids" in getattr(tokenizer, "model_input_names", ()),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def added_tokens(tokenizer: Any) -> list[list[Any]]:
    """The tokenizer's non-special added tokens (e.g. professional terms) as ``[id, content,
    single_word, lstrip, rstrip, normalized]``, by id; [] for a tokenizer without any.

    ``get_vocab()`` lists their strings, not how they match (whole words only, on normalized
    text or not), which changes the ids a text gets as much as the vocab does."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return [
        [int(i), str(t.content), t.single_word, t.lstrip, t.rstrip, t.normalized]
        for i, t in sorted(decoder.items())
        if not t.special
    ]


def _first_id(tokenizer: Any, *attrs: str) -> int | None:
    for attr in attrs:
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return None
