"""The student's CoT-aspect heads (MKD's ``cot_aspects``), read back from its checkpoint.

The heads belong to the loss term, not to the net (they are dropped at export), so the student
loader does not load them: they sit under ``loss.terms.cot_aspects.`` in the Lightning
checkpoint (StudentModule.loss -> WeightedLoss.terms -> the registry's term name).
"""

from __future__ import annotations

from pathlib import Path

import torch

from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import ConfigError
from relkd.explain.explanation import AspectOutput
from relkd.losses.cot_aspects import CotAspects

PREFIX = "loss.terms.cot_aspects."


def load_aspect_heads(state: dict[str, torch.Tensor], path: Path) -> CotAspects | None:
    """The trained heads in eval mode, or None when the run had no ``cot_aspects`` term."""
    weights = {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not weights:
        return None
    weight = weights.get("heads.weight")
    if weight is None or weight.ndim != 2:
        raise ConfigError(f"{path}: field state_dict: no {PREFIX}heads.weight matrix")
    heads = CotAspects(int(weight.shape[1]))
    try:
        heads.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: the cot_aspects heads do not load: {first}") from None
    heads = heads.float().eval()
    for p in heads.parameters():
        p.requires_grad_(False)
    return heads


def aspect_outputs(heads: CotAspects, features: torch.Tensor) -> list[tuple[AspectOutput, ...]]:
    """Per row of ``features`` (B, F): each aspect's most likely value and its probability."""
    probs = heads.logits(features.float()).softmax(-1)  # (B, A, V)
    best, value = probs.max(-1)
    return [
        tuple(
            AspectOutput(aspect, ASPECT_VALUES[int(v)], float(p))
            for aspect, v, p in zip(ASPECTS, value[row], best[row], strict=True)
        )
        for row in range(probs.shape[0])
    ]
