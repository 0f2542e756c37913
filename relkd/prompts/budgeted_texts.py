"""Query and item texts cut to token budgets, with the cuts counted (never silent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.prompts.item_renderer import ItemRenderer

TOKENIZE_CHUNK = 4096


def cut_to_tokens(tokenizer: Any, texts: Sequence[str], budget: int) -> tuple[list[str], int]:
    """Cut each text after its ``budget``-th token (at the token's character end); returns the
    texts and how many were cut."""
    out: list[str] = []
    cut = 0
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = list(texts[start : start + TOKENIZE_CHUNK])
        enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
        for text, offsets in zip(chunk, enc["offset_mapping"], strict=True):
            if len(offsets) > budget:
                out.append(text[: offsets[budget - 1][1]].rstrip())
                cut += 1
            else:
                out.append(text)
    return out, cut


@dataclass
class BudgetedTexts:
    """Every query's text and every item's rendered text (rows of the dataset's tables)."""

    queries: list[str]
    items: list[str]
    item_columns: list[str]  # the item fields this dataset has, in order
    cut: dict[str, int]  # texts cut to their budget: {"query": n, "item": n}

    @classmethod
    def of(
        cls,
        dataset: CanonicalDataset,
        tokenizer: Any,
        item_fields: Sequence[str],
        max_query_tokens: int,
        max_item_tokens: int,
    ) -> BudgetedTexts:
        import pyarrow.parquet as pq

        queries = dataset.table("queries", ["text"]).column("text").to_pylist()
        renderer = ItemRenderer(item_fields)
        cols = renderer.columns(pq.read_schema(dataset.path("items")).names)
        items = dataset.table("items", ["item_id", *cols])
        q_text, q_cut = cut_to_tokens(
            tokenizer, [" ".join((t or "").split()) for t in queries], max_query_tokens
        )
        i_text, i_cut = cut_to_tokens(
            tokenizer, renderer.render_table(items, str(dataset.path("items"))), max_item_tokens
        )
        return cls(q_text, i_text, cols, {"query": q_cut, "item": i_cut})
