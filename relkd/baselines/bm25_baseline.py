"""BM25 baseline: score each labelled pair by BM25(query text, item text) with ``bm25s``.

The index holds one document per item that appears in the dataset's labelled pairs (any split),
so IDF and average length come from the judged catalogue, never from the unlabelled pool.
An item's document is its title, brand, color, product_type, description and the *values* of
its ``attributes`` JSON object (not the keys), whichever exist. Text is tokenised by
``bm25s.tokenize``: lowercase, ``\\w\\w+`` tokens, English stopwords removed, no stemming;
scoring is bm25s' default Lucene BM25 with the given ``k1`` and ``b``.

``get_scores`` runs once per distinct query text and the pair scores are gathered from it, so a
split of ~100k pairs takes seconds. The decision threshold is tuned on the val split when it has
labelled pairs (else on the evaluated split itself, which the output records), then the pairs
are scored with :func:`relkd.metrics.compute_relevance_metrics`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from relkd.artifacts.atomic_files import atomic_write
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import LabelScheme
from relkd.data.schema import BUCKETS, ITEM_TEXT_FIELDS, SPLITS
from relkd.errors import DataError
from relkd.metrics import compute_relevance_metrics, format_metrics_table, tune_threshold
from relkd.metrics.predictions_file import write_predictions

# Item columns indexed, in this order, when the items table has them.
TEXT_FIELDS: tuple[str, ...] = ITEM_TEXT_FIELDS
ATTRIBUTES_FIELD = "attributes"
STOPWORDS = "en"


def _tokenize(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords=STOPWORDS, return_ids=False, show_progress=False)


def _attribute_values(raw: str) -> tuple[str, bool]:
    """The space-joined values of an attributes JSON object, and whether it parsed.

    Nested values are flattened; a string that is not a JSON object is indexed as it is.
    """
    try:
        obj = json.loads(raw)
    except (ValueError, TypeError):
        return raw, False
    if not isinstance(obj, dict):
        return raw, False
    out: list[str] = []
    stack: list[Any] = list(obj.values())
    while stack:
        value = stack.pop(0)
        if isinstance(value, dict):
            stack[:0] = list(value.values())
        elif isinstance(value, list):
            stack[:0] = value
        elif value is not None:
            out.append(str(value))
    return " ".join(out), True


def item_documents(items: pa.Table) -> tuple[list[str], int]:
    """One text per item row (see the module docstring) and the number of rows whose
    ``attributes`` was not a JSON object (indexed as raw text)."""
    present = [f for f in TEXT_FIELDS if f in items.column_names]
    docs = [""] * items.num_rows
    if present:
        columns = [items.column(f).cast(pa.string()) for f in present]
        joined = pc.binary_join_element_wise(*columns, " ", null_handling="skip")
        docs = pc.fill_null(joined, "").to_pylist()
    unparsed = 0
    if ATTRIBUTES_FIELD in items.column_names:
        for row, raw in enumerate(items.column(ATTRIBUTES_FIELD).cast(pa.string()).to_pylist()):
            if raw:
                text, ok = _attribute_values(raw)
                unparsed += not ok
                docs[row] = f"{docs[row]} {text}" if docs[row] else text
    return docs, unparsed


class BM25ItemIndex:
    """A bm25s index over item documents, scoring (query text, item id) pairs."""

    def __init__(self, item_ids: Sequence[str], documents: Sequence[str], k1: float, b: float):
        if len(item_ids) != len(documents):
            raise ValueError("item_ids and documents differ in length")
        self.item_ids = pa.array(list(item_ids), pa.string())
        self.k1, self.b = k1, b
        self.retriever = bm25s.BM25(k1=k1, b=b)
        tokens = _tokenize(list(documents))
        # bm25s cannot index a corpus without a single token (e.g. all stopwords).
        self.empty = not any(tokens)
        if not self.empty:
            self.retriever.index(tokens, show_progress=False)

    def query_scores(self, text: str) -> np.ndarray:
        """BM25 score of every indexed item (in ``item_ids`` order) for one query."""
        ids = [] if self.empty else self.retriever.get_tokens_ids(_tokenize([text])[0])
        if not ids:  # no query token in the vocabulary: every item scores 0
            return np.zeros(len(self.item_ids), dtype=np.float64)
        return self.retriever.get_scores_from_ids(ids).astype(np.float64)

    def score_pairs(
        self,
        query_texts: pa.Array | pa.ChunkedArray | Sequence[str],
        item_ids: pa.Array | pa.ChunkedArray | Sequence[str],
    ) -> np.ndarray:
        """BM25 score of each (query text, item id) pair, ``get_scores`` once per distinct text.

        Raises:
            DataError: if a pair's item is not in the index.
        """
        item_ids = _flat(item_ids).cast(pa.string())
        pos = pc.index_in(item_ids, value_set=self.item_ids)
        if pos.null_count:
            missing = pc.filter(item_ids, pc.is_null(pos)).slice(0, 5).to_pylist()
            raise DataError(f"item(s) {missing} are not in the BM25 index")
        item_pos = pos.to_numpy(zero_copy_only=False).astype(np.int64)
        encoded = _flat(query_texts).cast(pa.string()).dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        texts = encoded.dictionary.to_pylist()
        out = np.empty(len(codes), dtype=np.float64)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(texts) + 1))
        for code, text in enumerate(texts):
            rows = order[bounds[code] : bounds[code + 1]]
            if rows.size:
                out[rows] = self.query_scores(text)[item_pos[rows]]
        return out


def _flat(values: pa.Array | pa.ChunkedArray | Sequence[Any]) -> pa.Array:
    """One contiguous Arrow array (chunks concatenated; Python sequences converted)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(values)


