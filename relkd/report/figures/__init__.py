"""The report's matplotlib figures, one module per kind; each ``draw_*`` returns a Figure on an
Agg canvas (no pyplot, no display needed) and :func:`save_figure` writes it as PNG."""

from relkd.report.figures.agreement_figure import draw_agreement
from relkd.report.figures.bucket_metrics_figure import draw_bucket_metrics
from relkd.report.figures.calibration_figure import draw_calibration
from relkd.report.figures.figure_canvas import save_figure
from relkd.report.figures.loss_curves_figure import draw_loss_curves
from relkd.report.figures.pareto_figure import draw_pareto
from relkd.report.figures.pool_curve_figure import draw_pool_curves
from relkd.report.figures.study_figure import draw_study

__all__ = [
    "draw_agreement",
    "draw_bucket_metrics",
    "draw_calibration",
    "draw_loss_curves",
    "draw_pareto",
    "draw_pool_curves",
    "draw_study",
    "save_figure",
]
