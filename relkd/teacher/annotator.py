"""The interface every teacher inference backend implements, and the rows it returns.

``relkd teacher annotate`` owns the pair selection, sharding, the resumable cache and the
progress bar; a backend only turns prompt-store rows into :class:`Annotation` rows. Adding an
inference engine (vLLM, TensorRT-LLM, a remote endpoint) is a new Annotator subclass registered
in ``BACKENDS``; the cache and the CLI stay untouched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from relkd.data.label_scheme import LabelScheme
from relkd.data.schema import ASPECTS
from relkd.teacher_cache.annotation import Annotation
from relkd.teacher_cache.aspect_aggregator import AspectAggregator, mean_score, step_features


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