def _labelled_pairs(ds: CanonicalDataset) -> pa.Table:
    """Labelled pairs with their query text and bucket (pair_id, query_id, item_id, label,
    split, text, bucket)."""
    pairs = ds.table("pairs", columns=["pair_id", "query_id", "item_id", "label", "split"])
    pairs = pairs.filter(pc.is_valid(pairs.column("label")))
    queries = ds.table("queries", columns=["query_id", "text", "bucket"])
    pos = pc.index_in(pairs.column("query_id"), value_set=queries.column("query_id"))
    if pos.null_count:
        missing = pc.filter(pairs.column("query_id"), pc.is_null(pos)).slice(0, 5).to_pylist()
        raise DataError(
            f"{ds.path('pairs')}: column query_id: {pos.null_count} pair(s) reference queries "
            f"missing from queries.parquet, e.g. {missing}; run `relkd data validate`"
        )
    text = pc.fill_null(pc.take(queries.column("text"), pos), "")
    pairs = pairs.append_column("text", text)
    return pairs.append_column("bucket", pc.take(queries.column("bucket"), pos))


def _encode_labels(labels: pa.ChunkedArray, scheme: LabelScheme, where: str) -> np.ndarray:
    idx = pc.index_in(labels, value_set=pa.array(scheme.labels))
    if idx.null_count:
        bad = pc.unique(pc.filter(labels, pc.is_null(idx))).slice(0, 5).to_pylist()
        raise DataError(
            f"{where}: column label: unknown label(s) {bad} for scheme {scheme.name}; "
            "run `relkd data validate`"
        )
    return idx.to_numpy(zero_copy_only=False).astype(np.int64)


def default_out(data: str | Path, split: str) -> Path:
    """``runs/bm25/<dataset folder name>/<split>/metrics.json`` under the current directory."""
    return Path("runs") / "bm25" / Path(data).resolve().name / split / "metrics.json"


def predictions_path(out: Path) -> Path:
    """The per-pair scores written beside a BM25 ``metrics.json`` (or ``test.json``):
    ``<stem>.predictions.parquet``, the format of relkd/metrics/predictions_file.py."""
    return out.with_name(f"{out.stem}.predictions.parquet")


