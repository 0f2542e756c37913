"""Calibration of the predicted class: the top-class probability (confidence) against how often
that class is the label, in equal-width confidence bins, and the expected calibration error
with the metrics' binning (relkd.metrics.relevance_metrics.ECE_BINS, L1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relkd.metrics.relevance_metrics import ECE_BINS


@dataclass(frozen=True)
class ReliabilityBins:
    edges: np.ndarray  # [B + 1] from 0 to 1
    confidence: np.ndarray  # [B] mean confidence per bin (NaN when empty)
    accuracy: np.ndarray  # [B] share of correct top classes per bin (NaN when empty)
    count: np.ndarray  # [B] pairs per bin

    @property
    def ece(self) -> float:
        """sum over bins of |confidence - accuracy| weighted by the bin's share of pairs."""
        filled = self.count > 0
        gaps = np.abs(self.confidence[filled] - self.accuracy[filled])
        return float((gaps * self.count[filled]).sum() / max(self.count.sum(), 1))


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS
) -> ReliabilityBins:
    """Bins of ``probs`` ([N, K] class probabilities) by top-class confidence; bin ``b`` holds
    confidences in ``[edges[b], edges[b + 1])`` as torchmetrics bins them (1.0 joins the last)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    return ReliabilityBins(edges, conf, acc, count)
