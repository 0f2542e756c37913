"""The prompt store: every pair's teacher prompt and response, rendered and tokenized once.

The teacher reads long prompts (rich item text, behaviour neighbours) and, in the CoT modes, a
response to learn. Both are rendered from the dataset with the versioned PromptTemplate and
tokenized *as text*, so what is stored is exactly what any tokenizer (WordPiece or BPE) makes of
the prompt. Layout (memory-mapped ``.npy``; pair arrays as in the tokenized store)::

    manifest.json          inputs (fingerprinted), template text and hash, counts, truncation
                           counts, neighbour coverage, CoT statistics, example prompts
    prompt_tokens.npy      flat token ids of every prompt (start token included)
    prompt_offsets.npy     int64 [pairs + 1]
    response_tokens.npy    flat token ids of every response (end token included; may be empty)
    response_offsets.npy   int64 [pairs + 1]
    slots.npy              int16 [pairs, 5]: position of each slot value's first token inside
                           the response (category, brand, model, attributes, verdict), -1 absent
    pair_id.npy ...        pair arrays (relkd/data/pair_arrays.py), aspects.npy when present

Budgets cut the query, the item text and each neighbour text at a token boundary; every cut is
counted in the manifest and logged, never silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from relkd import __version__
from relkd.artifacts import FingerprintedArtifact, fingerprint, folder_name
from relkd.artifacts.identity import sha256_hex
from relkd.behavior import BehaviorNeighbors
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.manifest import sha256_file
from relkd.data.pair_arrays import PairArrays
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import DataError
from relkd.nets.tokenizer_info import load_tokenizer
from relkd.prompts import COT_SLOTS, CotTemplate, PromptTemplate, parse_cot
from relkd.prompts.budgeted_texts import TOKENIZE_CHUNK, BudgetedTexts, cut_to_tokens
from relkd.prompts.cot_jsonl import read_cot_jsonl
from relkd.prompts.cot_template import VERDICT
from relkd.prompts.item_renderer import TEACHER_ITEM_FIELDS
from relkd.prompts.prompt_template import chat_prompt

log = logging.getLogger(__name__)

PROMPT_STORE_KIND = "prompt_store"
PROMPT_STORE_VERSION = 1
COT_SOURCES = ("rules", "jsonl")


@dataclass(frozen=True)
class PromptSpec:
    """Everything that decides the teacher's prompts and responses (besides data and tokenizer).

    Attributes:
        mode: classifier | cot | multitask | progressive (see PromptTemplate).
        label_words: label -> verdict word.
        item_fields: item columns shown, in order (ItemRenderer).
        max_query_tokens / max_item_tokens: budgets of the query and the item text.
        max_neighbor_tokens: budget of each neighbour text (an item title or a query).
        query_neighbors / item_neighbors: k neighbours per side (0 = that line is left out).
        min_impressions / min_ctr: neighbour confidence thresholds (ProRBP's m and c).
        eval_queries: ``logs`` or ``hidden`` (BehaviorNeighbors).
        echo_query: repeat the query after the item (PromptTemplate).
        cot_source: ``rules`` (the dataset's aspect facts) or ``jsonl`` (``cot_file``).
        cot_file: JSONL with ``pair_id`` and ``cot`` when ``cot_source`` is jsonl.
        labelled_only: cover the labelled pairs only (training); False adds the unlabelled pool.
        chat: send each prompt as the user's turn of the tokenizer's chat template (instruct
            LLMs; PromptTemplate), without the start token the template writes itself.
    """

    mode: str = "classifier"
    label_words: Mapping[str, str] = field(default_factory=dict)
    item_fields: tuple[str, ...] = TEACHER_ITEM_FIELDS
    max_query_tokens: int = 32
    max_item_tokens: int = 96
    max_neighbor_tokens: int = 16
    query_neighbors: int = 0
    item_neighbors: int = 0
    min_impressions: int = 1
    min_ctr: float = 0.2
    eval_queries: str = "logs"
    echo_query: bool = False
    cot_source: str = "rules"
    cot_file: str | None = None
    labelled_only: bool = True
    chat: bool = False

    def __post_init__(self) -> None:
        if self.cot_source not in COT_SOURCES:
            raise ValueError(f"cot_source must be one of {COT_SOURCES}")
        if self.cot_source == "jsonl" and not self.cot_file:
            raise ValueError("cot_source jsonl needs cot_file")
        for name in ("max_query_tokens", "max_item_tokens", "max_neighbor_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def uses_behavior(self) -> bool:
        return self.query_neighbors > 0 or self.item_neighbors > 0

    def template(self) -> PromptTemplate:
        return PromptTemplate(
            mode=self.mode,
            cot=CotTemplate(dict(self.label_words)),
            query_neighbors=self.query_neighbors > 0,
            item_neighbors=self.item_neighbors > 0,
            echo_query=self.echo_query,
            chat=self.chat,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["item_fields"] = list(self.item_fields)
        out["label_words"] = dict(self.label_words)
        return out


def special_ids(tokenizer: Any) -> dict[str, Any]:
    """Start (BOS, else CLS, else none), end (EOS, else SEP) and pad ids of a tokenizer."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if end is None:
        raise DataError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no EOS/SEP token to end "
            "a response"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    return {
        "start_ids": [] if start is None else [int(start)],
        "end_id": int(end),
        "pad_id": int(pad),
    }


def _tokenizer_identity(tokenizer: Any, chat: bool = False) -> dict[str, str]:
    vocab = sorted(tokenizer.get_vocab().items())
    out = {
        "tokenizer_name": str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        "tokenizer_class": type(tokenizer).__name__,
        "vocab_sha256": fingerprint({"vocab": vocab}),
    }
    if chat:  # the chat template writes part of every prompt
        out["chat_template_sha256"] = sha256_hex(
            chat_template_of(tokenizer, "teacher.prompt.format")
        )
    return out


def chat_template_of(tokenizer: Any, setting: str) -> str:
    """The tokenizer's chat template; a one-line DataError naming ``setting`` when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise DataError(
            f"{setting}: format chat, but tokenizer "
            f"{getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; use format plain"
        )
    return str(template)


def store_inputs(dataset: CanonicalDataset, tokenizer: Any, spec: PromptSpec) -> dict[str, Any]:
    """The inputs a prompt store is keyed by (and refused when they change)."""
    tables = ["items", "queries", "pairs"]
    if spec.uses_behavior and dataset.has_table("behavior"):
        tables.append("behavior")
    verified = dataset.verify()  # refuses tables edited since the manifest was written
    inputs: dict[str, Any] = {
        "dataset_name": dataset.manifest.name,
        "dataset_tables": {t: verified[t] for t in tables},
        **_tokenizer_identity(tokenizer, spec.chat),
        "template_sha256": spec.template().sha256,
        "spec": spec.to_dict(),
        "store_version": PROMPT_STORE_VERSION,
    }
    if spec.cot_source == "jsonl":
        path = Path(str(spec.cot_file))
        if not path.is_file():
            raise DataError(f"{path}: CoT file not found (teacher.cot.file)")
        inputs["cot_file_sha256"] = sha256_file(path)
    return inputs


class PromptStore(FingerprintedArtifact):
    """A verified, memory-mapped prompt store (see the module docstring)."""

    KIND = PROMPT_STORE_KIND
    VERSION = PROMPT_STORE_VERSION
    LABEL = "prompt store"

    @classmethod
    def open_or_build(
        cls,
        data_dir: str | Path,
        tokenizer: Any,
        spec: PromptSpec,
        *,
        cache_dir: str | Path = "data_cache/prompts",
        store_dir: str | Path | None = None,
        build: bool = True,
    ) -> PromptStore:
        """Open the store for these inputs, building it first if its folder does not exist; a
        folder built from other inputs raises StaleArtifactError."""
        dataset = CanonicalDataset(data_dir)
        tok = load_tokenizer(tokenizer)
        inputs = store_inputs(dataset, tok, spec)
        if store_dir is None:
            store_dir = Path(cache_dir) / folder_name(
                dataset.manifest.name, fingerprint(inputs), spec.mode
            )
        root = Path(store_dir)
        if not root.exists():
            if not build:
                raise DataError(f"{root}: prompt store not built yet (run prepare_data first)")
            t0 = time.perf_counter()

            def write(staging: Path) -> dict[str, Any]:
                extra = _build_into(staging, dataset, tok, spec)
                extra["build_seconds"] = round(time.perf_counter() - t0, 3)
                return extra

            manifest = cls.build_atomically(root, inputs, write)
            _log_build(root, manifest)
        store = cls(root, cls.read_manifest(root, inputs))
        store.verify_files()
        return store

    def expected_rows(self, name: str) -> int | None:
        if name.endswith("_tokens"):
            return self.manifest["counts"][name]
        if name.endswith("_offsets"):
            return self.num_pairs + 1
        return self.num_pairs

    def verify_files(self) -> None:
        super().verify_files()
        for kind in ("prompt", "response"):
            offsets = self.array(f"{kind}_offsets")
            if offsets[0] != 0 or offsets[-1] != len(self.array(f"{kind}_tokens")):
                raise DataError(f"{self.root / (kind + '_offsets.npy')}: corrupt offsets")

    @property
    def num_pairs(self) -> int:
        return int(self.manifest["counts"]["pairs"])

    @property
    def has_aspects(self) -> bool:
        return bool(self.manifest["has_aspects"])

    @property
    def special(self) -> dict[str, Any]:
        return self.manifest["special"]

    @property
    def label_scheme(self) -> str:
        return self.manifest["label_scheme"]

    @property
    def template(self) -> dict[str, Any]:
        """``{"version", "mode", "sha256", "text"}`` of the template the prompts were made with."""
        return self.manifest["template"]

    def prompt_lengths(self) -> np.ndarray:
        return np.diff(self.array("prompt_offsets")).astype(np.int32)

    def response_lengths(self) -> np.ndarray:
        return np.diff(self.array("response_offsets")).astype(np.int32)

    def __repr__(self) -> str:
        return f"PromptStore({str(self.root)!r}, pairs={self.num_pairs}, mode={self.template['mode']!r})"


# -- build ----------------------------------------------------------------------------------


def _tokenize(tokenizer: Any, texts: Sequence[str], offsets: bool = False) -> tuple[list, list]:
    ids: list[list[int]] = []
    maps: list[list[tuple[int, int]]] = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = list(texts[start : start + TOKENIZE_CHUNK])
        enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=offsets)
        ids.extend(enc["input_ids"])
        if offsets:
            maps.extend(enc["offset_mapping"])
    return ids, maps


def _ragged(seqs: Sequence[Sequence[int]], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for s in seqs for t in s), dtype=dtype, count=int(offsets[-1]))
    return flat, offsets


def _token_at(offsets: Sequence[tuple[int, int]], char: int) -> int:
    """Index of the first token whose span reaches past ``char`` (the token holding it)."""
    for index, (_, end) in enumerate(offsets):
        if end > char:
            return index
    return -1


def _build_into(
    out: Path, dataset: CanonicalDataset, tokenizer: Any, spec: PromptSpec
) -> dict[str, Any]:
    scheme = dataset.scheme
    template = spec.template()
    words = dict(spec.label_words) or {label: label.lower() for label in scheme.labels}
    if set(words) != set(scheme.labels):
        raise DataError(f"label words {sorted(words)} do not match scheme labels {scheme.labels}")
    pairs = PairArrays.of(dataset, labelled_only=spec.labelled_only)
    special = special_ids(tokenizer)
    token_dtype = np.dtype(np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.uint32)

    # Texts of the queries and items, cut to their budgets.
    texts = BudgetedTexts.of(
        dataset, tokenizer, spec.item_fields, spec.max_query_tokens, spec.max_item_tokens
    )
    q_text, i_text, item_cols = texts.queries, texts.items, texts.item_columns
    truncated = {**texts.cut, "query_neighbors": 0, "item_neighbors": 0}

    # Behaviour neighbours (never the target pair itself).
    q_nb: list[list[int]] = [[] for _ in range(len(pairs))]
    i_nb: list[list[int]] = [[] for _ in range(len(pairs))]
    neighbor_stats: dict[str, Any] = {}
    if spec.uses_behavior:
        nb = BehaviorNeighbors.from_dataset(
            dataset, spec.min_impressions, spec.min_ctr, spec.eval_queries
        )
        for r in range(len(pairs)):
            q, i = int(pairs.query_row[r]), int(pairs.item_row[r])
            q_nb[r] = nb.query_neighbors(q, exclude_item=i, k=spec.query_neighbors)
            i_nb[r] = nb.item_neighbors(i, exclude_query=q, k=spec.item_neighbors)
        titles = dataset.table("items", ["title"]).column("title").to_pylist()
        used_items = sorted({j for row in q_nb for j in row})
        used_queries = sorted({j for row in i_nb for j in row})
        t_cut, truncated["query_neighbors"] = cut_to_tokens(
            tokenizer, [" ".join(titles[j].split()) for j in used_items], spec.max_neighbor_tokens
        )
        n_cut, truncated["item_neighbors"] = cut_to_tokens(
            tokenizer, [q_text[j] for j in used_queries], spec.max_neighbor_tokens
        )
        title_of = dict(zip(used_items, t_cut, strict=True))
        query_of = dict(zip(used_queries, n_cut, strict=True))
        neighbor_stats = _neighbor_stats(pairs, q_nb, i_nb, nb.num_pairs)
    else:
        title_of, query_of = {}, {}

    prompts = [
        template.prompt(
            q_text[pairs.query_row[r]],
            i_text[pairs.item_row[r]],
            [title_of[j] for j in q_nb[r]],
            [query_of[j] for j in i_nb[r]],
        )
        for r in range(len(pairs))
    ]
    if spec.chat:  # the user's turn of the chat template (checked in store_inputs), which
        # writes its own start token
        prompts = [chat_prompt(tokenizer, p) for p in prompts]
    prompt_ids, _ = _tokenize(tokenizer, prompts)
    if not spec.chat:
        prompt_ids = [special["start_ids"] + ids for ids in prompt_ids]

    responses, slot_chars, cot_stats = _responses(dataset, pairs, template, spec, words)
    response_ids, response_maps = _tokenize(tokenizer, responses, offsets=True)
    slots = np.full((len(pairs), len(COT_SLOTS)), -1, dtype=np.int16)
    for r, (ids, maps, chars) in enumerate(
        zip(response_ids, response_maps, slot_chars, strict=True)
    ):
        for slot, char in chars.items():
            slots[r, COT_SLOTS.index(slot)] = _token_at(maps, char)
        if ids:
            ids.append(special["end_id"])

    p_flat, p_off = _ragged(prompt_ids, token_dtype)
    r_flat, r_off = _ragged(response_ids, token_dtype)
    np.save(out / "prompt_tokens.npy", p_flat)
    np.save(out / "prompt_offsets.npy", p_off)
    np.save(out / "response_tokens.npy", r_flat)
    np.save(out / "response_offsets.npy", r_off)
    np.save(out / "slots.npy", slots)
    pairs.save(out)
    lengths = np.diff(p_off)
    examples = [
        {"pair_id": int(pairs.pair_id[r]), "prompt": prompts[r], "response": responses[r]}
        for r in range(min(2, len(pairs)))
    ]
    return {
        "relkd_version": __version__,
        "label_scheme": scheme.name,
        "label_words": words,
        "template": {
            "version": template.version,
            "mode": template.mode,
            "sha256": template.sha256,
            "text": template.text(),
        },
        "special": special,
        "token_dtype": token_dtype.name,
        "item_columns": item_cols,
        "has_aspects": pairs.aspects is not None,
        "counts": {
            "pairs": len(pairs),
            "prompt_tokens": len(p_flat),
            "response_tokens": len(r_flat),
            "prompt_length_mean": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            "prompt_length_max": int(lengths.max()) if len(lengths) else 0,
        },
        "truncated": truncated,
        "neighbors": neighbor_stats,
        "cot": cot_stats,
        "examples": examples,
    }


def _aspect_values(pairs: PairArrays, row: int) -> dict[str, str | None]:
    if pairs.aspects is None:
        return {}
    return {
        a: (ASPECT_VALUES[c] if c >= 0 else None)
        for a, c in zip(ASPECTS, pairs.aspects[row].tolist(), strict=True)
    }


def _responses(
    dataset: CanonicalDataset,
    pairs: PairArrays,
    template: PromptTemplate,
    spec: PromptSpec,
    words: dict[str, str],
) -> tuple[list[str], list[dict[str, int]], dict[str, Any]]:
    """Response text and slot character offsets per pair, plus CoT statistics."""
    labels = dataset.scheme.labels
    verdicts = [labels[c] if c >= 0 else None for c in pairs.label.tolist()]
    stats: dict[str, Any] = {"source": spec.cot_source if template.has_cot else None}
    if not template.has_cot or spec.cot_source == "rules":
        if template.has_cot and pairs.aspects is None:
            raise DataError(
                f"{dataset.path('pairs')}: no aspect_* columns, so CoT targets cannot be built "
                "from rules; give a CoT file (teacher.cot.source: jsonl, teacher.cot.file)"
            )
        out = [template.response(_aspect_values(pairs, r), verdicts[r]) for r in range(len(pairs))]
        return [t for t, _ in out], [s for _, s in out], stats
    cots = read_cot_jsonl(str(spec.cot_file), pairs.pair_id)
    texts: list[str] = []
    starts: list[dict[str, int]] = []
    missing = unparsed = 0
    for r in range(len(pairs)):
        verdict = verdicts[r]
        cot = cots.get(int(pairs.pair_id[r]))
        if cot is None:
            missing += verdict is not None
            text, slot = template.response({}, verdict)  # the verdict alone
            texts.append(text)
            starts.append(slot)
            continue
        parsed = parse_cot(cot, words, require_verdict=not template.verdict_first)
        unparsed += not parsed.ok
        if template.verdict_first:
            if verdict is None:
                texts.append("")
                starts.append({})
                continue
            head = " " + words[verdict] + ". because "
            texts.append(head + cot)
            slot = {VERDICT: 1}
            slot.update({k: v[0] + len(head) for k, v in parsed.spans.items() if k != VERDICT})
        else:
            texts.append(" " + cot)
            slot = {k: v[0] + 1 for k, v in parsed.spans.items()}
        starts.append(slot)
    stats.update({"file_rows": len(cots), "labelled_without_cot": missing, "unparsed": unparsed})
    return texts, starts, stats


def _neighbor_stats(
    pairs: PairArrays, q_nb: list[list[int]], i_nb: list[list[int]], confident_pairs: int
) -> dict[str, Any]:
    from relkd.data.schema import SPLITS

    qn = np.fromiter((len(x) for x in q_nb), dtype=np.int64, count=len(q_nb))
    inn = np.fromiter((len(x) for x in i_nb), dtype=np.int64, count=len(i_nb))
    out: dict[str, Any] = {"confident_log_pairs": confident_pairs}
    for code, split in enumerate(SPLITS):
        sel = pairs.split == code
        if sel.any():
            out[split] = {
                "pairs_with_query_neighbors": round(float((qn[sel] > 0).mean()), 4),
                "pairs_with_item_neighbors": round(float((inn[sel] > 0).mean()), 4),
                "mean_query_neighbors": round(float(qn[sel].mean()), 3),
                "mean_item_neighbors": round(float(inn[sel].mean()), 3),
            }
    return out


def _log_build(root: Path, manifest: dict[str, Any]) -> None:
    counts, cut = manifest["counts"], manifest["truncated"]
    log.info(
        "built prompt store %s: %d prompts, mean %.1f tokens (max %d) in %.1fs",
        root,
        counts["pairs"],
        counts["prompt_length_mean"],
        counts["prompt_length_max"],
        manifest.get("build_seconds", 0.0),
    )
    spec = manifest.get("inputs", {}).get("spec", {})
    budgets = {
        "query": spec.get("max_query_tokens"),
        "item": spec.get("max_item_tokens"),
        "query_neighbors": spec.get("max_neighbor_tokens"),
        "item_neighbors": spec.get("max_neighbor_tokens"),
    }
    for part, n in cut.items():
        if n:
            log.warning(
                "prompt store %s: %d %s text(s) cut to the %s-token budget (counted in its "
                "manifest under 'truncated')",
                root.name,
                n,
                part.replace("_", " "),
                budgets[part],
            )
