"""``StepTimer``: a Lightning callback shared by the training-throughput benchmarks."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class StepTimer(L.Callback):
    """Times optimiser steps after a warm-up, so start-up and first-call costs are excluded;
    counts the pairs and the (padded) tokens those steps trained on."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.pairs, self.tokens, self.elapsed = warmup, 0.0, 0, 0, 0.0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx >= self.warmup:
            self.pairs += int(batch["labels"].shape[0])
            self.tokens += int(batch["input_ids"].numel())
            self.elapsed = time.perf_counter() - self.start
