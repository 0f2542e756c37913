"""The term-list artifact: a dataset's professional terms for one tokenizer, mined once.

Layout of ``<terms cache>/<dataset name>-<fingerprint[:16]>/`` (the cache defaults to
``<data.cache_dir>/../terms``, i.e. ``data_cache/terms`` beside ``data_cache/tokenized``)::

    manifest.json   inputs (fingerprinted), counts, terms_sha256, file sizes; written last
    terms.json      [{"term", "count", "pieces"}, ...] in term-list order (count desc, term)

Inputs: the dataset name and its items-table sha256, the tokenizer name, class and vocab hash
(of the base tokenizer, before any term is added), the mined fields, ``min_count`` and
``max_terms``. Changing any of them selects another folder (built on first use); a folder that
exists is verified and never rebuilt: other recorded inputs (an explicit ``root``), another
version or a ``terms.json`` edited after the build raise a one-line StaleArtifactError.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from relkd.artifacts import FingerprintedArtifact, fingerprint, folder_name
from relkd.artifacts.atomic_files import sha256_file
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.pair_arrays import pq_column_names
from relkd.errors import DataError, StaleArtifactError
from relkd.nets.tokenizer_info import TokenizerInfo, load_tokenizer
from relkd.terms.miner import TERM_FIELDS, MinedTerm, mine_terms

TERMS_VERSION = 1
TERMS_FILE = "terms.json"
DEFAULT_TERMS_DIR = "data_cache/terms"


def terms_cache_dir(tokenized_cache_dir: str | Path) -> Path:
    """Where term lists live for a ``data.cache_dir`` (tokenized stores): its sibling ``terms``."""
    return Path(tokenized_cache_dir).parent / "terms"


@dataclass(frozen=True)
class TermInputs:
    """Everything a term list depends on; its fingerprint names the folder."""

    dataset_name: str
    items_sha256: str
    tokenizer_name: str
    tokenizer_class: str
    vocab_sha256: str
    fields: tuple[str, ...]
    min_count: int
    max_terms: int
    terms_version: int = TERMS_VERSION

    @classmethod
    def of(
        cls, dataset: CanonicalDataset, tokenizer: TokenizerInfo, min_count: int, max_terms: int
    ) -> TermInputs:
        if min_count < 1 or max_terms < 1:
            raise ValueError("min_count and max_terms must be >= 1")
        verified = dataset.verify()  # refuses an items table edited since the manifest
        return cls(
            dataset_name=dataset.manifest.name,
            items_sha256=verified["items"],
            tokenizer_name=tokenizer.name,
            tokenizer_class=tokenizer.cls_name,
            vocab_sha256=tokenizer.vocab_sha256,
            fields=TERM_FIELDS,
            min_count=int(min_count),
            max_terms=int(max_terms),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fields"] = list(self.fields)
        return out

    def key(self) -> str:
        return folder_name(self.dataset_name, fingerprint(self.to_dict()))


class TermList(FingerprintedArtifact):
    """A verified term list (see the module docstring)."""

    KIND = "term_list"
    VERSION = TERMS_VERSION
    VERSION_KEY = "terms_version"
    LABEL = "term list"

    def __init__(self, root: str | Path, manifest: dict[str, Any]) -> None:
        super().__init__(root, manifest)
        self._entries: list[MinedTerm] | None = None

    @classmethod
    def open(cls, root: str | Path, inputs: TermInputs | None = None) -> TermList:
        """Open and verify; StaleArtifactError for other inputs or an edited terms.json."""
        manifest = cls.read_manifest(root, None if inputs is None else inputs.to_dict())
        out = cls(root, manifest)
        out.verify_files()
        path = out.root / TERMS_FILE
        have = sha256_file(path)
        if have != manifest.get("terms_sha256"):
            raise StaleArtifactError(
                f"{path}: sha256 {have[:12]} != {str(manifest.get('terms_sha256'))[:12]} recorded "
                f"in its manifest; the term list was edited after it was built. Delete {out.root} "
                "to rebuild it"
            )
        return out

    @classmethod
    def open_or_build(
        cls,
        data_dir: str | Path,
        tokenizer: Any,
        *,
        min_count: int,
        max_terms: int,
        cache_dir: str | Path = DEFAULT_TERMS_DIR,
        root: str | Path | None = None,
        build: bool = True,
    ) -> TermList:
        """The term list of a dataset for a (base) tokenizer, mined first if its folder does
        not exist (``build=False``: DataError instead)."""
        dataset = CanonicalDataset(data_dir)
        tok = load_tokenizer(tokenizer)
        inputs = TermInputs.of(dataset, TokenizerInfo.of(tok), min_count, max_terms)
        root = Path(root) if root is not None else Path(cache_dir) / inputs.key()
        if not root.exists():
            if not build:
                raise DataError(f"{root}: term list not built yet (run `relkd terms build`)")
            cls.build(root, dataset, tok, inputs)
        return cls.open(root, inputs)

    @classmethod
    def build(
        cls, root: str | Path, dataset: CanonicalDataset, tokenizer: Any, inputs: TermInputs
    ) -> TermList:
        present = set(pq_column_names(dataset, "items"))
        items = dataset.table("items", [f for f in inputs.fields if f in present])
        mined = mine_terms(items, tokenizer, inputs.min_count, inputs.max_terms, inputs.fields)

        def write(staging: Path) -> dict[str, Any]:
            path = staging / TERMS_FILE
            rows = [{"term": m.term, "count": m.count, "pieces": m.pieces} for m in mined]
            path.write_text(json.dumps(rows, ensure_ascii=False, indent=0) + "\n")
            return {
                "counts": {"terms": len(mined), "items": items.num_rows},
                "terms_sha256": sha256_file(path),
            }

        cls.build_atomically(root, inputs.to_dict(), write)
        return cls.open(root, inputs)

    # -- contents ------------------------------------------------------------------------

    @property
    def entries(self) -> list[MinedTerm]:
        if self._entries is None:
            path = self.root / TERMS_FILE
            try:
                rows = json.loads(path.read_text())
                self._entries = [
                    MinedTerm(r["term"], int(r["count"]), int(r["pieces"])) for r in rows
                ]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}: cannot read the term list ({exc})") from None
        return self._entries

    @property
    def terms(self) -> list[str]:
        return [e.term for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "entries": self._entries}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._entries = state.get("entries")

    def __repr__(self) -> str:
        return f"TermList({str(self.root)!r}, terms={self.manifest['counts']['terms']})"
