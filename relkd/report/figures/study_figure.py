"""An Optuna study at a glance: the optimisation history (each trial's value, the best so far,
pruned trials at their last reported value) beside the parameters' importances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from relkd.report.figures.figure_canvas import new_figure


def draw_study(
    complete: Sequence[tuple[int, float]],
    pruned: Sequence[tuple[int, float]],
    best: Sequence[tuple[int, float]],
    importances: Mapping[str, float],
    metric: str,
) -> Figure:
    """``complete``/``pruned``: (trial number, value); ``best``: the best-so-far steps;
    ``importances``: parameter -> share (empty: that panel says why not)."""
    fig = new_figure(11, 4)
    history, bars = fig.subplots(1, 2, width_ratios=[3, 2])
    if complete:
        history.scatter(*zip(*complete, strict=True), color="tab:blue", label="complete")
    if pruned:
        history.scatter(
            *zip(*pruned, strict=True), color="gray", marker="x", label="pruned (last value)"
        )
    if best:
        history.step(*zip(*best, strict=True), where="post", color="tab:red", label="best so far")
    history.set_xlabel("trial")
    history.set_ylabel(metric)
    history.set_title("optimisation history", fontsize=10)
    history.grid(alpha=0.3)
    history.legend(loc="best", fontsize=8)
    if importances:
        names = list(importances)[::-1]  # the most important on top
        bars.barh(names, [importances[n] for n in names], color="tab:green")
        bars.set_xlabel("importance (fANOVA share of the variance)")
        bars.tick_params(axis="y", labelsize=8)
    else:
        bars.text(0.5, 0.5, "too few complete trials", ha="center", va="center")
        bars.set_axis_off()
    bars.set_title("parameter importances", fontsize=10)
    return fig
