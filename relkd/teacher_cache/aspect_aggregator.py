"""Progressive aggregation (ProRBP): combine the aspect steps' answers with the verdict.

Two aggregations besides the bare verdict:

- ``mean``: the relevance score is the mean of the step scores: per aspect step
  1 - P(mismatch), and the verdict's expected gain (scaled to [0, 1]); class probabilities stay
  the verdict's.
- ``fitted``: a multinomial logistic regression from the steps' log-probabilities (4 aspects x 3
  values, plus the verdict's K) to the labels, fitted on the val split; its class probabilities
  replace the verdict's and the score is their expected gain.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MISMATCH = 1  # index of "mismatch" in relkd.data.schema.ASPECT_VALUES


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def step_features(verdict_logits: np.ndarray, aspect_logits: np.ndarray) -> np.ndarray:
    """(N, K + A*V) log-probabilities of the verdict and of every aspect step."""
    n = len(verdict_logits)
    return np.concatenate(
        [_log_softmax(verdict_logits), _log_softmax(aspect_logits).reshape(n, -1)], axis=1
    ).astype(np.float64)


def mean_score(
    verdict_probs: np.ndarray, aspect_logits: np.ndarray, gains: np.ndarray
) -> np.ndarray:
    """Mean of the aspect steps' 1 - P(mismatch) and the verdict's scaled expected gain."""
    aspect = 1.0 - np.exp(_log_softmax(aspect_logits))[..., MISMATCH]  # (N, A)
    verdict = verdict_probs @ gains / max(float(gains.max()), 1e-12)
    return np.concatenate([aspect, verdict[:, None]], axis=1).mean(axis=1)


class AspectAggregator:
    """Multinomial logistic regression over ``step_features``; ``fit`` on val, then ``proba``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray):
        self.weight = np.asarray(weight, np.float64)  # (F, K)
        self.bias = np.asarray(bias, np.float64)  # (K,)
        self.mean = np.asarray(mean, np.float64)  # (F,) feature standardisation
        self.std = np.asarray(std, np.float64)

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, num_labels: int, l2: float = 1e-3
    ) -> AspectAggregator:
        """L2-regularised maximum likelihood with L-BFGS (deterministic). Runs with gradients
        on even when called from Lightning's test loop (which runs under inference mode)."""
        with torch.inference_mode(False), torch.enable_grad():
            return cls._fit(features, labels, num_labels, l2)

    @classmethod
    def _fit(
        cls, features: np.ndarray, labels: np.ndarray, num_labels: int, l2: float
    ) -> AspectAggregator:
        x = np.asarray(features, np.float64)
        mean, std = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy((x - mean) / std)
        y = torch.from_numpy(np.asarray(labels, np.int64))
        w = torch.zeros(x.shape[1], num_labels, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(num_labels, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xt @ w + b, y) + l2 * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(w.detach().numpy(), b.detach().numpy(), mean, std)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float64) - self.mean) / self.std) @ self.weight + self.bias

    def proba(self, features: np.ndarray) -> np.ndarray:
        return np.exp(_log_softmax(self.logits(features)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "multinomial_logistic",
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AspectAggregator:
        return cls(data["weight"], data["bias"], data["mean"], data["std"])
