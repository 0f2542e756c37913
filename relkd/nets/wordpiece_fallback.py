"""A WordPiece tokenizer trained on the dataset itself, for when MiniLM's tokenizer is absent.

The ``tiny-bert`` preset normally shares MiniLM's vocabulary. Without the ``minilm`` extra there
is no pretrained tokenizer on an offline machine, so we train one (seconds) on the item texts
and the *train* queries only, never on val/test queries, and cache it keyed by the dataset's
content hashes so every later run reuses the same vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc

from relkd.artifacts.atomic_files import atomic_write_json, move_into_place, staged_folder
from relkd.artifacts.identity import json_digest, short_id
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import ITEM_TEXT_FIELDS

TEXT_FIELDS = ITEM_TEXT_FIELDS
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _texts(dataset: CanonicalDataset) -> Iterator[str]:
    items = dataset.table("items")
    for field in TEXT_FIELDS:
        if field in items.column_names:
            yield from (t for t in items.column(field).to_pylist() if t)
    pairs = dataset.table("pairs", columns=["query_id", "split"])
    train_queries = pc.unique(pairs.filter(pc.equal(pairs["split"], "train"))["query_id"])
    queries = dataset.table("queries", columns=["query_id", "text"])
    keep = pc.is_in(queries["query_id"], value_set=train_queries)
    yield from queries.filter(keep).column("text").to_pylist()


def wordpiece_tokenizer(
    data_dir: str | Path, cache_root: str | Path, vocab_size: int = 8000
) -> str:
    """Path of a cached BERT-style fast tokenizer trained on ``data_dir``; trains it if missing."""
    dataset = CanonicalDataset(data_dir)
    fingerprint = {
        "tables": {k: v.sha256 for k, v in dataset.manifest.tables.items() if k != "behavior"},
        "vocab_size": vocab_size,
        "fields": TEXT_FIELDS,
    }
    key = short_id(json_digest(fingerprint), 12)
    out = Path(cache_root) / f"wordpiece-{key}"
    if (out / "tokenizer.json").is_file():
        return str(out)
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(
        _texts(dataset), vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS
    )
    fast = BertTokenizerFast(tokenizer_object=trainer._tokenizer, do_lower_case=True)
    fast.add_special_tokens(
        {
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "mask_token": "[MASK]",
        }
    )
    with staged_folder(out) as staging:
        fast.save_pretrained(staging)
        atomic_write_json(staging / "relkd_fingerprint.json", fingerprint)
        move_into_place(staging, out)  # False: a concurrent builder's identical copy won
    return str(out)
