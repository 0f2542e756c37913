"""Mine professional terms (brands, model names, attribute values, multi-word product types,
colours) from a catalogue's structured item columns.

A term is a value of one of ``TERM_FIELDS`` (or of any key of the ``attributes`` JSON object,
which holds e.g. ``"storage": "64GB"`` and ``"model": "Nova X5"``). Its count is the number of
items naming it (an item naming a term in two fields counts once). A term is kept when it

- names at least ``min_count`` items,
- is not already a single token of the tokenizer (adding it would gain nothing),
- has at most ``MAX_TERM_WORDS`` words and ``MAX_TERM_CHARS`` characters and holds a letter or
  a digit (free-text attribute values are not terms),

and the ``max_terms`` most frequent are returned, ordered by count (descending) then term, so
the list is a pure function of the table and the tokenizer. Terms are written the way the
tokenizer's normalizer writes text (lower-cased, accents stripped for an uncased BERT), because
added tokens with ``normalized=True`` are matched on normalized text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

TERM_FIELDS: tuple[str, ...] = ("brand", "color", "product_type", "attributes")
MAX_TERM_WORDS = 4
MAX_TERM_CHARS = 40


@dataclass(frozen=True)
class MinedTerm:
    term: str  # normalized text, e.g. "stainless steel"
    count: int  # items naming it
    pieces: int  # tokens the tokenizer splits it into without the term (>= 2)


def normalizer_of(tokenizer: Any) -> Any:
    """The fast tokenizer's normalizer (None when it has none or is a slow tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return getattr(backend, "normalizer", None) if backend is not None else None


def lower_cases(tokenizer: Any) -> bool:
    """Whether the tokenizer lower-cases text (uncased BERT, MiniLM)."""
    flag = getattr(tokenizer, "do_lower_case", None)
    if flag is not None:
        return bool(flag)
    norm = normalizer_of(tokenizer)
    if norm is not None:
        return norm.normalize_str("AbC") == "abc"
    return tokenizer.tokenize("Xq Zb") == tokenizer.tokenize("xq zb")


def normalize_term(text: str, tokenizer: Any) -> str:
    """``text`` as the tokenizer's normalizer writes it, whitespace collapsed."""
    text = " ".join(str(text).split())
    norm = normalizer_of(tokenizer)
    if norm is not None:
        text = norm.normalize_str(text)
    elif lower_cases(tokenizer):
        text = text.lower()
    return " ".join(text.split())


def _is_term_shaped(term: str) -> bool:
    return (
        bool(term)
        and len(term) <= MAX_TERM_CHARS
        and len(term.split()) <= MAX_TERM_WORDS
        and any(c.isalnum() for c in term)
    )


def _attribute_values(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return []
    if not isinstance(obj, dict):
        return []
    return [v for v in obj.values() if isinstance(v, str)]


def item_terms(items: pa.Table, fields: Iterable[str] = TERM_FIELDS) -> Iterable[set[str]]:
    """Per item, the raw (not yet normalized) candidate terms it names."""
    cols = [f for f in fields if f in items.column_names]
    data = {c: items.column(c).to_pylist() for c in cols}
    for i in range(items.num_rows):
        found: set[str] = set()
        for c in cols:
            value = data[c][i]
            if c == "attributes":
                found.update(_attribute_values(value))
            elif isinstance(value, str):
                found.add(value)
        yield found


def mine_terms(
    items: pa.Table,
    tokenizer: Any,
    min_count: int,
    max_terms: int,
    fields: Iterable[str] = TERM_FIELDS,
) -> list[MinedTerm]:
    """The professional terms of an items table (see the module docstring)."""
    if min_count < 1 or max_terms < 1:
        raise ValueError("min_count and max_terms must be >= 1")
    cache: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for raw in item_terms(items, fields):
        named = set()
        for value in raw:
            term = cache.get(value)
            if term is None:
                term = cache[value] = normalize_term(value, tokenizer)
            if _is_term_shaped(term):
                named.add(term)
        counts.update(named)
    frequent = sorted(
        (t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t)
    )
    out: list[MinedTerm] = []
    for term in frequent:
        pieces = len(tokenizer.tokenize(term))
        if pieces >= 2:  # one token already: nothing to gain
            out.append(MinedTerm(term, counts[term], pieces))
            if len(out) == max_terms:
                break
    return out
