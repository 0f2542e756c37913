"""Loss terms (one per file) and the weighted combiner."""

from relkd.losses.hard_label_ce import HardLabelCE
from relkd.losses.registry import LOSS_TERMS, build_loss
from relkd.losses.weighted_loss import LossOutput, WeightedLoss

__all__ = ["LOSS_TERMS", "HardLabelCE", "LossOutput", "WeightedLoss", "build_loss"]
