"""Figures on matplotlib's Agg canvas, without pyplot: no global figure state and no display,
so the report renders the same on a headless CI machine, in a worker or inside a notebook."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
PANEL_COLUMNS = 4
# a figure shows at most this many runs (panels or bars); the tables still list every run
MAX_PANELS = 24


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def panel_grid(
    count: int, width: float = 3.4, height: float = 3.0, columns: int = PANEL_COLUMNS
) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels, ``columns`` to a row; unused cells are hidden."""
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    fig = new_figure(width * cols, height * rows)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def panel_title(name: str, width: int = 36) -> str:
    """A run name wrapped to a panel's width (long run folder names overran their neighbours),
    broken after ``/``, ``-`` or a space where it can be."""
    lines, line = [], ""
    for part in re.split(r"(?<=[/\- ])", name):
        while len(part) > width:  # one part longer than a line: cut it
            lines.append(line + part[: width - len(line)])
            part, line = part[width - len(line) :], ""
        if len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join([*lines, line] if line else lines)


def run_colors(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per run, the same in every figure of a report."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path``."""
    fig.savefig(path, format="png", dpi=DPI)
    return path
