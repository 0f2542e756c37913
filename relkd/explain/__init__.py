"""``relkd explain``: one query-item pair through a trained student (label probabilities, ranking
score, CoT-aspect heads) beside its teacher's CoT and verdict (docs/explain.md)."""

from relkd.explain.explain_cli import explain_from_args
from relkd.explain.explanation import (
    AspectOutput,
    ExplainedPair,
    LabelDistribution,
    PairExplanation,
    StudentView,
    TeacherView,
)
from relkd.explain.pair_explainer import PairExplainer
from relkd.explain.render import render_explanation

__all__ = [
    "AspectOutput",
    "ExplainedPair",
    "LabelDistribution",
    "PairExplainer",
    "PairExplanation",
    "StudentView",
    "TeacherView",
    "explain_from_args",
    "render_explanation",
]