def run_bm25_baseline(
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    k1: float = 1.5,
    b: float = 0.75,
    verbose: bool = True,
) -> dict[str, Any]:
    """Score the labelled pairs of ``split`` with BM25, write ``metrics.json``, print the table.

    Args:
        data: canonical dataset folder.
        split: split to evaluate (train, val or test).
        out: metrics.json path; default :func:`default_out`. Never inside the dataset folder.
        k1, b: BM25 parameters.
        verbose: print the metrics table, the threshold and the output path.

    Returns:
        The payload written to ``metrics.json``: ``{"model": "bm25", "dataset": {...},
        "split", "params": {...}, "metrics": <compute_relevance_metrics result>}``.

    Raises:
        DataError: unknown split, no labelled pairs in it, an output path inside the dataset
            folder, or a malformed dataset (StaleArtifactError: a table edited since its
            manifest was written).
    """
    root = Path(data)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    out_path = Path(out) if out is not None else default_out(root, split)
    if out_path.resolve().is_relative_to(root.resolve()):
        raise DataError(
            f"{out_path}: refusing to write inside the dataset folder {root}; pass --out elsewhere"
        )
    ds = CanonicalDataset(root)
    tables_read = ds.verify()  # a table edited since its manifest: refuse, do not report on it
    scheme = ds.scheme
    pairs = _labelled_pairs(ds)
    eval_pairs = pairs.filter(pc.equal(pairs.column("split"), split))
    if eval_pairs.num_rows == 0:
        raise DataError(f"{ds.path('pairs')}: split {split} has no labelled pairs")
    tune_split = "val" if _count(pairs, "val") else split
    tune_pairs = pairs.filter(pc.equal(pairs.column("split"), tune_split))

    item_ids = pc.unique(pairs.column("item_id"))
    try:
        present = set(pq.read_schema(ds.path("items")).names)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{ds.path('items')}: cannot read table items ({exc})") from None
    wanted = ["item_id", *(f for f in (*TEXT_FIELDS, ATTRIBUTES_FIELD) if f in present)]
    items = ds.table("items", columns=wanted)
    items = items.filter(pc.is_in(items.column("item_id"), value_set=item_ids))
    docs, unparsed = item_documents(items)
    index = BM25ItemIndex(items.column("item_id").to_pylist(), docs, k1=k1, b=b)

    labels = _encode_labels(eval_pairs.column("label"), scheme, str(ds.path("pairs")))
    scores = index.score_pairs(eval_pairs.column("text"), eval_pairs.column("item_id"))
    if tune_split == split:
        tune_labels, tune_scores = labels, scores
    else:
        tune_labels = _encode_labels(tune_pairs.column("label"), scheme, str(ds.path("pairs")))
        tune_scores = index.score_pairs(tune_pairs.column("text"), tune_pairs.column("item_id"))
    threshold = tune_threshold(scheme.binary_array()[tune_labels], tune_scores)
    query_codes = _flat(eval_pairs.column("query_id")).dictionary_encode().indices
    bucket_codes = pc.index_in(eval_pairs.column("bucket"), value_set=pa.array(BUCKETS))
    if bucket_codes.null_count:
        raise DataError(
            f"{ds.path('queries')}: column bucket: values outside {list(BUCKETS)}; "
            "run `relkd data validate`"
        )
    query_index = query_codes.to_numpy(zero_copy_only=False).astype(np.int64)
    bucket_index = bucket_codes.to_numpy(zero_copy_only=False).astype(np.int64)
    metrics = compute_relevance_metrics(
        scheme, labels, scores, query_index, bucket_index, threshold=threshold
    )
    preds_path = predictions_path(out_path)
    write_predictions(
        preds_path,
        {
            "pair_id": eval_pairs.column("pair_id").to_numpy(),
            "labels": labels,
            "query_index": query_index,
            "bucket": bucket_index,
            "score": scores,
        },
    )
    payload = {
        "model": "bm25",
        "dataset": {
            "name": ds.manifest.name,
            "path": str(root.resolve()),
            "label_scheme": scheme.name,
            "tables_read": {t: tables_read[t] for t in ("items", "queries", "pairs")},
        },
        "split": split,
        "params": {
            "k1": k1,
            "b": b,
            "method": "lucene",
            "tokenizer": f"bm25s.tokenize (lowercase, \\w\\w+, stopwords={STOPWORDS}, no stemming)",
            "fields": [f for f in (*TEXT_FIELDS, ATTRIBUTES_FIELD) if f in items.column_names],
            "indexed_items": items.num_rows,
            "unparsed_attributes": unparsed,
            "threshold": threshold,
            "threshold_tuned_on": tune_split,
        },
        "metrics": metrics,
        "predictions": preds_path.name,
    }
    _write_json(out_path, payload)
    if verbose:
        print(format_metrics_table({"bm25": metrics}))
        note = "" if tune_split != split or split == "val" else " (no labelled val split)"
        print(f"threshold {threshold:.6g} tuned on {tune_split}{note}")
        print(f"wrote {out_path}")
    return payload


def _count(pairs: pa.Table, split: str) -> int:
    return int(pc.sum(pc.equal(pairs.column("split"), split)).as_py() or 0)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically as strict JSON (no NaN)."""
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
