"""The pool-size curve: test NDCG@10 and class accuracy against the pool ratio, mean ± std over
seeds, one line per recipe."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from relkd.report.figures.figure_canvas import new_figure
from relkd.report.pool_curve import POOL_METRICS, PoolSeries


def draw_pool_curves(curves: Sequence[PoolSeries]) -> Figure:
    fig = new_figure(10, 4.2 + 0.2 * len(curves))
    axes = fig.subplots(1, len(POOL_METRICS), squeeze=False)[0]
    for ax, (title, key) in zip(axes, POOL_METRICS, strict=True):
        for series in curves:
            x, mean, std = series.stats(key)
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=4, label=series.label)
        ax.set_xlabel(f"{curves[0].key} (pool pairs per labelled train pair)")
        ax.set_title(f"test {title} (mean ± std over seeds)", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8)
    return fig
