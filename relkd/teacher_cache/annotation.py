"""One teacher judgement record, as the annotation backends produce it and the cache writer stores
it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Annotation:
    """A teacher's judgement of B pairs (numpy, CPU).

    Attributes:
        pair_id: int64 [B].
        logits: float32 [B, K] verdict logits over the label set (the label words' tokens).
        probs: float32 [B, K] the teacher's label distribution (softmax of ``logits``, or the
            fitted aspect aggregator's for a progressive teacher).
        score: float32 [B] expected gain under ``probs`` (or the mean-aggregated score).
        cot: generated chain-of-thought per row, or None for a teacher that writes none.
        aspects: int8 [B, 4] aspect codes (ASPECT_VALUES order, -1 not read).
        verdict: int8 [B] label index the CoT text states (-1: none, or no CoT).
        cot_ok: bool [B] the CoT parsed completely (all False without CoT).
        hidden: float16 [B, H] pooled hidden state, or None.
    """

    pair_id: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    score: np.ndarray
    cot: list[str | None] | None
    aspects: np.ndarray
    verdict: np.ndarray
    cot_ok: np.ndarray
    hidden: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pair_id)

    @classmethod
    def concat(cls, parts: list[Annotation]) -> Annotation:
        """One Annotation of ``parts`` in order (all from the same backend)."""
        if not parts:
            raise ValueError("Annotation.concat: nothing to concatenate")
        cot = None
        if parts[0].cot is not None:
            cot = [t for p in parts for t in (p.cot if p.cot is not None else [None] * len(p))]
        hidden = None
        if parts[0].hidden is not None:
            hidden = np.concatenate([p.hidden for p in parts if p.hidden is not None])
        return cls(
            pair_id=np.concatenate([p.pair_id for p in parts]),
            logits=np.concatenate([p.logits for p in parts]),
            probs=np.concatenate([p.probs for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            cot=cot,
            aspects=np.concatenate([p.aspects for p in parts]),
            verdict=np.concatenate([p.verdict for p in parts]),
            cot_ok=np.concatenate([p.cot_ok for p in parts]),
            hidden=hidden,
        )

    def take(self, idx: np.ndarray) -> Annotation:
        """The rows ``idx``, in that order."""
        return Annotation(
            pair_id=self.pair_id[idx],
            logits=self.logits[idx],
            probs=self.probs[idx],
            score=self.score[idx],
            cot=None if self.cot is None else [self.cot[i] for i in idx.tolist()],
            aspects=self.aspects[idx],
            verdict=self.verdict[idx],
            cot_ok=self.cot_ok[idx],
            hidden=None if self.hidden is None else self.hidden[idx],
        )
