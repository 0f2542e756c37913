"""Reliability diagrams: per run, the accuracy of the predicted class in each confidence bin
against the diagonal of perfect calibration, with the ECE in the legend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from relkd.report.figures.figure_canvas import panel_grid, panel_title, run_colors
from relkd.report.reliability_bins import ReliabilityBins


def draw_calibration(diagrams: Sequence[tuple[str, ReliabilityBins]]) -> Figure:
    """``diagrams``: (run name, its bins); empty bins draw no bar."""
    colors = run_colors([name for name, _ in diagrams])
    fig, axes = panel_grid(len(diagrams), width=3.4, height=3.2)
    for ax, (name, bins) in zip(axes, diagrams, strict=True):
        left, widths = bins.edges[:-1], np.diff(bins.edges)
        filled = bins.count > 0
        ax.bar(
            left[filled],
            bins.accuracy[filled],
            widths[filled],
            align="edge",
            color=colors[name],
            alpha=0.75,
            edgecolor="white",
            label=f"ECE {bins.ece:.4f}",
        )
        ax.plot(bins.confidence[filled], bins.accuracy[filled], "k.", ms=4)
        ax.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (max class prob)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_title(f"{panel_title(name)}\n{int(bins.count.sum())} pairs", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
    return fig
