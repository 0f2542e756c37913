"""Zipf-shaped popularity: a few values (brands, colours, queries) dominate, most are rare."""

from __future__ import annotations

import numpy as np


def zipf_probs(n: int, exponent: float = 1.0) -> np.ndarray:
    """Probabilities proportional to 1 / rank**exponent for ranks 1..n."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def draw_zipf(
    rng: np.random.Generator, n_values: np.ndarray | int, size: int, exponent: float = 1.0
) -> np.ndarray:
    """Zipf-distributed indices in [0, n_values) – ``n_values`` may differ per draw.

    Uses the continuous inverse CDF of 1/x**s on [1, n+1) so that draws with different
    ``n_values`` stay vectorised; close enough to the discrete law for popularity skew.
    """
    n = np.broadcast_to(np.asarray(n_values, dtype=np.float64), (size,))
    u = rng.random(size)
    if exponent == 1.0:
        x = np.exp(u * np.log(n + 1.0))
    else:
        a = 1.0 - exponent
        x = (1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a)
    return np.minimum(np.floor(x).astype(np.int64) - 1, n.astype(np.int64) - 1)
