"""What a professional-term list does to the item titles: its most frequent terms and the titles' token
counts without and with it (the figures of ``relkd terms build``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from relkd.terms.vocab import add_terms

EXAMPLES = 8
CHUNK = 8192


def title_tokens(tokenizer: Any, titles: Sequence[str]) -> int:
    """Tokens of all ``titles`` (no special tokens)."""
    total = 0
    for start in range(0, len(titles), CHUNK):
        ids = tokenizer(list(titles[start : start + CHUNK]), add_special_tokens=False)["input_ids"]
        total += sum(map(len, ids))
    return total


def term_figures(cfg: DictConfig, data_dir: Path, base: Any) -> dict[str, Any]:
    """Open or build the term list of a composed config over its dataset ``data_dir`` and the
    encoder's tokenizer ``base``; returns the figures :func:`report` prints."""
    from relkd.data.canonical_dataset import CanonicalDataset
    from relkd.terms import terms_for_config

    terms = terms_for_config(cfg, data_dir, base)
    extended = add_terms(base, terms.terms)
    titles = [
        t or "" for t in CanonicalDataset(data_dir).table("items", ["title"])["title"].to_pylist()
    ]
    return {
        "root": str(terms.root),
        "terms": len(terms),
        "examples": [
            (e.term, e.count, e.pieces, len(extended.tokenize(e.term)))
            for e in terms.entries[:EXAMPLES]
        ],
        "titles": len(titles),
        "title_tokens_before": title_tokens(base, titles),
        "title_tokens_after": title_tokens(extended, titles),
    }


def report(figures: dict[str, Any]) -> str:
    before, after = figures["title_tokens_before"], figures["title_tokens_after"]
    lines = [f"{figures['root']}: {figures['terms']} professional terms"]
    for term, count, pieces, now in figures["examples"]:
        lines.append(f"  {term!r}: {count} items, {pieces} tokens -> {now}")
    share = f" ({100 * (after - before) / before:+.1f}%)" if before else ""
    lines.append(
        f"item titles ({figures['titles']}): {before} tokens become {after}{share}; "
        f"{before / max(figures['titles'], 1):.1f} -> {after / max(figures['titles'], 1):.1f} "
        "per title"
    )
    return "\n".join(lines)
