"""The quality-against-latency Pareto front: the runs no other run beats on both counts."""

from __future__ import annotations

import numpy as np


def pareto_front(latency: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Bool mask of the points on the front: no other point is at least as fast and at least
    as good, and strictly better on one (lower latency and higher quality are better); equal
    points are both on it. Quadratic, which is nothing for a report's runs."""
    lat = np.asarray(latency, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    no_worse = (lat[:, None] <= lat[None, :]) & (q[:, None] >= q[None, :])
    better = (lat[:, None] < lat[None, :]) | (q[:, None] > q[None, :])
    return ~(no_worse & better).any(axis=0)  # [j, i]: does point j dominate point i
