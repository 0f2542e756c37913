"""Assemble model inputs for a batch of pair rows from the tokenized store, with numpy only.

Cross mode (``encoding="cross"``): ``[CLS] query [SEP] item [SEP]`` with ``token_type_ids`` 0 over
``[CLS] query [SEP]`` and 1 over ``item [SEP]``, truncated to ``max_length`` and padded on the
right to the longest row of the batch (dynamic padding). Bi mode (``encoding="bi"``): the query
and the item are encoded apart as ``[CLS] text [SEP]``, each padded to its own longest row.

Slot layout (``layout="slots"``, cross only; the robust interaction model's dynamic-length
representation): the query and the item each own a FIXED slot of a ``max_length``-wide row::

    column  0   1 .. Q         Q+1    Q+2 .. Q+T+1   Q+T+2
            CLS query (+pad)   SEP    item (+pad)    SEP

with Q = the store's ``max_query_tokens`` and T = ``max_length - 3 - Q`` (a ConfigError when
T < 1); each side is left-aligned in its slot and cut to it, and its padding stays inside the
slot, so the two [SEP]s sit at fixed columns. ``position_ids`` are the columns of this full row.
``prune_padding=True`` drops every column that is padding in every row of the batch (the
batch is ``3 + longest query + longest item`` wide, the [SEP]s always stay); the kept tokens
keep their full-row ``position_ids``, so a model sees the same positions pruned or not and
gives the same logits. ``prune_padding=False`` keeps the full ``max_length`` width.
``pad_to_multiple_of`` then appends mask-0 columns (pad id, position 0, types 0). Slots ignore
``truncation``: each side is cut to its own slot.

Professional terms (``term_ids``): cross batches also carry ``term_type_ids``, 1 on tokens that
are added professional terms, 0 elsewhere (specials and padding included), in both layouts.

Every batch also carries labels, pair_id, query_index, item_index, bucket, the dataset's
ground-truth aspects when it has them, and the teacher fields when a teacher cache is attached.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from datamodules.graph_features import GraphFeatures
from datamodules.sequence_features import SequenceFeatures
from datamodules.tokenized_store import TokenizedStore
from relkd.errors import ConfigError
from relkd.teacher_cache.teacher_cache import TeacherCache

Encoding = Literal["cross", "bi"]
Truncation = Literal["query_first", "longest_first"]
Layout = Literal["packed", "slots"]


def _segments(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-row segment lengths ``keep``: (row of each token, position within its segment)."""
    rows = np.repeat(np.arange(len(keep)), keep)
    starts = np.cumsum(keep) - keep
    within = np.arange(int(keep.sum()), dtype=np.int64) - np.repeat(starts, keep)
    return rows, within


