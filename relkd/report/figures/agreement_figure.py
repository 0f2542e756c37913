"""Teacher–student agreement: a confusion matrix per run, teacher class down, student across."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from relkd.report.figures.figure_canvas import panel_grid, panel_title
from relkd.report.teacher_agreement import Agreement


def draw_agreement(agreements: Sequence[Agreement]) -> Figure:
    """Counts in each cell, shaded by the share of the teacher's class (row-normalised), so
    a diagonal means the student picks the class the teacher picked."""
    fig, axes = panel_grid(len(agreements), width=3.6, height=3.4)
    for ax, agr in zip(axes, agreements, strict=True):
        m = agr.matrix
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        k = len(agr.labels)
        for t in range(k):
            for s in range(k):
                ax.text(
                    s,
                    t,
                    str(m[t, s]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[t, s] > 0.6 else "black",
                )
        ticks = [label[:5] for label in agr.labels]
        ax.set_xticks(range(k), ticks, fontsize=8)
        ax.set_yticks(range(k), ticks, fontsize=8)
        ax.set_xlabel("student argmax", fontsize=8)
        ax.set_ylabel("teacher argmax", fontsize=8)
        title = f"{panel_title(agr.run)}\n{agr.pairs} pairs, {agr.rate:.1%} agree"
        ax.set_title(title, fontsize=8)
    return fig
