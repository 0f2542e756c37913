"""Training loss curves: one panel per logged term (the weighted total first), a line per run."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from relkd.report.figures.figure_canvas import panel_grid, run_colors
from relkd.report.tensorboard_scalars import ScalarCurve


def loss_terms(curves: Mapping[str, Mapping[str, ScalarCurve]]) -> list[str]:
    """Every term any run logged, ``total`` first, then by name."""
    terms = {t for run in curves.values() for t in run}
    return sorted(terms, key=lambda t: (t != "total", t))


def draw_loss_curves(curves: Mapping[str, Mapping[str, ScalarCurve]]) -> Figure:
    """``curves``: run name -> term -> curve (see tensorboard_scalars.loss_curves)."""
    terms = loss_terms(curves)
    colors = run_colors(list(curves))
    fig, axes = panel_grid(len(terms), width=3.8, height=2.9, columns=3)
    for ax, term in zip(axes, terms, strict=True):
        for name, run in curves.items():
            if term in run:
                ax.plot(run[term].steps, run[term].values, lw=1.2, color=colors[name], label=name)
        ax.set_title("train/loss" if term == "total" else f"train/loss/{term}", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8)
    return fig
