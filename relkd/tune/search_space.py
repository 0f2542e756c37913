"""Trial parameters <-> experiment overrides.

The loss weights are searched on the simplex: ``k`` terms take ``k - 1`` stick-breaking
fractions in (0, 1), mapped so that uniform fractions give a uniform point of the simplex
(Dirichlet(1)), and the weights are scaled to the base experiment's sum. Every weighting is one
point, so TPE never spends trials on ``w`` and ``2w`` (the same direction, a different step
size). The mapping is a pure function of the stored parameters, so every DDP rank and a
``--export-best`` rebuild the same overrides from the study's storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from relkd.losses.registry import LABEL_TERMS, SCORE_KD_TERMS
from relkd.tune.study_config import ParamSpec, SearchSpaceConfig

SIMPLEX_PREFIX = "simplex."


def simplex_point(fractions: list[float]) -> list[float]:
    """``k - 1`` fractions in [0, 1] -> ``k`` weights >= 0 summing to 1.

    Stick-breaking with the inverse CDF of Beta(1, k - 1 - i): the i-th piece takes
    ``1 - (1 - u)^(1 / (k - 1 - i))`` of what is left, which makes the point uniform on the
    simplex when the fractions are uniform.
    """
    k = len(fractions) + 1
    left, out = 1.0, []
    for i, u in enumerate(fractions):
        piece = 1.0 - (1.0 - u) ** (1.0 / (k - 1 - i))
        out.append(left * piece)
        left *= 1.0 - piece
    out.append(left)
    return out


def _suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    if spec.choices is not None:
        return trial.suggest_categorical(name, list(spec.choices))
    assert spec.low is not None and spec.high is not None
    if spec.int:
        step = int(spec.step) if spec.step is not None else 1
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)


def _dot(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class SearchSpace:
    """A study's search space over one base experiment.

    Args:
        space: the study YAML's ``space``.
        base_weights: the base experiment's ``loss.weights`` (the simplex keeps their sum).
    """

    def __init__(self, space: SearchSpaceConfig, base_weights: Mapping[str, float]) -> None:
        self.space = space
        total = sum(float(base_weights.get(t, 0.0)) for t in space.weights)
        self.weight_total = total if total > 0 else 1.0
        terms = set(space.weights)
        # a simplex over label and score terms is the whole split: kd_ratio would override it
        self.clears_kd_ratio = bool(terms & LABEL_TERMS) and bool(terms & SCORE_KD_TERMS)

    def suggest(self, trial: optuna.Trial) -> list[str]:
        """Draw this trial's parameters (recorded in the study) and return its overrides."""
        for term in self.space.weights[:-1]:
            trial.suggest_float(SIMPLEX_PREFIX + term, 0.0, 1.0)
        if self.space.kd_ratio is not None:
            _suggest(trial, "loss.kd_ratio", self.space.kd_ratio)
        if self.space.temperature is not None:
            _suggest(trial, "loss.temperature", self.space.temperature)
        for key, spec in self.space.params.items():
            _suggest(trial, key, spec)
        return self.overrides(trial.params)

    def weights(self, params: Mapping[str, Any]) -> dict[str, float]:
        """The searched loss weights of a trial's parameters (empty without a simplex)."""
        terms = self.space.weights
        if not terms:
            return {}
        point = simplex_point([float(params[SIMPLEX_PREFIX + t]) for t in terms[:-1]])
        return {t: self.weight_total * w for t, w in zip(terms, point, strict=True)}

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """``key=value`` overrides of a trial's stored parameters."""
        out = [f"loss.weights.{t}={_dot(w)}" for t, w in self.weights(params).items()]
        if self.clears_kd_ratio:
            out.append("loss.kd_ratio=null")
        out += [f"{k}={_dot(v)}" for k, v in params.items() if not k.startswith(SIMPLEX_PREFIX)]
        return out
