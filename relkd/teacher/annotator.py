"""The interface every teacher inference backend implements, and the rows it returns.

``relkd teacher annotate`` owns the pair selection, sharding, the resumable cache and the
progress bar; a backend only turns prompt-store rows into :class:`Annotation` rows. Adding an
inference engine (vLLM, TensorRT-LLM, a remote endpoint) is a new Annotator subclass registered
in ``BACKENDS``; the cache and the CLI stay untouched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from relkd.data.label_scheme import LabelScheme
from relkd.data.schema import ASPECTS
from relkd.teacher.aspect_aggregator import AspectAggregator, mean_score, step_features


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


def teacher_distribution(
    logits: np.ndarray,
    aspect_logits: np.ndarray | None,
    scheme: LabelScheme,
    aggregation: str,
    aggregator: AspectAggregator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs, score)`` as the trained teacher reports them: the verdict's softmax, rescored
    by the progressive aggregation it was trained with (``mean`` or a ``fitted`` aggregator)."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    if aspect_logits is not None and aggregation == "fitted" and aggregator is not None:
        probs = aggregator.proba(step_features(logits, aspect_logits))
    score = scheme.expected_score(probs)
    if aspect_logits is not None and aggregation == "mean":
        score = mean_score(probs, aspect_logits, scheme.gain_array())
    return probs.astype(np.float32), score.astype(np.float32)


def empty_aspects(n: int) -> np.ndarray:
    return np.full((n, len(ASPECTS)), -1, dtype=np.int8)


class Annotator(ABC):
    """A teacher inference backend over one prompt store.

    ``identity()`` and ``settings()`` go into the cache fingerprint: two runs whose values differ
    could produce different rows and must not share a cache. ``annotate(rows)`` judges the
    prompt-store rows given (any order; the backend batches them as it likes) and returns them in
    the order given.
    """

    name: ClassVar[str] = "annotator"

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """The teacher: base model, adapter hash, template, tokenizer, labels."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Decode settings (mode, token budget, precision, pooling, ...)."""

    @abstractmethod
    def annotate(self, rows: np.ndarray) -> Annotation:
        """Annotations of prompt-store ``rows``, in that order."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights before the timed work starts (backends may also load lazily)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release devices and workers."""
