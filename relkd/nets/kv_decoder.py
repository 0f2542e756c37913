"""Incremental decoding with a KV cache over a batch of prompts, for any Hugging Face causal LM.

``generate()`` pads on the left and lets the model infer positions; a BERT-family causal LM uses
absolute position embeddings, so left padding would shift them (and its generation rejects
``token_type_ids``). KVDecoder re-pads the right-padded prompts on the left and passes explicit
``position_ids`` (the cumulative sum of the mask), which every HF causal LM accepts. Appended
chunks may contain holes (mask 0): rows can add different numbers of tokens in one step (guided
decoding's options of different lengths) and positions continue from each row's last real token.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def base_model(lm: nn.Module) -> nn.Module:
    """The underlying transformers model of a (possibly peft-wrapped) LM."""
    getter = getattr(lm, "get_base_model", None)
    return getter() if callable(getter) else lm


def forward_params(lm: nn.Module) -> set[str]:
    return set(inspect.signature(base_model(lm).forward).parameters)


def call_lm(
    lm: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    cache: Any = None,
    use_cache: bool = False,
    keep: Any = None,
    params: set[str] | None = None,
) -> tuple[torch.Tensor, Any]:
    """One forward pass; returns (logits, cache). ``keep`` is ``logits_to_keep`` (an int), or a
    bool mask (B, L) giving flattened (N, V) logits. A mask is applied to the hidden states
    right before the output projection (a pre-hook on ``get_output_embeddings()``), which works
    with every transformers release (native 2-D ``logits_to_keep`` masks are recent); models
    without either compute every position and are sliced here, with the same result."""
    params = params if params is not None else forward_params(lm)
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    if use_cache:
        kwargs["use_cache"] = True
        if cache is not None:
            kwargs["cache" if "cache" in params else "past_key_values"] = cache
    handle = None
    if isinstance(keep, torch.Tensor):
        head = base_model(lm).get_output_embeddings()
        if isinstance(head, nn.Module):
            mask = keep

            def select(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
                return (args[0][mask], *args[1:])

            handle = head.register_forward_pre_hook(select)
    native = keep is not None and "logits_to_keep" in params and handle is None
    if native:
        kwargs["logits_to_keep"] = keep
    try:
        out = lm(**kwargs)
    finally:
        if handle is not None:
            handle.remove()
    logits = out.logits
    if keep is not None and not native and handle is None:
        if isinstance(keep, int):
            logits = logits[:, -keep:] if keep else logits
        else:
            logits = logits[keep]
    new_cache = getattr(out, "cache", None)
    if new_cache is None:
        new_cache = getattr(out, "past_key_values", None)
    return logits, new_cache


@dataclass
class GreedyResult:
    tokens: torch.Tensor  # (B, T) generated ids, pad after the end token
    watched_logits: torch.Tensor | None  # (B, K) logits of the watched ids where the prefix fired
    watched: torch.Tensor | None  # (B,) bool: the prefix appeared (else a fallback was used)


class KVDecoder:
    """A batch of prompts being decoded; ``logits`` holds each row's next-token logits.

    Args:
        lm: the causal LM (eval mode, under ``torch.inference_mode`` by the caller).
        input_ids, attention_mask: right-padded prompts (B, L).
        pad_id: id written after a row has ended.
    """

    def __init__(
        self, lm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int
    ) -> None:
        self.lm = lm
        self.pad_id = int(pad_id)
        self.params = forward_params(lm)
        lengths = attention_mask.sum(1)
        width = input_ids.shape[1]
        shift = width - lengths
        cols = torch.arange(width, device=input_ids.device)[None, :]
        idx = (cols - shift[:, None]) % width
        ids = input_ids.gather(1, idx)
        mask = attention_mask.gather(1, idx)
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        logits, self.cache = call_lm(lm, ids, mask, pos, use_cache=True, keep=1, params=self.params)
        self.logits = logits[:, -1].float()
        self.mask = mask
        self.next_pos = lengths.clone()

    def append(self, chunk: torch.Tensor, chunk_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Feed ``chunk`` (B, C); returns the next-token logits after each row's last real token
        (rows with no real token keep their previous logits)."""
        if chunk_mask is None:
            chunk_mask = torch.ones_like(chunk)
        n_real = chunk_mask.sum(1)
        pos = (self.next_pos[:, None] + chunk_mask.cumsum(1) - 1).clamp_min(0)
        mask = torch.cat([self.mask, chunk_mask], dim=1)
        logits, self.cache = call_lm(
            self.lm, chunk, mask, pos, cache=self.cache, use_cache=True, params=self.params
        )
        last = (n_real - 1).clamp_min(0)
        rows = torch.arange(chunk.shape[0], device=chunk.device)
        new = logits[rows, last].float()
        self.logits = torch.where((n_real > 0)[:, None], new, self.logits)
        self.mask = mask
        self.next_pos = self.next_pos + n_real
        return self.logits

    def append_rows(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Append a different token sequence to each row (holes pad the shorter ones)."""
        width = max((len(s) for s in seqs), default=0)
        device = self.mask.device
        chunk = torch.full((len(seqs), max(width, 1)), self.pad_id, dtype=torch.long, device=device)
        cmask = torch.zeros_like(chunk)
        for b, seq in enumerate(seqs):
            if seq:
                chunk[b, : len(seq)] = torch.tensor(list(seq), device=device)
                cmask[b, : len(seq)] = 1
        return self.append(chunk, cmask)

    def pick(
        self,
        logits: torch.Tensor,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Argmax (temperature 0) or a sample from softmax(logits / temperature), per row."""
        if temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    def generate(
        self,
        max_new_tokens: int,
        end_id: int,
        watch_prefix: Sequence[int] = (),
        watch_ids: Sequence[int] = (),
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> GreedyResult:
        """Decode until every row has produced ``end_id`` or the budget is spent: greedy, or
        sampled at ``temperature`` with ``generator``.

        With ``watch_prefix``/``watch_ids`` (a CoT's verdict cue and the label tokens): the first
        time a row's output ends with the prefix, its logits over ``watch_ids`` are recorded and
        its next token is chosen among them, so the verdict is always a label word.
        """
        b = self.logits.shape[0]
        device = self.logits.device
        done = torch.zeros(b, dtype=torch.bool, device=device)
        out: list[torch.Tensor] = []
        prefix = torch.tensor(list(watch_prefix), device=device, dtype=torch.long)
        ids = torch.tensor(list(watch_ids), device=device, dtype=torch.long)
        watched = torch.zeros(b, dtype=torch.bool, device=device) if len(ids) else None
        watched_logits = torch.zeros(b, len(ids), device=device) if len(ids) else None
        for _ in range(max_new_tokens):
            nxt = self.pick(self.logits, temperature, generator)
            if watched is not None and len(prefix) and len(out) >= len(prefix):
                tail = torch.stack(out[-len(prefix) :], dim=1)
                fire = (tail == prefix).all(1) & ~watched & ~done
                if fire.any():
                    restricted = self.logits[:, ids]
                    watched_logits[fire] = restricted[fire]
                    nxt = torch.where(fire, ids[self.pick(restricted, temperature, generator)], nxt)
                    watched |= fire
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            out.append(nxt)
            done |= nxt == end_id
            if bool(done.all()):
                break
            self.append(nxt[:, None], (~done | (nxt == end_id)).long()[:, None])
        tokens = torch.stack(out, dim=1) if out else torch.zeros(b, 0, dtype=torch.long)
        return GreedyResult(tokens=tokens, watched_logits=watched_logits, watched=watched)
