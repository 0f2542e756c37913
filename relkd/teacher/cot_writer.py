"""``relkd teacher write-cot``: ask a (larger) LLM for CoT targets, with self-consistency.

ELLM-rele's first step: a big LLM writes the chain of thought for each labelled pair; k samples
are drawn, the majority verdict wins, and one sample that parses completely and reaches that
verdict is kept as the pair's CoT. The result is the JSONL that ``teacher.cot.source: jsonl``
reads, so a user can make CoT targets for ESCI on a GPU and fine-tune a small teacher on them.

Decoding: ``free`` samples text and parses it (what a big instruction-tuned LLM needs);
``guided`` samples only the answer at each slot of the CoT format (the scaffold is fixed), so
even a small or untuned model always yields a parsable CoT.

Output rows: ``pair_id``, ``cot``, ``verdict`` (the majority label), ``agreement`` (share of
parsed samples with that verdict), ``parsed`` (samples that parsed), ``samples`` (k) and
``label`` (the human label, for filtering). A sidecar ``<out>.manifest.json`` records the model,
the writer template's hash, the settings and the counts, including the pairs that got no
parsable sample (left out of the JSONL).
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from datamodules.prompt_store import special_ids
from relkd.artifacts.atomic_files import atomic_write, atomic_write_json
from relkd.artifacts.identity import sha256_hex
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.pair_arrays import PairArrays
from relkd.data.schema import ASPECTS, SPLITS
from relkd.errors import ConfigError, DataError
from relkd.nets.causal_lm_presets import CausalLMSpec, resolve_causal_lm
from relkd.nets.causal_lm_teacher import TeacherTokens
from relkd.nets.kv_decoder import KVDecoder
from relkd.nets.tokenizer_info import load_tokenizer
from relkd.prompts import CotTemplate, PromptTemplate, parse_cot
from relkd.prompts.budgeted_texts import BudgetedTexts
from relkd.prompts.cot_template import COT_SLOTS, VERDICT
from relkd.prompts.prompt_template import chat_prompt

log = logging.getLogger(__name__)
WRITER_VERSION = "write-cot-v2"
ITEM_FIELDS = ("title", "brand", "color", "product_type", "attributes", "description")


@dataclass(frozen=True)
class WriterSettings:
    samples: int = 5
    temperature: float = 0.7
    max_new_tokens: int = 64
    batch_size: int = 8
    decoding: str = "free"  # free | guided
    seed: int = 0
    max_query_tokens: int = 32
    max_item_tokens: int = 160


def writer_prompt(template: PromptTemplate, tokenizer: Any, query: str, item: str) -> str:
    """The instruction and the pair: the user's turn of the chat template for a chat template,
    else the instruction, the pair and a new line (a base LM continues with the CoT)."""
    if template.chat:
        return chat_prompt(tokenizer, template.prompt(query, item))
    body = template.prompt(query, item).rsplit("\n", 1)[0]  # without the answer cue
    return template.instruction() + "\n" + body + "\n"


def load_writer_model(
    model: str, cache_dir: str | Path, trust_remote_code: bool
) -> tuple[Any, Any, CausalLMSpec]:
    """The LM and tokenizer of ``--model``: a teacher preset (``smollm2-135m-instruct``, ...), a
    ``.gguf`` file, or any HF causal LM id or path, resolved as ``teacher.model`` is."""
    teacher = SimpleNamespace(
        model=model,
        trust_remote_code=trust_remote_code,
        revision=None,
        tiny=SimpleNamespace(hidden_size=64, layers=2, heads=2),
    )
    try:
        spec = resolve_causal_lm(teacher, None, cache_dir)
        lm, _ = spec.build()
        tokenizer = load_tokenizer(spec.tokenizer)
    except ConfigError as exc:
        raise ConfigError(f"--model {model!r}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {model!r}: cannot load a causal LM ({exc})") from None
    return lm, tokenizer, spec


def majority(parsed: Sequence[Any]) -> tuple[str | None, int]:
    """The most frequent verdict among fully parsed samples (ties: the one seen first) and the
    index of the first such sample; (None, -1) when no sample parsed."""
    counts = collections.Counter(p.verdict for p in parsed if p.ok)
    if not counts:
        return None, -1
    best = max(counts.values())
    winner = next(p.verdict for p in parsed if p.ok and counts[p.verdict] == best)
    return winner, next(i for i, p in enumerate(parsed) if p.ok and p.verdict == winner)


def write_cot(
    model: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    splits: Sequence[str] = ("train",),
    limit: int | None = None,
    settings: WriterSettings = WriterSettings(),
    device: str = "auto",
    trust_remote_code: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path = "data_cache/tokenized",
) -> dict[str, Any]:
    """Write CoT targets for the labelled pairs of ``splits``; returns the summary counts,
    with the parse rate and, where the dataset has aspect facts (the synthetic catalogue's
    answer key), each aspect's accuracy over the kept CoTs. ``cache_dir`` holds converted
    GGUF models."""

    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: already exists; pass --overwrite to replace it")
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise ConfigError(f"--splits: unknown split(s) {bad}; known {list(SPLITS)}")
    if settings.samples < 1:
        raise ConfigError("--samples must be >= 1")
    if settings.decoding not in ("free", "guided"):
        raise ConfigError("--decoding must be free or guided")
    dataset = CanonicalDataset(data_dir)
    scheme = dataset.scheme
    words = {label: label.lower() for label in scheme.labels}
    pairs = PairArrays.of(dataset, labelled_only=True)
    keep = np.isin(pairs.split, [SPLITS.index(s) for s in splits])
    rows = np.flatnonzero(keep)
    if limit is not None and limit < len(rows):
        # a seeded sample over every query of the splits, not the first queries in file order:
        # the parse rate and the aspect accuracies are estimates of the whole split
        pick = np.random.default_rng(settings.seed).choice(len(rows), size=limit, replace=False)
        rows = rows[np.sort(pick)]

    lm, tokenizer, spec = load_writer_model(model, cache_dir, trust_remote_code)
    dev = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )
    lm = lm.to(dev).eval()
    ids = special_ids(tokenizer)
    chat = bool(getattr(tokenizer, "chat_template", None))
    template = PromptTemplate("cot", CotTemplate(words), chat=chat)
    tokens = (
        TeacherTokens.of(tokenizer, template, ids["end_id"], ids["pad_id"])
        if (settings.decoding == "guided")
        else None
    )

    texts = BudgetedTexts.of(
        dataset, tokenizer, ITEM_FIELDS, settings.max_query_tokens, settings.max_item_tokens
    )
    q_text, i_text = texts.queries, texts.items
    generator = torch.Generator(device=dev).manual_seed(settings.seed)

    results: list[dict[str, Any]] = []
    counts = {
        "pairs": len(rows),
        "samples": 0,
        "samples_parsed": 0,
        "written": 0,
        "unparsed_pairs": 0,
        "agrees_with_label": 0,
    }
    # aspect answers of the kept CoTs against the dataset's aspect facts (where known)
    aspect_right = np.zeros(len(ASPECTS), dtype=np.int64)
    aspect_known = np.zeros(len(ASPECTS), dtype=np.int64)
    k = settings.samples
    for start in range(0, len(rows), settings.batch_size):
        chunk = rows[start : start + settings.batch_size]
        texts = [
            writer_prompt(
                template, tokenizer, q_text[pairs.query_row[r]], i_text[pairs.item_row[r]]
            )
            for r in chunk
            for _ in range(k)
        ]
        start_ids = [] if chat else ids["start_ids"]  # a chat template writes its own
        enc = [start_ids + tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        width = max(len(e) for e in enc)
        input_ids = torch.full((len(enc), width), ids["pad_id"], dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for b, e in enumerate(enc):
            input_ids[b, : len(e)] = torch.tensor(e)
            mask[b, : len(e)] = 1
        with torch.inference_mode():
            samples = _sample(
                lm, input_ids.to(dev), mask.to(dev), tokenizer, tokens, ids, settings, generator
            )
        for j, r in enumerate(chunk):
            mine = samples[j * k : (j + 1) * k]
            parsed = [parse_cot(s, words) for s in mine]
            verdict, index = majority(parsed)
            counts["samples"] += k
            counts["samples_parsed"] += sum(p.ok for p in parsed)
            if verdict is None:
                counts["unparsed_pairs"] += 1
                continue
            label = scheme.labels[pairs.label[r]]
            n_ok = sum(p.ok for p in parsed)
            results.append(
                {
                    "pair_id": int(pairs.pair_id[r]),
                    "cot": mine[index],
                    "verdict": verdict,
                    "agreement": round(
                        sum(p.ok and p.verdict == verdict for p in parsed) / n_ok, 4
                    ),
                    "parsed": n_ok,
                    "samples": k,
                    "label": label,
                }
            )
            counts["agrees_with_label"] += verdict == label
            if pairs.aspects is not None:
                truth = pairs.aspects[r].astype(np.int64)
                known = truth >= 0
                aspect_known += known
                aspect_right += known & (np.array(parsed[index].aspect_codes()) == truth)
        log.info("write-cot: %d / %d pairs", min(start + settings.batch_size, len(rows)), len(rows))
    counts["written"] = len(results)
    counts["parse_rate"] = round(counts["samples_parsed"] / max(counts["samples"], 1), 4)
    counts["verdict_accuracy"] = round(counts["agrees_with_label"] / max(len(results), 1), 4)
    counts["aspect_accuracy"] = {
        a: (round(float(aspect_right[i] / aspect_known[i]), 4) if aspect_known[i] else None)
        for i, a in enumerate(ASPECTS)
    }
    manifest = {
        "kind": "cot_targets",
        "writer": WRITER_VERSION,
        "instruction_sha256": sha256_hex(template.instruction()),
        "chat": chat,
        "cot_format": template.cot.text(),
        "model": model,
        "model_path": spec.pretrained,
        "gguf_sha256": spec.gguf_sha256,
        "dataset": {
            "name": dataset.manifest.name,
            "tables": {t: e.sha256 for t, e in dataset.manifest.tables.items()},
        },
        "splits": list(splits),
        "settings": settings.__dict__,
        "counts": counts,
    }

    def write_rows(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in results:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    atomic_write(out, write_rows)
    atomic_write_json(out.with_name(out.name + ".manifest.json"), manifest)
    return counts


def _sample(
    lm: Any,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    tokenizer: Any,
    tokens: TeacherTokens | None,
    ids: dict[str, Any],
    settings: WriterSettings,
    generator: torch.Generator,
) -> list[str]:
    dec = KVDecoder(lm, input_ids, mask, ids["pad_id"])
    if tokens is None:  # free text
        res = dec.generate(
            settings.max_new_tokens,
            ids["end_id"],
            temperature=settings.temperature,
            generator=generator,
        )
        out = []
        for row in res.tokens.tolist():
            if ids["end_id"] in row:
                row = row[: row.index(ids["end_id"])]
            out.append(" ".join(tokenizer.decode(row, skip_special_tokens=True).split()))
        return out
    # guided: the scaffold is fixed, each slot's answer is sampled among its options
    n = input_ids.shape[0]
    generated: list[list[int]] = [[] for _ in range(n)]
    option_ids = torch.tensor(tokens.option_ids, device=input_ids.device)
    verdict_ids = torch.tensor(tokens.verdict_ids, device=input_ids.device)
    for slot_index, slot in enumerate(COT_SLOTS):
        logits = dec.append_rows([tokens.scaffolds[slot_index]] * n)
        choices = option_ids if slot != VERDICT else verdict_ids
        pick = dec.pick(logits[:, choices], settings.temperature, generator).tolist()
        seqs = tokens.option_seqs if slot != VERDICT else tokens.verdict_seqs
        chosen = [seqs[c] for c in pick]
        if slot != VERDICT:
            dec.append_rows(chosen)
        for row, seq in zip(generated, chosen, strict=True):
            row.extend(tokens.scaffolds[slot_index] + seq)
    return [
        " ".join(tokenizer.decode(row + tokens.tail, skip_special_tokens=True).split())
        for row in generated
    ]


def write_cot_from_args(args: Any) -> dict[str, Any]:
    settings = WriterSettings(
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        decoding=args.decoding,
        seed=args.seed,
    )
    counts = write_cot(
        args.model,
        args.data,
        args.out,
        splits=[s.strip() for s in args.splits.split(",") if s.strip()],
        limit=args.limit,
        settings=settings,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
        cache_dir=args.cache_dir,
    )
    aspects = ", ".join(
        f"{a} {v:.1%}" for a, v in counts["aspect_accuracy"].items() if v is not None
    )
    print(
        f"wrote {args.out}: {counts['written']} of {counts['pairs']} pairs "
        f"({counts['unparsed_pairs']} with no parsable sample left out); "
        f"{counts['parse_rate']:.1%} of {counts['samples']} samples parsed; majority verdict = "
        f"human label for {counts['agrees_with_label']} pairs"
        + (f"; aspect accuracy of the kept CoTs: {aspects}" if aspects else "")
    )
    return counts
