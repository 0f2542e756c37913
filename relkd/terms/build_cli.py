"""``relkd terms build [EXPERIMENT.yaml] [k=v ...]``: mine (or open) an experiment's professional
term list and show what it does to the item titles.

Uses the experiment's dataset (a synthetic one is built if missing), its encoder's tokenizer
and ``data.terms``, whatever ``data.professional_terms`` says. Prints the artifact folder, the
term count, the most frequent terms with their token counts without / with the terms, and the
tokens of all item titles before and after (the paper's "20 tokens become 13" figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relkd.config.compose import BUNDLED_EXPERIMENTS, compose
from relkd.terms.vocab import add_terms

DEFAULT_EXPERIMENT = BUNDLED_EXPERIMENTS / "quickstart.yaml"
EXAMPLES = 8
CHUNK = 8192


def title_tokens(tokenizer: Any, titles: Sequence[str]) -> int:
    """Tokens of all ``titles`` (no special tokens)."""
    total = 0
    for start in range(0, len(titles), CHUNK):
        ids = tokenizer(list(titles[start : start + CHUNK]), add_special_tokens=False)["input_ids"]
        total += sum(map(len, ids))
    return total


def build_terms(cfg: Any) -> dict[str, Any]:
    """Open or build the term list of a composed config; returns the figures printed."""
    from relkd.data.canonical_dataset import CanonicalDataset
    from relkd.runs.dataset_resolver import resolve_dataset
    from relkd.runs.student_factory import encoder_spec
    from relkd.terms import terms_for_config

    data_dir = resolve_dataset(cfg.data, build=True)
    base = encoder_spec(cfg, data_dir).load_tokenizer()
    terms = terms_for_config(cfg, base)
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


def build_terms_from_cli(experiment: str | Path | None, overrides: Sequence[str]) -> str:
    """``relkd terms build``; an experiment given as ``k=v`` is an override."""
    overrides = list(overrides)
    if experiment is not None and "=" in str(experiment) and not Path(experiment).is_file():
        overrides.insert(0, str(experiment))
        experiment = None
    cfg = compose(experiment or DEFAULT_EXPERIMENT, overrides)
    return report(build_terms(cfg))
