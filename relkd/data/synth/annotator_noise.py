"""Annotator noise: real judges disagree, mostly between neighbouring grades.

A flipped label moves to grade j != k with probability proportional to 1 / |j - k|**2, so
Exact <-> Substitute confusions are common and Exact <-> Irrelevant ones rare.
"""

from __future__ import annotations

import numpy as np


def flip_matrix(num_labels: int) -> np.ndarray:
    """Row k: where a flipped label k goes (zero on the diagonal, rows sum to 1)."""
    idx = np.arange(num_labels)
    dist = np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
    weights = np.where(dist > 0, 1.0 / np.maximum(dist, 1.0) ** 2, 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def apply_annotator_noise(
    clean: np.ndarray, num_labels: int, rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Flip each label with probability ``rate`` to a different, usually adjacent, grade."""
    noisy = clean.copy()
    if rate <= 0 or num_labels < 2 or len(clean) == 0:
        return noisy
    flip = rng.random(len(clean)) < rate
    cum = np.cumsum(flip_matrix(num_labels), axis=1)
    u = rng.random(len(clean))
    for k in range(num_labels):
        rows = np.flatnonzero(flip & (clean == k))
        noisy[rows] = np.minimum(
            np.searchsorted(cum[k], u[rows], side="right"), num_labels - 1
        ).astype(clean.dtype)
    return noisy
