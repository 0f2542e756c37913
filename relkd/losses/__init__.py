"""Loss terms (one per file) and the weighted combiner."""

from relkd.losses.aspect_ce import AspectCE
from relkd.losses.cot_aspects import CotAspects
from relkd.losses.cot_token_ce import CotTokenCE
from relkd.losses.graded_bce import GradedBCE
from relkd.losses.hard_label_ce import HardLabelCE
from relkd.losses.hidden_mse import HiddenMSE
from relkd.losses.registry import (
    AUXILIARY_TERMS,
    LABEL_TERMS,
    LOSS_TERMS,
    TEACHER_ONLY_TERMS,
    build_loss,
    effective_weights,
)
from relkd.losses.soft_target_ce import SoftTargetCE
from relkd.losses.weight_schedule import WeightSchedule
from relkd.losses.weighted_loss import LossOutput, WeightedLoss

__all__ = [
    "AUXILIARY_TERMS",
    "LABEL_TERMS",
    "LOSS_TERMS",
    "TEACHER_ONLY_TERMS",
    "AspectCE",
    "CotAspects",
    "CotTokenCE",
    "GradedBCE",
    "HardLabelCE",
    "HiddenMSE",
    "LossOutput",
    "SoftTargetCE",
    "WeightSchedule",
    "WeightedLoss",
    "build_loss",
    "effective_weights",
]
