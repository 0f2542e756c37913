"""The verbalizer: one word per label, read as the next-token logits of its first token.

The teacher keeps its LM head (no new classification head), so its score distribution is the
LM's next-token distribution at the answer position restricted to these tokens and renormalised.
That keeps a LoRA adapter loadable by inference engines that accept LoRA weights only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from relkd.errors import ConfigError


def first_token(tokenizer: Any, word: str, prefix: str = " ") -> int:
    """Id of the first token of ``word`` as it follows other text (``prefix``: a leading space;
    "" for the first word of a chat reply)."""
    ids = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError(f"verbalizer word {word!r} tokenizes to nothing")
    return int(ids[0])


class Verbalizer:
    """Label words and option words of the teacher, resolved to token ids.

    Args:
        labels: the scheme's labels, in order.
        words: label -> word; default the lower-cased label.
    """

    def __init__(self, labels: Sequence[str], words: Mapping[str, str] | None = None) -> None:
        words = dict(words or {})
        unknown = sorted(set(words) - set(labels))
        if unknown:
            raise ConfigError(
                f"teacher.label_words: unknown label(s) {unknown}; labels: {list(labels)}"
            )
        self.labels = tuple(labels)
        self.words: dict[str, str] = {label: words.get(label, label.lower()) for label in labels}
        if len(set(self.words.values())) != len(self.labels):
            raise ConfigError(f"teacher.label_words: words must differ, got {self.words}")

    def word_list(self) -> list[str]:
        return [self.words[label] for label in self.labels]

    def token_ids(self, tokenizer: Any, words: Sequence[str] | None = None) -> list[int]:
        """First-token ids of ``words`` (default the label words); they must be distinct."""
        words = list(words if words is not None else self.word_list())
        ids = [first_token(tokenizer, w) for w in words]
        if len(set(ids)) != len(ids):
            raise ConfigError(
                f"teacher.label_words: {words} share a first token under this tokenizer ({ids}); "
                "choose words whose first tokens differ"
            )
        return ids
