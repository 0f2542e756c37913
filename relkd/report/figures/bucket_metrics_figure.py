"""Test quality per popularity bucket: grouped bars, one per run, for NDCG@10 and class accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from relkd.metrics.relevance_metrics import NDCG_KEY
from relkd.pipeline.comparison_table import GROUPS, metric
from relkd.report.figures.figure_canvas import new_figure, run_colors
from relkd.report.run_record import RunRecord

PANELS: tuple[tuple[str, str], ...] = (("NDCG@10", NDCG_KEY), ("class accuracy", "class_accuracy"))


def draw_bucket_metrics(runs: Sequence[RunRecord]) -> Figure:
    """Two panels (NDCG@10, class accuracy) of overall/head/torso/tail bars, a bar per run;
    a missing number (an empty bucket) is a gap."""
    colors = run_colors([r.name for r in runs])
    fig = new_figure(11, 4.2 + 0.22 * len(runs))
    axes = fig.subplots(1, len(PANELS), squeeze=False)[0]
    x = np.arange(len(GROUPS))
    width = 0.8 / max(len(runs), 1)
    for ax, (title, key) in zip(axes, PANELS, strict=True):
        for i, run in enumerate(runs):
            values = [metric(run.split(), g, key) for g in GROUPS]
            heights = [np.nan if v is None else v for v in values]
            ax.bar(
                x - 0.4 + width * (i + 0.5), heights, width, label=run.name, color=colors[run.name]
            )
        ax.set_xticks(x, list(GROUPS))
        ax.set_ylim(0, 1)
        ax.set_title(f"test {title}")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(runs)), fontsize=8)
    return fig
