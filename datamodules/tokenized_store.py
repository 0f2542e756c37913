"""The tokenized store: a canonical dataset's queries and items tokenized once, memory-mapped.

Queries and items are tokenized separately (there are far fewer of them than pairs) without
special tokens, so one store serves cross-encoders (``[CLS] q [SEP] item [SEP]`` is assembled at
collate time) and two-towers alike. Layout of a store folder (nanoGPT style)::

    manifest.json        inputs (fingerprinted), counts, dtypes, file sizes; written last
    query_tokens.bin     flat token ids of every query, dtype ``token_dtype`` (uint16/uint32)
    query_offsets.npy    int64 [num_queries + 1]; query r is tokens[offsets[r]:offsets[r+1]]
    item_tokens.bin      flat token ids of every item
    item_offsets.npy     int64 [num_items + 1]
    pair_id.npy          int64 [num_pairs], in the dataset's pair order
    query_row.npy        int32 row into the queries table (= the query group index)
    item_row.npy         int32 row into the items table
    label.npy            int8 class index in the label scheme, -1 = unlabelled
    split.npy            int8 index into relkd.data.schema.SPLITS
    bucket.npy           int8 index into relkd.data.schema.BUCKETS (the query's bucket)
    aspects.npy          int8 [num_pairs, 4] index into ASPECT_VALUES per ASPECTS, -1 missing
                         (only when the pairs table has aspect_* columns)

The store is keyed by a fingerprint of its inputs (dataset table hashes, tokenizer name, class
and vocab hash, item fields, max lengths). Opening an existing folder whose manifest records
different inputs raises StaleArtifactError; it is never rebuilt silently. Nothing is ever written
inside or beside the dataset folder.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from relkd import __version__
from relkd.artifacts import FingerprintedArtifact, folder_name, input_differences
from relkd.artifacts.identity import sha256_hex
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.pair_arrays import PairArrays, pq_column_names
from relkd.data.schema import ITEM_TEXT_FIELDS, ITEMS
from relkd.errors import DataError
from relkd.nets.tokenizer_info import TokenizerInfo, load_tokenizer

STORE_VERSION = 1
STORE_KIND = "tokenized_store"
MANIFEST = "manifest.json"
DEFAULT_ITEM_FIELDS: tuple[str, ...] = ITEM_TEXT_FIELDS
ITEM_FIELD_SEPARATOR = " | "
# Item text is cut to this many characters per allowed token before tokenizing, so a long
# description is not tokenized in full only to be truncated (a token covers far fewer chars).
CHARS_PER_TOKEN_CAP = 16
TOKENIZE_CHUNK = 8192


@dataclass(frozen=True)
class StoreInputs:
    """Everything a store's contents depend on; its fingerprint names the store folder."""

    dataset_name: str
    dataset_tables: dict[str, str]  # items/queries/pairs -> verified sha256 (dataset manifest)
    tokenizer_name: str
    tokenizer_class: str
    vocab_sha256: str
    item_fields: tuple[str, ...]
    max_query_tokens: int
    max_item_tokens: int
    store_version: int = STORE_VERSION

    @classmethod
    def of(
        cls,
        dataset: CanonicalDataset,
        tokenizer: TokenizerInfo,
        item_fields: tuple[str, ...],
        max_query_tokens: int,
        max_item_tokens: int,
    ) -> StoreInputs:
        if max_query_tokens < 1 or max_item_tokens < 1:
            raise ValueError("max_query_tokens and max_item_tokens must be >= 1")
        if not item_fields:
            raise ValueError("item_fields must name at least one items column")
        verified = dataset.verify()  # refuses tables edited since the manifest was written
        return cls(
            dataset_name=dataset.manifest.name,
            dataset_tables={t: verified[t] for t in ("items", "queries", "pairs")},
            tokenizer_name=tokenizer.name,
            tokenizer_class=tokenizer.cls_name,
            vocab_sha256=tokenizer.vocab_sha256,
            item_fields=tuple(item_fields),
            max_query_tokens=int(max_query_tokens),
            max_item_tokens=int(max_item_tokens),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["item_fields"] = list(self.item_fields)
        return out

    def fingerprint(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return sha256_hex(blob)

    def key(self) -> str:
        """Folder name: ``<dataset name>-<fingerprint prefix>``."""
        return folder_name(self.dataset_name, self.fingerprint())

    def differences(self, recorded: dict[str, Any]) -> list[str]:
        """Human-readable list of inputs where ``recorded`` (a manifest's) differs from self."""
        return input_differences(recorded, self.to_dict())


DEFAULT_CACHE_DIR = "data_cache/tokenized"


def default_store_dir(cache_dir: str | Path, inputs: StoreInputs) -> Path:
    """``<cache_dir>/<key>``; a relative ``cache_dir`` resolves against the cwd."""
    return Path(cache_dir) / inputs.key()


class TokenizedStore(FingerprintedArtifact):
    """A verified, memory-mapped tokenized store. Arrays open lazily and are dropped on pickling
    (DataLoader workers and ddp_spawn children reopen them from the path)."""

    KIND = STORE_KIND
    VERSION = STORE_VERSION
    VERSION_KEY = "store_version"
    LABEL = "tokenized store"

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | Path, inputs: StoreInputs | None = None) -> TokenizedStore:
        """Open and verify a store; ``inputs`` (when given) must match the recorded ones.

        Raises StaleArtifactError for a store built from other inputs and DataError naming the
        file for a missing or truncated file.
        """
        manifest = cls.read_manifest(root, None if inputs is None else inputs.to_dict())
        store = cls(root, manifest)
        store.verify_files()
        return store

    @classmethod
    def open_or_build(
        cls,
        data_dir: str | Path,
        tokenizer: Any,
        *,
        cache_dir: str | Path = DEFAULT_CACHE_DIR,
        store_dir: str | Path | None = None,
        item_fields: tuple[str, ...] = DEFAULT_ITEM_FIELDS,
        max_query_tokens: int = 32,
        max_item_tokens: int = 96,
        build: bool = True,
    ) -> TokenizedStore:
        """Open the store for these inputs, building it first if its folder does not exist.

        Args:
            tokenizer: a tokenizer object or a name/path for ``AutoTokenizer``.
            store_dir: explicit store folder; default ``<cache_dir>/<key>``.
            build: build a missing store; when False a missing store raises DataError.
        """
        dataset = CanonicalDataset(data_dir)
        tok = load_tokenizer(tokenizer)
        inputs = StoreInputs.of(
            dataset, TokenizerInfo.of(tok), tuple(item_fields), max_query_tokens, max_item_tokens
        )
        root = Path(store_dir) if store_dir is not None else default_store_dir(cache_dir, inputs)
        if not root.exists():
            if not build:
                raise DataError(f"{root}: tokenized store not built yet (run prepare_data first)")
            cls.build(root, dataset, tok, inputs)
        return cls.open(root, inputs)

    # -- building ------------------------------------------------------------------------

    @classmethod
    def build(
        cls, root: str | Path, dataset: CanonicalDataset, tokenizer: Any, inputs: StoreInputs
    ) -> TokenizedStore:
        """Tokenize ``dataset`` into a new store at ``root`` (staged, then renamed into place)."""
        info = TokenizerInfo.of(tokenizer)
        t0 = time.perf_counter()

        def write(staging: Path) -> dict[str, Any]:
            extra = _build_into(staging, dataset, tokenizer, info, inputs)
            extra["build_seconds"] = round(time.perf_counter() - t0, 3)
            return extra

        cls.build_atomically(root, inputs.to_dict(), write)
        return cls.open(root, inputs)

    # -- arrays --------------------------------------------------------------------------

    def verify_files(self) -> None:
        """Check every file exists with the recorded size and the offsets are consistent."""
        super().verify_files()
        for kind in ("query", "item"):
            offsets = self.array(f"{kind}_offsets")
            tokens = self.array(f"{kind}_tokens")
            if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(tokens):
                raise DataError(f"{self.root / (kind + '_offsets.npy')}: corrupt offsets")

    def _open_array(self, name: str) -> np.ndarray:
        if name.endswith("_tokens"):
            path = self.root / f"{name}.bin"
            n = self.manifest["counts"][name]
            if n == 0:
                return np.zeros(0, dtype=self.token_dtype)
            try:
                return np.memmap(path, dtype=self.token_dtype, mode="r", shape=(n,))
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: cannot map tokenized store file ({exc})") from None
        return super()._open_array(name)

    def expected_rows(self, name: str) -> int | None:
        counts = self.manifest["counts"]
        rows = {"query_offsets": counts["queries"] + 1, "item_offsets": counts["items"] + 1}
        return rows.get(name, counts["pairs"])

    @property
    def token_dtype(self) -> np.dtype:
        return np.dtype(self.manifest["token_dtype"])

    @property
    def num_pairs(self) -> int:
        return int(self.manifest["counts"]["pairs"])

    @property
    def num_queries(self) -> int:
        return int(self.manifest["counts"]["queries"])

    @property
    def num_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    @property
    def has_aspects(self) -> bool:
        return bool(self.manifest["has_aspects"])

    @property
    def special(self) -> dict[str, Any]:
        """Tokenizer facts recorded at build: cls_id, sep_id, pad_id, has_token_types, ..."""
        return self.manifest["tokenizer"]

    @property
    def label_scheme(self) -> str:
        return self.manifest["label_scheme"]

    def query_lengths(self) -> np.ndarray:
        return np.diff(self.array("query_offsets")).astype(np.int32)

    def item_lengths(self) -> np.ndarray:
        return np.diff(self.array("item_offsets")).astype(np.int32)

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return (
            f"TokenizedStore({str(self.root)!r}, queries={c['queries']}, items={c['items']}, "
            f"pairs={c['pairs']})"
        )


# -- build helpers -------------------------------------------------------------------------


def _build_into(
    out: Path,
    dataset: CanonicalDataset,
    tokenizer: Any,
    info: TokenizerInfo,
    inputs: StoreInputs,
) -> dict[str, Any]:
    token_dtype = np.dtype(np.uint16 if info.vocab_size <= np.iinfo(np.uint16).max else np.uint32)
    scheme = dataset.scheme

    queries = dataset.table("queries", ["query_id", "text"])
    item_cols = _item_columns(dataset, inputs.item_fields)
    items = dataset.table("items", ["item_id", *item_cols])
    pairs = PairArrays.of(dataset)  # validates keys, labels, splits, buckets, aspects

    counts: dict[str, int] = {
        "queries": queries.num_rows,
        "items": items.num_rows,
        "pairs": len(pairs),
    }
    # Tokens: queries, then items (text is joined with Arrow kernels, not per-row Python).
    q_text = queries.column("text")
    counts["query_tokens"] = _tokenize_to(
        out, "query", q_text, tokenizer, inputs.max_query_tokens, token_dtype
    )
    i_text = _item_text(items, item_cols, inputs.max_item_tokens * CHARS_PER_TOKEN_CAP)
    counts["item_tokens"] = _tokenize_to(
        out, "item", i_text, tokenizer, inputs.max_item_tokens, token_dtype
    )
    del q_text, i_text
    pairs.save(out)
    return {
        "relkd_version": __version__,
        "label_scheme": scheme.name,
        "tokenizer": info.to_dict(),
        "token_dtype": token_dtype.name,
        "item_columns": item_cols,
        "item_field_separator": ITEM_FIELD_SEPARATOR,
        "has_aspects": pairs.aspects is not None,
        "counts": counts,
    }


def _item_columns(dataset: CanonicalDataset, fields: tuple[str, ...]) -> list[str]:
    present = pq_column_names(dataset, "items")
    known = {c.name for c in ITEMS.columns}
    cols = []
    for f in fields:
        if f in present:
            cols.append(f)
        elif f not in known:
            raise DataError(
                f"{dataset.path('items')}: item field {f!r} is not a column (columns: {present})"
            )
        # a known optional column that this dataset lacks is skipped
    if not cols:
        raise DataError(f"{dataset.path('items')}: none of the item fields {list(fields)} exist")
    return cols


def _item_text(items: pa.Table, cols: list[str], max_chars: int) -> pa.ChunkedArray:
    parts = []
    for c in cols:
        col = items.column(c)
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            col = pc.cast(col, pa.string())
        col = pc.utf8_trim_whitespace(col)
        empty = pc.equal(pc.utf8_length(col), 0)
        parts.append(pc.if_else(empty, pa.scalar(None, col.type), col))
    joined = pc.binary_join_element_wise(*parts, ITEM_FIELD_SEPARATOR, null_handling="skip")
    return pc.utf8_slice_codeunits(joined, 0, max_chars)


def _tokenize_to(
    out: Path,
    kind: str,
    texts: pa.ChunkedArray,
    tokenizer: Any,
    max_tokens: int,
    dtype: np.dtype,
) -> int:
    """Tokenize ``texts`` in chunks, appending ids to ``<kind>_tokens.bin``; writes offsets."""
    n = len(texts)
    lengths = np.zeros(n, dtype=np.int64)
    total = 0
    with open(out / f"{kind}_tokens.bin", "wb") as fh:
        for start in range(0, n, TOKENIZE_CHUNK):
            batch = [t or "" for t in texts.slice(start, TOKENIZE_CHUNK).to_pylist()]
            ids = tokenizer(
                batch,
                add_special_tokens=False,
                truncation=True,
                max_length=max_tokens,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(
                itertools.chain.from_iterable(ids), dtype=dtype, count=int(lens.sum())
            )
            fh.write(flat.tobytes())
            lengths[start : start + len(ids)] = lens
            total += int(lens.sum())
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(out / f"{kind}_offsets.npy", offsets)
    return total
