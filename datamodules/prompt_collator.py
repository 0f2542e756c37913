"""Causal-LM batches for the teacher, assembled from the prompt store with numpy.

Rows are padded on the **right**: a BERT-family causal LM uses absolute position embeddings, so
left padding would shift every position (decoding re-pads on the left with explicit position
ids, see relkd/nets/kv_decoder.py). Keys:

- ``input_ids``, ``attention_mask`` (B, L) int64: start token + prompt (+ response when
  ``with_response``), padded with the pad id.
- ``prompt_len`` (B,) int64: tokens before the response; ``input_ids[b, prompt_len[b] - 1]`` is
  the last prompt token, whose next-token logits answer a verdict-first prompt.
- ``response_mask`` (B, L) bool: True on response tokens (the targets of the CoT LM loss).
- ``slot_index`` (B, 5) int64: absolute position of each slot value's first token
  (category, brand, model, attributes, verdict; -1 absent). Its logits are read one position
  earlier. Without the response only the verdict slot of verdict-first modes is set (at
  ``prompt_len``: the token the model is asked to produce).
- ``labels``, ``pair_id``, ``query_index``, ``item_index``, ``bucket`` (B,) int64 and
  ``aspects`` (B, 4) int64 (ground-truth aspect codes, -1 missing) when the dataset has them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datamodules.pair_collator import PairCollator, _gather
from datamodules.prompt_store import PromptStore
from relkd.prompts.cot_template import COT_SLOTS, VERDICT

VERDICT_SLOT = COT_SLOTS.index(VERDICT)


class PromptCollator:
    """Callable turning prompt-store rows into a right-padded causal-LM batch.

    Args:
        store: the prompt store.
        with_response: append the response (training); False gives prompts only (inference).
        pad_to_multiple_of: round the batch width up to a multiple of this.
    """

    def __init__(
        self, store: PromptStore, *, with_response: bool, pad_to_multiple_of: int | None = None
    ) -> None:
        self.store = store
        self.with_response = with_response
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_id = int(store.special["pad_id"])
        mode = store.template["mode"]
        self.verdict_first = mode in ("classifier", "multitask")
        # a classifier's response is its verdict token alone: its logits are read at the last
        # prompt token, so the token itself is never fed in
        self.feed_response = with_response and mode != "classifier"

    def __call__(self, batch: Any) -> dict[str, Any]:
        rows = PairCollator._as_rows(batch)
        s = self.store
        po, ro = s.view("prompt_offsets"), s.view("response_offsets")
        p_start = np.asarray(po[rows], np.int64)
        p_len = np.asarray(po[rows + 1], np.int64) - p_start
        r_start = np.asarray(ro[rows], np.int64)
        r_len = (
            (np.asarray(ro[rows + 1], np.int64) - r_start)
            if self.feed_response
            else np.zeros_like(p_len)
        )
        lengths = p_len + r_len
        b = len(rows)
        w = int(lengths.max()) if b else 0
        if self.pad_to_multiple_of:
            w = -(-w // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = np.full((b, w), self.pad_id, dtype=np.int64)
        r, p, v = _gather(s.view("prompt_tokens"), p_start, p_len)
        ids[r, p] = v
        if self.feed_response:
            r, p, v = _gather(s.view("response_tokens"), r_start, r_len)
            ids[r, p_len[r] + p] = v
        cols = np.arange(w)[None, :]
        mask = cols < lengths[:, None]
        response_mask = mask & (cols >= p_len[:, None])
        slots = np.asarray(s.view("slots")[rows], np.int64)
        slot_index = np.full_like(slots, -1)
        if self.feed_response:
            slot_index = np.where(slots >= 0, slots + p_len[:, None], -1)
        elif self.verdict_first:
            slot_index[:, VERDICT_SLOT] = p_len
        out: dict[str, Any] = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "prompt_len": torch.from_numpy(p_len),
            "response_mask": torch.from_numpy(response_mask),
            "slot_index": torch.from_numpy(slot_index),
            "labels": torch.from_numpy(s.view("label")[rows].astype(np.int64)),
            "pair_id": torch.from_numpy(s.view("pair_id")[rows].astype(np.int64)),
            "query_index": torch.from_numpy(s.view("query_row")[rows].astype(np.int64)),
            "item_index": torch.from_numpy(s.view("item_row")[rows].astype(np.int64)),
            "bucket": torch.from_numpy(s.view("bucket")[rows].astype(np.int64)),
        }
        if s.has_aspects:
            out["aspects"] = torch.from_numpy(s.view("aspects")[rows].astype(np.int64))
        if s.has_array("label_dist"):
            out["label_dist"] = torch.from_numpy(s.view("label_dist")[rows].astype(np.float32))
        return out
