"""Score a batch of prompts that start alike by running their shared prefix once.

An instruct teacher's prompts open with the same tokens: the chat template's system turn and the
instruction, about half of SmolLM2's 160-token prompts. A verdict-first teacher reads one
position per prompt, so in inference (frozen weights) the prefix's keys and values are the same
for every row. ``shared_prefix_logits`` runs the longest prefix that all rows of the batch share
once, on one row, repeats its KV cache over the batch, and runs only each row's remainder
against it: the prompts stay right-padded, the remainder's positions continue from the prefix,
and the result equals the full batched forward (tested to 1e-4). The prefix is found per batch,
so nothing is cached between batches and any prompt format works; a batch whose rows share
fewer than ``min_prefix`` tokens, or a model whose cache cannot be repeated over a batch, takes
the plain forward pass (``None``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from relkd.nets.kv_decoder import call_lm

MIN_PREFIX = 8  # a shorter common start (a plain template's "query:") saves too little to bother


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """The number of leading tokens that every row of a right-padded batch has, real and equal."""
    same = (input_ids == input_ids[:1]) & attention_mask.bool()
    differs = (~same.all(0)).nonzero()
    return int(differs[0, 0]) if len(differs) else int(input_ids.shape[1])


def repeat_cache(cache: Any, n: int) -> Any | None:
    """A one-row KV cache repeated over ``n`` rows, or None if this cache type cannot be."""
    repeat = getattr(cache, "batch_repeat_interleave", None)
    if not callable(repeat):
        return None
    repeat(n)
    return cache


def shared_prefix_logits(
    lm: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    read: torch.Tensor,
    params: set[str],
    min_prefix: int = MIN_PREFIX,
) -> torch.Tensor | None:
    """Next-token logits (B, V) at each row's position ``read`` (B,), computed with the batch's
    shared prefix run once; None where that does not pay or this model cannot (the caller then
    runs the plain forward pass). Inference only: the prefix's cache is built without grad."""
    b, width = input_ids.shape
    # every read position must lie after the prefix, so each row keeps at least one token
    prefix = min(shared_prefix_length(input_ids, attention_mask), int(read.min()))
    if b < 2 or prefix < min_prefix or torch.is_grad_enabled():
        return None
    _, cache = call_lm(
        lm,
        input_ids[:1, :prefix],
        attention_mask[:1, :prefix],
        torch.arange(prefix, device=input_ids.device)[None, :],
        use_cache=True,
        keep=1,
        params=params,
    )
    cache = repeat_cache(cache, b)
    if cache is None:
        return None
    positions = torch.arange(prefix, width, device=input_ids.device)[None, :].expand(b, -1)
    keep = torch.zeros(b, width - prefix, dtype=torch.bool, device=input_ids.device)
    keep[torch.arange(b, device=input_ids.device), read - prefix] = True
    logits, _ = call_lm(
        lm,
        input_ids[:, prefix:],
        attention_mask,
        positions,
        cache=cache,
        use_cache=True,
        keep=keep,
        params=params,
    )
    return logits  # (B, V): one read position per row, in row order
