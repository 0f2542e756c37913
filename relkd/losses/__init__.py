"""Loss terms (one per file) and the weighted combiner."""

from relkd.losses.aspect_ce import AspectCE
from relkd.losses.cot_token_ce import CotTokenCE
from relkd.losses.graded_bce import GradedBCE
from relkd.losses.hard_label_ce import HardLabelCE
from relkd.losses.registry import LOSS_TERMS, TEACHER_ONLY_TERMS, build_loss
from relkd.losses.soft_target_ce import SoftTargetCE
from relkd.losses.weighted_loss import LossOutput, WeightedLoss

__all__ = [
    "LOSS_TERMS",
    "TEACHER_ONLY_TERMS",
    "AspectCE",
    "CotTokenCE",
    "GradedBCE",
    "HardLabelCE",
    "LossOutput",
    "SoftTargetCE",
    "WeightedLoss",
    "build_loss",
]
