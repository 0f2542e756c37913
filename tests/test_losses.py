"""Loss modules on random tensors against a plain reference (torchtune style)."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from relkd.data.label_scheme import ESCI
from relkd.losses import HardLabelCE, WeightedLoss, build_loss


def reference_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    keep = labels >= 0
    logp = logits[keep].log_softmax(-1)
    return -logp[torch.arange(int(keep.sum())), labels[keep]].mean()


def test_hard_ce_matches_reference_and_ignores_unlabelled() -> None:
    torch.manual_seed(0)
    logits = torch.randn(16, 4)
    labels = torch.randint(0, 4, (16,))
    labels[::3] = -1
    got = HardLabelCE()({"logits": logits}, {"labels": labels})
    assert torch.allclose(got, reference_ce(logits, labels), atol=1e-6)


def test_hard_ce_with_no_labelled_rows_is_zero_and_differentiable() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    got = HardLabelCE()({"logits": logits}, {"labels": torch.full((4,), -1)})
    got.backward()
    assert got.item() == 0.0 and not math.isnan(got.item())
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_label_smoothing_raises_loss_on_confident_correct_predictions() -> None:
    logits = torch.tensor([[10.0, -10.0, -10.0]])
    labels = torch.tensor([0])
    plain = HardLabelCE()({"logits": logits}, {"labels": labels})
    smooth = HardLabelCE(label_smoothing=0.2)({"logits": logits}, {"labels": labels})
    assert smooth > plain


class Constant(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, outputs: dict, batch: dict) -> torch.Tensor:
        return outputs["x"].sum() * 0 + self.value


def test_weighted_loss_sums_weighted_terms_and_reports_unweighted_ones() -> None:
    loss = WeightedLoss({"a": Constant(2.0), "b": Constant(3.0)}, {"a": 0.5, "b": 2.0})
    out = loss({"x": torch.ones(2, requires_grad=True)}, {})
    assert out.total.item() == pytest.approx(0.5 * 2.0 + 2.0 * 3.0)
    assert {k: v.item() for k, v in out.terms.items()} == {"a": 2.0, "b": 3.0}
    assert not out.terms["a"].requires_grad  # logged values never hold the graph


def test_weighted_loss_rejects_mismatched_terms() -> None:
    with pytest.raises(ValueError, match="differ"):
        WeightedLoss({"a": Constant(1.0)}, {"b": 1.0})


def test_build_loss_skips_zero_weight_terms() -> None:
    cfg = OmegaConf.create(
        {
            "weights": {"hard_ce": 0.7},
            "label_smoothing": 0.1,
            "temperature": 1.0,
            "soft_targets": {},
            "grades": {},
        }
    )
    loss = build_loss(cfg, ESCI)
    assert list(loss.terms) == ["hard_ce"] and loss.weights == {"hard_ce": 0.7}
    assert loss.terms["hard_ce"].label_smoothing == 0.1
    cfg_off = OmegaConf.create(
        {
            "weights": {"hard_ce": 0.0},
            "label_smoothing": 0.0,
            "temperature": 1.0,
            "soft_targets": {},
            "grades": {},
        }
    )
    with pytest.raises(ValueError, match="at least one term"):
        build_loss(cfg_off, ESCI)
