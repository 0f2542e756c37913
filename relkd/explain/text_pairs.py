"""Free query and item text as a throwaway canonical dataset, so the student's tokenized store and
the teacher's prompt store encode it exactly as they encode catalogue pairs (no second tokenizer
or prompt path to drift from training).

The item text becomes the item's ``title``, its only field: a student whose ``data.item_fields``
also name brand or colour, and a teacher whose prompt shows them, see the title alone. Each text
pair is one unlabelled ``test`` pair (pair_id = its position) of a query in the ``tail`` bucket,
with unknown (null) aspect facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import ASPECTS
from relkd.errors import DataError

TEXT_DATASET = "explain-text"
TEXT_BUCKET = "tail"
TEXT_SPLIT = "test"


def clean_text(value: str | None, field: str) -> str:
    """``value`` with its whitespace collapsed; DataError naming ``field`` when it is empty."""
    text = " ".join((value or "").split())
    if not text:
        raise DataError(f"{field}: empty; give the text to explain")
    return text


def write_text_pairs(
    root: str | Path, pairs: Sequence[tuple[str, str]], label_scheme: str
) -> CanonicalDataset:
    """A dataset at ``root`` of one unlabelled pair per ``(query, item text)``."""
    if not pairs:
        raise ValueError("write_text_pairs: no pairs")
    texts = [(clean_text(q, "QUERY"), clean_text(i, "ITEM")) for q, i in pairs]
    n = len(texts)
    queries = pa.table(
        {
            "query_id": [f"q{j}" for j in range(n)],
            "text": [q for q, _ in texts],
            "bucket": [TEXT_BUCKET] * n,
        }
    )
    items = pa.table({"item_id": [f"i{j}" for j in range(n)], "title": [i for _, i in texts]})
    table = pa.table(
        {
            "pair_id": pa.array(range(n), pa.int64()),
            "query_id": [f"q{j}" for j in range(n)],
            "item_id": [f"i{j}" for j in range(n)],
            "label": pa.nulls(n, pa.string()),
            "split": [TEXT_SPLIT] * n,
            # unknown facts: a CoT teacher's prompt store renders (unused) rule responses
            **{f"aspect_{a}": pa.nulls(n, pa.string()) for a in ASPECTS},
        }
    )
    return CanonicalDataset.write(
        root,
        {"items": items, "queries": queries, "pairs": table},
        name=TEXT_DATASET,
        label_scheme=label_scheme,
        source={"kind": "explain", "params": {"pairs": n}},
    )
