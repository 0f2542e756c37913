"""The teacher: a causal LM whose relevance judgement is read from its own LM head.

Training (teacher forcing, one forward pass over prompt + response) returns, computing LM-head
logits only at the positions that are read (``logits_to_keep``; full-vocabulary logits
everywhere would double the step time):

- ``logits`` (B, K): next-token logits of the label words at the verdict slot (the verbalizer);
- ``aspect_logits`` (B, 4, 3): logits of the aspect words (match, mismatch, not stated) at each
  aspect slot of a CoT response, with ``aspect_mask`` (B, 4) where the slot exists;
- ``lm_logits`` (N, V) and ``lm_targets`` (N,): full-vocabulary logits predicting each response
  token (the CoT SFT loss), only when asked for.

Inference (``predict``) follows the mode: one forward pass for verdict-first prompts (the
batch's shared prompt prefix run once, relkd/nets/shared_prefix.py), greedy
KV-cached generation for ``cot`` (the verdict read where the CoT reaches its verdict cue), and
guided step-by-step decoding for ``progressive`` (each aspect answer a choice among its options,
seeing the earlier answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import ConfigError
from relkd.nets.kv_decoder import KVDecoder, call_lm, forward_params
from relkd.nets.shared_prefix import shared_prefix_logits
from relkd.prompts.cot_template import ASPECT_WORDS, COT_SLOTS, VERDICT
from relkd.prompts.prompt_template import PromptTemplate
from relkd.prompts.verbalizer import first_token

VERDICT_SLOT = COT_SLOTS.index(VERDICT)
NUM_ASPECTS = len(ASPECTS)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class TeacherTokens:
    """Token ids the teacher reads and writes, resolved once from the tokenizer and template.

    ``scaffolds[s]`` are the tokens before slot ``s`` in a CoT response and ``tail`` the tokens
    after the verdict (guided decoding appends them); ``verdict_cue`` is what precedes the verdict
    word in a CoT (greedy decoding watches for it).
    """

    verdict_ids: list[int]
    verdict_seqs: list[list[int]]
    option_ids: list[int]
    option_seqs: list[list[int]]
    scaffolds: list[list[int]] = field(default_factory=list)
    tail: list[int] = field(default_factory=list)
    verdict_cue: list[int] = field(default_factory=list)
    end_id: int = 0
    pad_id: int = 0

    @classmethod
    def of(
        cls, tokenizer: Any, template: PromptTemplate, end_id: int, pad_id: int
    ) -> TeacherTokens:
        words = [template.cot.label_words[label] for label in template.cot.label_words]
        lead = template.verdict_prefix  # "" for the first word of a chat reply
        verdict_ids = [first_token(tokenizer, w, lead) for w in words]
        option_words = [ASPECT_WORDS[v] for v in ASPECT_VALUES]
        option_ids = [first_token(tokenizer, w) for w in option_words]
        for name, ids, ws in (("label", verdict_ids, words), ("aspect", option_ids, option_words)):
            if len(set(ids)) != len(ids):
                raise ConfigError(
                    f"teacher: the {name} words {ws} share a first token under this tokenizer; "
                    "choose words whose first tokens differ (teacher.label_words)"
                )
        scaffolds, tail, cue = [], [], []
        if template.has_cot and not template.verdict_first:
            scaffolds, tail = _segments(tokenizer, template)
            cue = _ids(tokenizer, " " + VERDICT + ":")
            if cue != scaffolds[VERDICT_SLOT][-len(cue) :]:
                cue = scaffolds[VERDICT_SLOT]
        return cls(
            verdict_ids=verdict_ids,
            verdict_seqs=[_ids(tokenizer, lead + w) for w in words],
            option_ids=option_ids,
            option_seqs=[_ids(tokenizer, " " + w) for w in option_words],
            scaffolds=scaffolds,
            tail=tail,
            verdict_cue=cue,
            end_id=int(end_id),
            pad_id=int(pad_id),
        )


def _segments(tokenizer: Any, template: PromptTemplate) -> tuple[list[list[int]], list[int]]:
    """Split the CoT response into fixed scaffolds and slot values, tokenized separately, and
    check that gluing the pieces gives the tokenization of the whole (it does for WordPiece and
    byte-level BPE, whose pieces break at spaces and punctuation)."""
    labels = list(template.cot.label_words)
    scaffolds: list[list[int]] = []
    tail: list[int] = []
    checks = [
        ({a: ASPECT_VALUES[(j + n) % 3] for j, a in enumerate(ASPECTS)}, labels[n % len(labels)])
        for n in range(max(3, len(labels)))
    ]
    for n, (aspects, verdict) in enumerate(checks):
        text, starts = template.response(aspects, verdict)
        pieces: list[list[int]] = []
        glued: list[int] = []
        prev = 0
        for slot in COT_SLOTS:
            begin = starts[slot] - 1  # the value's leading space
            word = (
                ASPECT_WORDS[aspects[slot]]
                if slot != VERDICT
                else template.cot.label_words[verdict]
            )
            scaffold = _ids(tokenizer, text[prev:begin])
            value = _ids(tokenizer, text[begin : starts[slot] + len(word)])
            pieces.append(scaffold)
            glued += scaffold + value
            prev = starts[slot] + len(word)
        rest = _ids(tokenizer, text[prev:])
        glued += rest
        if glued != _ids(tokenizer, text):
            raise ConfigError(
                "teacher.mode progressive/cot: this tokenizer does not split the CoT at its slot "
                "boundaries, so guided decoding would feed tokens the model never saw in "
                "training; use mode multitask or classifier with this model"
            )
        if n == 0:
            scaffolds, tail = pieces, rest
        elif pieces != scaffolds:
            raise ConfigError("teacher: CoT scaffolds tokenize differently for different values")
    return scaffolds, tail


@dataclass
class Prediction:
    """What the teacher predicts for a batch (CPU tensors, plus generated text when asked)."""

    logits: torch.Tensor  # (B, K) verdict logits over the label words
    aspect_logits: torch.Tensor | None = None  # (B, 4, 3) progressive: per-step option logits
    generated: list[list[int]] | None = None  # token ids of generated CoT per row
    verdict_found: torch.Tensor | None = None  # (B,) bool: the CoT reached its verdict cue


class CausalLMTeacher(nn.Module):
    """A causal LM (peft-wrapped or not) with the verbalizer and CoT slot readers.

    Args:
        lm: the Hugging Face causal LM (possibly a PeftModel).
        tokens: TeacherTokens for its tokenizer and template.
        mode: classifier | cot | multitask | progressive.
        max_new_tokens: generation budget of a CoT.
    """

    input_keys = ("input_ids", "attention_mask", "slot_index", "response_mask")

    def __init__(self, lm: nn.Module, tokens: TeacherTokens, mode: str, max_new_tokens: int = 48):
        super().__init__()
        self.lm = lm
        self.tokens = tokens
        self.mode = mode
        self.max_new_tokens = int(max_new_tokens)
        self.need_lm = False  # set by the module when a CoT LM term is active
        self.share_prefix = True  # inference: run a batch's common prompt prefix once
        self.register_buffer("verdict_ids", torch.tensor(tokens.verdict_ids), persistent=False)
        self.register_buffer("option_ids", torch.tensor(tokens.option_ids), persistent=False)
        self._params: set[str] | None = None
        self.train()  # from_pretrained returns eval mode; Lightning keeps the modes it finds

    @property
    def lm_params(self) -> set[str]:
        if self._params is None:
            self._params = forward_params(self.lm)
        return self._params

    # -- training ------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        slot_index: torch.Tensor,
        response_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        b, width = input_ids.shape
        device = input_ids.device
        read = torch.zeros(b, width, dtype=torch.bool, device=device)
        has_slot = slot_index > 0
        rows, which = has_slot.nonzero(as_tuple=True)
        read[rows, slot_index[rows, which] - 1] = True
        lm_pos = None
        if self.need_lm and response_mask is not None:
            lm_pos = torch.zeros_like(read)
            lm_pos[:, :-1] = response_mask[:, 1:]
            read |= lm_pos
        logits, _ = call_lm(self.lm, input_ids, attention_mask, keep=read, params=self.lm_params)
        logits = logits.float()  # (N, V), rows in read's row-major order
        flat = torch.cumsum(read.reshape(-1).long(), 0) - 1

        def at(positions: torch.Tensor) -> torch.Tensor:  # (B,) absolute read positions
            return logits[flat[torch.arange(b, device=device) * width + positions]]

        out: dict[str, torch.Tensor] = {}
        v_slot = slot_index[:, VERDICT_SLOT]
        v_ok = v_slot > 0
        out["logits"] = (
            torch.where(v_ok[:, None], at((v_slot - 1).clamp_min(0))[:, self.verdict_ids], 0.0)
            if bool(v_ok.any())
            else torch.zeros(b, len(self.tokens.verdict_ids), device=device)
        )
        out["verdict_mask"] = v_ok
        if self.mode in ("cot", "multitask", "progressive"):
            a_ok = has_slot[:, :NUM_ASPECTS]
            aspect = torch.zeros(b, NUM_ASPECTS, len(self.tokens.option_ids), device=device)
            for a in range(NUM_ASPECTS):
                if bool(a_ok[:, a].any()):
                    sel = at((slot_index[:, a] - 1).clamp_min(0))[:, self.option_ids]
                    aspect[:, a] = torch.where(a_ok[:, a, None], sel, 0.0)
            out["aspect_logits"] = aspect
            out["aspect_mask"] = a_ok
        if lm_pos is not None:
            out["lm_logits"] = logits[flat[lm_pos.reshape(-1)]]
            targets = torch.zeros_like(input_ids)
            targets[:, :-1] = input_ids[:, 1:]
            out["lm_targets"] = targets[lm_pos]
        return out

    # -- inference -----------------------------------------------------------------------

    def decode(self, tokenizer: Any, ids: list[int]) -> str:
        """Generated ids as text: cut at the end token, whitespace normalised (a WordPiece
        decode spaces punctuation, which parse_cot tolerates)."""
        end = self.tokens.end_id
        if end in ids:
            ids = ids[: ids.index(end)]
        if tokenizer is None:
            return " ".join(map(str, ids))
        return " ".join(tokenizer.decode(ids, skip_special_tokens=True).split())

    def _verdict_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, slot_index: torch.Tensor
    ) -> torch.Tensor:
        """(B, K) label-word logits at the verdict slot of prompt-only rows: the shared prefix
        run once when it pays (shared_prefix.py), else the plain forward pass."""
        slot = slot_index[:, VERDICT_SLOT]
        if self.share_prefix and bool((slot > 0).all()):
            shared = shared_prefix_logits(self.lm, ids, mask, slot - 1, self.lm_params)
            if shared is not None:
                return shared.float()[:, self.verdict_ids]
        return self.forward(ids, mask, slot_index)["logits"]

    @torch.inference_mode()
    def predict(self, batch: dict[str, Any], explain: bool = False) -> Prediction:
        """The mode's inference on a prompt-only batch (see the module docstring). ``explain``
        also generates the CoT explanation of a multitask verdict."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        t = self.tokens
        if self.mode in ("classifier", "multitask"):
            if self.mode == "classifier" or not explain:
                return Prediction(logits=self._verdict_logits(ids, mask, batch["slot_index"]))
            dec = KVDecoder(self.lm, ids, mask, t.pad_id)
            logits = dec.logits[:, self.verdict_ids]
            choice = logits.argmax(-1)
            heads = [t.verdict_seqs[c] for c in choice.tolist()]
            dec.append_rows(heads)
            res = dec.generate(self.max_new_tokens, t.end_id)
            text = [h + g for h, g in zip(heads, res.tokens.tolist(), strict=True)]
            return Prediction(logits=logits, generated=text)
        dec = KVDecoder(self.lm, ids, mask, t.pad_id)
        if self.mode == "cot":
            res = dec.generate(self.max_new_tokens, t.end_id, t.verdict_cue, t.verdict_ids)
            assert res.watched is not None and res.watched_logits is not None
            logits = res.watched_logits
            if not bool(res.watched.all()):  # the CoT never reached its verdict cue: ask for it
                missing = ~res.watched
                cue = [t.verdict_cue if m else [] for m in missing.tolist()]
                forced = dec.append_rows(cue)[:, self.verdict_ids]
                logits = torch.where(missing[:, None], forced, logits)
            return Prediction(
                logits=logits, generated=res.tokens.tolist(), verdict_found=res.watched
            )
        # progressive: one step per aspect, then the verdict
        aspect = torch.zeros(ids.shape[0], NUM_ASPECTS, len(t.option_ids), device=ids.device)
        generated: list[list[int]] = [[] for _ in range(ids.shape[0])]
        for a in range(NUM_ASPECTS):
            logits = dec.append_rows([t.scaffolds[a]] * ids.shape[0])[:, self.option_ids]
            aspect[:, a] = logits
            chosen = [t.option_seqs[c] for c in logits.argmax(-1).tolist()]
            dec.append_rows(chosen)
            for row, seq in zip(generated, chosen, strict=True):
                row.extend(t.scaffolds[a] + seq)
        verdict = dec.append_rows([t.scaffolds[VERDICT_SLOT]] * ids.shape[0])[:, self.verdict_ids]
        for row, c in zip(generated, verdict.argmax(-1).tolist(), strict=True):
            row.extend(t.scaffolds[VERDICT_SLOT] + t.verdict_seqs[c] + t.tail)
        return Prediction(logits=verdict, aspect_logits=aspect, generated=generated)