def _gather(tokens: np.ndarray, starts: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    rows, within = _segments(keep)
    values = tokens[np.repeat(starts, keep) + within] if len(rows) else np.zeros(0, np.int64)
    return rows, within, values


def truncate_pair(
    q_len: np.ndarray, i_len: np.ndarray, budget: int, strategy: Truncation
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens kept from query and item so that ``q + i <= budget``.

    ``query_first`` keeps the whole query (already capped at ``max_query_tokens`` in the store)
    and gives the item what is left; ``longest_first`` trims the longer side first, like Hugging
    Face's strategy of that name (an even split when both are long, the query taking the odd token).
    """
    if strategy == "query_first":
        qk = np.minimum(q_len, budget)
    elif strategy == "longest_first":
        qk = np.minimum(q_len, np.maximum(budget - i_len, (budget + 1) // 2))
    else:
        raise ValueError(f"truncation must be 'query_first' or 'longest_first', got {strategy!r}")
    ik = np.minimum(i_len, budget - qk)
    return qk, ik


def slot_widths(max_length: int, max_query_tokens: int) -> tuple[int, int]:
    """(Q, T): the query and item slot widths of the slot layout; a one-line ConfigError when
    ``max_length`` leaves the item no slot (T = max_length - 3 - Q < 1)."""
    q = int(max_query_tokens)
    t = int(max_length) - 3 - q
    if t < 1:
        raise ConfigError(
            f"data.layout slots: max_length {max_length} - 3 specials - max_query_tokens {q} "
            f"leaves an item slot of {t} tokens; raise data.max_length or lower "
            "data.max_query_tokens"
        )
    return q, t


class PairCollator:
    """Callable turning store pair rows into a dict of tensors (the DataLoader's collate_fn).

    Args:
        store: the tokenized store.
        encoding: ``cross`` or ``bi``.
        max_length: cross: total length incl. 3 special tokens; bi: cap on each side incl. 2.
        truncation: how a cross pair over ``max_length`` is cut (see ``truncate_pair``).
        token_type_ids: emit ``token_type_ids`` in cross mode; None = when the tokenizer has them.
        pad_to_multiple_of: round the batch width up to a multiple of this (e.g. 8 for tensor cores).
        teacher: an attached teacher cache, with ``teacher_rows`` (cache row per store pair row,
            -1 missing, from ``TeacherCache.align``).
        with_cot: also return ``teacher_cot`` (list of str, "" where missing); strings are slow.
        with_hidden: also return ``teacher_hidden`` (float16 [B, H] from ``teacher.hidden``,
            0 where missing).
        layout: ``packed`` (``[CLS] q [SEP] item [SEP]`` then padding) or ``slots`` (fixed
            query and item slots with ``position_ids``; cross only; see the module docstring).
        prune_padding: slots: drop the columns that are padding in every row of the batch.
        term_ids: token ids of the professional terms; cross batches then carry
            ``term_type_ids`` (1 on those tokens).
        graph: click-graph features added to every batch.
        sequences: user-history fields added to every batch; a batch given as
            ``{"rows", "events"}`` (EventPairDataset) takes each row's history at its event.
    """

    def __init__(
        self,
        store: TokenizedStore,
        *,
        encoding: Encoding = "cross",
        max_length: int = 128,
        truncation: Truncation = "query_first",
        token_type_ids: bool | None = None,
        pad_to_multiple_of: int | None = None,
        teacher: TeacherCache | None = None,
        teacher_rows: np.ndarray | None = None,
        with_cot: bool = False,
        with_hidden: bool = False,
        layout: str = "packed",
        prune_padding: bool = True,
        term_ids: np.ndarray | None = None,
        graph: GraphFeatures | None = None,
        sequences: SequenceFeatures | None = None,
    ) -> None:
        if encoding not in ("cross", "bi"):
            raise ValueError(f"encoding must be 'cross' or 'bi', got {encoding!r}")
        if max_length < (3 if encoding == "cross" else 2) + 1:
            raise ValueError(f"max_length {max_length} leaves no room for text")
        truncate_pair(np.zeros(1, np.int64), np.zeros(1, np.int64), 1, truncation)  # validate
        if (teacher is None) != (teacher_rows is None):
            raise ValueError("teacher and teacher_rows go together")
        if (with_cot or with_hidden) and teacher is None:
            raise ValueError("with_cot and with_hidden need a teacher cache")
        self.store = store
        self.encoding = encoding
        self.max_length = int(max_length)
        self.truncation = truncation
        special = store.special
        self.cls_id = int(special["cls_id"])
        self.sep_id = int(special["sep_id"])
        self.pad_id = int(special["pad_id"])
        self.token_type_ids = (
            bool(special["has_token_types"]) if token_type_ids is None else token_type_ids
        )
        self.pad_to_multiple_of = pad_to_multiple_of
        self.teacher = teacher
        self.teacher_rows = (
            None if teacher_rows is None else np.asarray(teacher_rows, dtype=np.int32)
        )
        self.with_cot = with_cot
        self.with_hidden = with_hidden
        if layout not in ("packed", "slots"):
            raise ValueError(f"layout must be 'packed' or 'slots', got {layout!r}")
        if layout == "slots" and encoding != "cross":
            raise ValueError("layout 'slots' lays out cross pairs")
        self.layout = layout
        self.prune_padding = prune_padding
        self.query_slot = self.item_slot = 0
        if layout == "slots":
            self.query_slot, self.item_slot = slot_widths(
                self.max_length, int(store.manifest["inputs"]["max_query_tokens"])
            )
        self.term_ids = None if term_ids is None else np.asarray(term_ids, dtype=np.int64)
        self._is_term: np.ndarray | None = None
        if self.term_ids is not None:
            size = max(int(special["vocab_size"]), int(self.term_ids.max(initial=-1)) + 1)
            self._is_term = np.zeros(size, dtype=bool)
            self._is_term[self.term_ids] = True
        self.graph = graph
        self.sequences = sequences

    # -- entry point ---------------------------------------------------------------------

    def __call__(self, batch: Any) -> dict[str, Any]:
        events = None
        if isinstance(batch, dict):
            rows, events = self._as_rows(batch["rows"]), self._as_rows(batch["events"])
        else:
            rows = self._as_rows(batch)
        s = self.store
        q_row = np.asarray(s.view("query_row")[rows], dtype=np.int64)
        i_row = np.asarray(s.view("item_row")[rows], dtype=np.int64)
        out: dict[str, Any] = {}
        if self.encoding == "cross" and self.layout == "slots":
            out.update(self._slots(q_row, i_row))
        elif self.encoding == "cross":
            out.update(self._cross(q_row, i_row))
        else:
            out.update(self._bi(q_row, i_row))
        out["labels"] = torch.from_numpy(s.view("label")[rows].astype(np.int64))
        out["pair_id"] = torch.from_numpy(s.view("pair_id")[rows].astype(np.int64))
        out["query_index"] = torch.from_numpy(q_row)
        out["item_index"] = torch.from_numpy(i_row)
        out["bucket"] = torch.from_numpy(s.view("bucket")[rows].astype(np.int64))
        if s.has_aspects:
            out["aspects"] = torch.from_numpy(s.view("aspects")[rows].astype(np.int64))
        if s.has_array("label_dist"):
            out["label_dist"] = torch.from_numpy(s.view("label_dist")[rows].astype(np.float32))
        if self.teacher is not None:
            out.update(self._teacher(rows))
        if self.graph is not None:
            out.update(self.graph(q_row, i_row))
        if self.sequences is not None:
            out.update(self.sequences(q_row, i_row, rows, events))
        elif events is not None:
            raise ValueError("a batch of log events needs the sequence features")
        return out

    @staticmethod
    def _as_rows(batch: Any) -> np.ndarray:
        if isinstance(batch, np.ndarray):
            return batch.astype(np.int64, copy=False).reshape(-1)
        if isinstance(batch, (list, tuple)) and batch and not np.isscalar(batch[0]):
            return np.concatenate([np.atleast_1d(np.asarray(b, np.int64)) for b in batch])
        return np.asarray(batch, dtype=np.int64).reshape(-1)

    def _width(self, lengths: np.ndarray) -> int:
        width = int(lengths.max()) if len(lengths) else 0
        m = self.pad_to_multiple_of
        if m:
            width = -(-width // m) * m
        return width

    # -- cross-encoder -------------------------------------------------------------------

    def _cross(self, q_row: np.ndarray, i_row: np.ndarray) -> dict[str, torch.Tensor]:
        s = self.store
        qo, io = s.view("query_offsets"), s.view("item_offsets")
        q_start = np.asarray(qo[q_row], np.int64)
        q_len = np.asarray(qo[q_row + 1], np.int64) - q_start
        i_start = np.asarray(io[i_row], np.int64)
        i_len = np.asarray(io[i_row + 1], np.int64) - i_start
        qk, ik = truncate_pair(q_len, i_len, self.max_length - 3, self.truncation)
        lengths = qk + ik + 3
        b, w = len(q_row), self._width(lengths)
        ids = np.full((b, w), self.pad_id, dtype=np.int64)
        ar = np.arange(b)
        ids[:, 0] = self.cls_id
        r, p, v = _gather(s.view("query_tokens"), q_start, qk)
        ids[r, 1 + p] = v
        ids[ar, 1 + qk] = self.sep_id
        r, p, v = _gather(s.view("item_tokens"), i_start, ik)
        ids[r, 2 + qk[r] + p] = v
        ids[ar, 2 + qk + ik] = self.sep_id
        cols = np.arange(w)[None, :]
        mask = cols < lengths[:, None]
        out = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        }
        if self.token_type_ids:
            types = (cols >= (2 + qk)[:, None]) & mask
            out["token_type_ids"] = torch.from_numpy(types.astype(np.int64))
        if self._is_term is not None:
            out["term_type_ids"] = torch.from_numpy(self._term_types(ids, mask))
        return out

    def _term_types(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        assert self._is_term is not None
        return (self._is_term[ids] & (mask != 0)).astype(np.int64)

    def _slots(self, q_row: np.ndarray, i_row: np.ndarray) -> dict[str, torch.Tensor]:
        """Query and item in fixed slots (see the module docstring); built directly at the
        pruned width when ``prune_padding``: columns 1..mq of the query slot and mi of the item
        slot, where mq/mi are the batch's longest query/item (every other slot column is
        padding in every row), each keeping its full-row position."""
        s = self.store
        big_q, big_t = self.query_slot, self.item_slot
        qo, io = s.view("query_offsets"), s.view("item_offsets")
        q_start = np.asarray(qo[q_row], np.int64)
        qk = np.minimum(np.asarray(qo[q_row + 1], np.int64) - q_start, big_q)
        i_start = np.asarray(io[i_row], np.int64)
        ik = np.minimum(np.asarray(io[i_row + 1], np.int64) - i_start, big_t)
        b = len(q_row)
        if self.prune_padding:
            mq = int(qk.max()) if b else 0
            mi = int(ik.max()) if b else 0
        else:
            mq, mi = big_q, big_t
        sep1, item0, sep2 = mq + 1, mq + 2, mq + mi + 2
        w = mq + mi + 3
        positions = np.concatenate(
            [
                np.arange(mq + 1),  # CLS, query slot
                [big_q + 1],  # SEP
                np.arange(big_q + 2, big_q + 2 + mi),  # item slot
                [big_q + big_t + 2],  # SEP
            ]
        ).astype(np.int64)
        ids = np.full((b, w), self.pad_id, dtype=np.int64)
        ids[:, 0] = self.cls_id
        ids[:, sep1] = self.sep_id
        ids[:, sep2] = self.sep_id
        r, p, v = _gather(s.view("query_tokens"), q_start, qk)
        ids[r, 1 + p] = v
        r, p, v = _gather(s.view("item_tokens"), i_start, ik)
        ids[r, item0 + p] = v
        cols = np.arange(w)[None, :]
        mask = (
            (cols <= qk[:, None])  # CLS and the query tokens
            | (cols == sep1)
            | ((cols >= item0) & (cols < (item0 + ik)[:, None]))
            | (cols == sep2)
        )
        types = (cols >= item0) & mask
        terms = self._term_types(ids, mask) if self._is_term is not None else None
        width = self._width(np.array([w]))
        if width > w:  # pad_to_multiple_of: mask-0 columns at position 0
            extra = width - w
            ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=self.pad_id)
            mask = np.pad(mask, ((0, 0), (0, extra)))
            types = np.pad(types, ((0, 0), (0, extra)))
            positions = np.pad(positions, (0, extra))
            if terms is not None:
                terms = np.pad(terms, ((0, 0), (0, extra)))
        out = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "position_ids": torch.from_numpy(np.repeat(positions[None, :], len(ids), axis=0)),
        }
        if self.token_type_ids:
            out["token_type_ids"] = torch.from_numpy(types.astype(np.int64))
        if terms is not None:
            out["term_type_ids"] = torch.from_numpy(terms)
        return out

    # -- bi-encoder ----------------------------------------------------------------------

    def _single(self, tokens: np.ndarray, offsets: np.ndarray, row: np.ndarray) -> tuple:
        start = np.asarray(offsets[row], np.int64)
        keep = np.minimum(np.asarray(offsets[row + 1], np.int64) - start, self.max_length - 2)
        lengths = keep + 2
        b, w = len(row), self._width(lengths)
        ids = np.full((b, w), self.pad_id, dtype=np.int64)
        ids[:, 0] = self.cls_id
        r, p, v = _gather(tokens, start, keep)
        ids[r, 1 + p] = v
        ids[np.arange(b), 1 + keep] = self.sep_id
        mask = (np.arange(w)[None, :] < lengths[:, None]).astype(np.int64)
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def _bi(self, q_row: np.ndarray, i_row: np.ndarray) -> dict[str, torch.Tensor]:
        s = self.store
        q_ids, q_mask = self._single(s.view("query_tokens"), s.view("query_offsets"), q_row)
        i_ids, i_mask = self._single(s.view("item_tokens"), s.view("item_offsets"), i_row)
        return {
            "query_input_ids": q_ids,
            "query_attention_mask": q_mask,
            "item_input_ids": i_ids,
            "item_attention_mask": i_mask,
        }

    # -- teacher -------------------------------------------------------------------------

    def _teacher(self, rows: np.ndarray) -> dict[str, Any]:
        t = self.teacher
        assert t is not None and self.teacher_rows is not None
        trow = self.teacher_rows[rows].astype(np.int64)
        mask = trow >= 0
        b, k = len(rows), t.num_labels
        if len(t) == 0:
            logits = np.zeros((b, k), np.float32)
            score = np.zeros(b, np.float32)
            aspects = np.full((b, 4), -1, np.int64)
        else:
            safe = np.where(mask, trow, 0)
            logits = np.where(mask[:, None], t.logits[safe], 0.0).astype(np.float32)
            score = np.where(mask, t.score[safe], 0.0).astype(np.float32)
            aspects = np.where(mask[:, None], t.aspect_codes[safe], -1).astype(np.int64)
        out: dict[str, Any] = {
            "teacher_logits": torch.from_numpy(logits),
            "teacher_score": torch.from_numpy(score),
            "teacher_mask": torch.from_numpy(mask),
            "teacher_aspects": torch.from_numpy(aspects),
        }
        if self.with_hidden:
            hidden = t.hidden
            h = np.zeros((b, hidden.shape[1]), np.float16)
            h[mask] = hidden[trow[mask]]
            out["teacher_hidden"] = torch.from_numpy(h)
        if self.with_cot:
            out["teacher_cot"] = [c or "" for c in t.cot(trow)]
        return out
