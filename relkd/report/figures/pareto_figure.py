"""Quality against serving latency: a point per run, the Pareto front joined and highlighted."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from relkd.report.figures.figure_canvas import new_figure


def draw_pareto(
    names: Sequence[str], latency: np.ndarray, quality: np.ndarray, front: np.ndarray
) -> Figure:
    """``latency`` in ms per pair (log scale when it spans more than 10x), ``quality`` test
    NDCG@10, ``front`` the mask from pareto_front."""
    fig = new_figure(8, 5)
    ax = fig.subplots()
    ax.scatter(latency[~front], quality[~front], color="gray", alpha=0.7, label="dominated")
    order = np.argsort(latency[front])
    ax.plot(
        latency[front][order],
        quality[front][order],
        "-o",
        color="tab:red",
        label="Pareto front",
        zorder=3,
    )
    for name, x, y in zip(names, latency, quality, strict=True):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if latency.max() > 10 * latency.min():
        ax.set_xscale("log")
    ax.set_xlabel("serving latency (ms per pair)")
    ax.set_ylabel("test NDCG@10")
    ax.grid(alpha=0.3)
    ax.margins(0.15)  # room for the names beside the outermost points
    ax.legend(loc="best", fontsize=8)
    return fig
