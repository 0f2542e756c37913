"""Teacher loss terms on random tensors against straightforward references, one failure mode
each; and the progressive aggregator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from relkd.data.label_scheme import ESCI
from relkd.losses import AspectCE, CotTokenCE, GradedBCE, SoftTargetCE, build_loss
from relkd.losses.soft_target_ce import target_map_from_config
from relkd.teacher_cache.aspect_aggregator import AspectAggregator, mean_score, step_features

torch.manual_seed(0)
LOGITS = torch.randn(6, 4, requires_grad=True)
LABELS = torch.tensor([0, 1, 2, 3, -1, 1])


def test_soft_target_ce_one_hot_equals_cross_entropy() -> None:
    got = SoftTargetCE(4)({"logits": LOGITS}, {"labels": LABELS})
    want = F.cross_entropy(LOGITS, LABELS, ignore_index=-1)
    torch.testing.assert_close(got, want)


def test_soft_target_ce_smoothing_and_map_against_reference() -> None:
    table = target_map_from_config(ESCI.labels, {"Substitute": {"Exact": 1, "Substitute": 1}})
    loss = SoftTargetCE(4, label_smoothing=0.1, target_map=table)
    got = loss({"logits": LOGITS}, {"labels": LABELS})
    rows = []
    for logit, y in zip(LOGITS, LABELS.tolist(), strict=True):
        if y < 0:
            continue
        target = torch.tensor(table[y]) * 0.9 + 0.1 / 4
        rows.append(-(target * logit.log_softmax(-1)).sum())
    torch.testing.assert_close(got, torch.stack(rows).mean())
    assert table[1] == [0.5, 0.5, 0.0, 0.0] and table[0] == [1.0, 0.0, 0.0, 0.0]


def test_soft_target_ce_prefers_annotator_distributions() -> None:
    dist = torch.full((6, 4), float("nan"))
    dist[4] = torch.tensor([0.25, 0.25, 0.5, 0.0])  # the unlabelled row has votes
    got = SoftTargetCE(4)({"logits": LOGITS}, {"labels": LABELS, "label_dist": dist})
    per_row = [F.cross_entropy(LOGITS[i : i + 1], LABELS[i : i + 1]) for i in (0, 1, 2, 3, 5)]
    per_row.append(-(dist[4] * LOGITS[4].log_softmax(-1)).sum())
    torch.testing.assert_close(got, torch.stack(per_row).mean())


def test_soft_target_ce_skips_rows_without_a_verdict_slot() -> None:
    mask = torch.tensor([True, False, True, True, True, True])
    got = SoftTargetCE(4)({"logits": LOGITS, "verdict_mask": mask}, {"labels": LABELS})
    keep = torch.tensor([0, 2, 3, 5])
    torch.testing.assert_close(got, F.cross_entropy(LOGITS[keep], LABELS[keep]))


def test_soft_targets_are_validated() -> None:
    with pytest.raises(KeyError, match="unknown label"):
        target_map_from_config(ESCI.labels, {"Perfect": {"Exact": 1}})
    with pytest.raises(ValueError, match="positive sum"):
        target_map_from_config(ESCI.labels, {"Exact": {"Exact": 0}})
    with pytest.raises(ValueError, match="probability"):
        SoftTargetCE(2, target_map=[[0.5, 0.6], [0.0, 1.0]])


def test_graded_bce_against_reference() -> None:
    grades = [1.0, 0.5, 0.0, 0.0]
    got = GradedBCE(grades)({"logits": LOGITS}, {"labels": LABELS})
    used = LABELS >= 0
    pred = LOGITS[used].softmax(-1) @ torch.tensor(grades)
    want = F.binary_cross_entropy(pred, torch.tensor(grades)[LABELS[used]])
    torch.testing.assert_close(got, want)


def test_graded_bce_default_is_walmarts_mapping() -> None:
    cfg = OmegaConf.create(
        {
            "weights": {"graded_bce": 1.0},
            "label_smoothing": 0.0,
            "temperature": 1.0,
            "soft_targets": {},
            "grades": {},
        }
    )
    term = build_loss(cfg, ESCI).terms["graded_bce"]
    assert term.grades.tolist() == [1.0, 0.5, 0.0, 0.0]
    cfg.grades = {"Complement": 0.2}
    assert build_loss(cfg, ESCI).terms["graded_bce"].grades.tolist() == pytest.approx(
        [1, 0.5, 0.2, 0]
    )


def test_cot_token_ce_is_token_cross_entropy() -> None:
    logits = torch.randn(7, 50)
    targets = torch.randint(0, 50, (7,))
    got = CotTokenCE()({"lm_logits": logits, "lm_targets": targets}, {})
    torch.testing.assert_close(got, F.cross_entropy(logits, targets))
    empty = CotTokenCE()(
        {
            "lm_logits": torch.zeros(0, 50, requires_grad=True),
            "lm_targets": torch.zeros(0, dtype=torch.long),
        },
        {},
    )
    assert empty.item() == 0.0 and empty.requires_grad


def test_aspect_ce_ignores_unknown_facts_and_missing_slots() -> None:
    logits = torch.randn(3, 4, 3)
    facts = torch.tensor([[0, 1, 2, -1], [2, 2, 0, 1], [1, -1, -1, 0]])
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 3] = False
    got = AspectCE()({"aspect_logits": logits, "aspect_mask": mask}, {"aspects": facts})
    used = (facts >= 0) & mask
    torch.testing.assert_close(got, F.cross_entropy(logits[used], facts[used]))
    none = AspectCE()({"aspect_logits": logits}, {"aspects": torch.full((3, 4), -1)})
    assert none.item() == 0.0


def test_every_teacher_term_backpropagates_through_the_weighted_loss() -> None:
    cfg = OmegaConf.create(
        {
            "weights": {"soft_target_ce": 1.0, "cot_lm": 0.5, "aspect_ce": 0.5, "graded_bce": 0.1},
            "label_smoothing": 0.05,
            "temperature": 1.0,
            "soft_targets": {},
            "grades": {},
        }
    )
    loss = build_loss(cfg, ESCI)
    lm = torch.randn(5, 30, requires_grad=True)
    aspect = torch.randn(6, 4, 3, requires_grad=True)
    out = loss(
        {
            "logits": LOGITS,
            "lm_logits": lm,
            "lm_targets": torch.randint(0, 30, (5,)),
            "aspect_logits": aspect,
        },
        {"labels": LABELS, "aspects": torch.randint(-1, 3, (6, 4))},
    )
    out.total.backward()
    assert set(out.terms) == {"soft_target_ce", "cot_lm", "aspect_ce", "graded_bce"}
    assert lm.grad is not None and aspect.grad is not None


def test_fitted_aggregator_learns_the_rule_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 4, n)
    verdict = rng.normal(size=(n, 4))  # an uninformative verdict
    aspect = rng.normal(size=(n, 4, 3))
    aspect[np.arange(n), 0, labels % 3] += 4.0  # the category step carries the label
    aspect[np.arange(n), 1, 0] += 4.0 * (labels == 3)
    feats = step_features(verdict, aspect)
    agg = AspectAggregator.fit(feats, labels, 4)
    acc = (agg.proba(feats).argmax(1) == labels).mean()
    assert acc > 0.95
    again = AspectAggregator.from_dict(agg.to_dict())
    np.testing.assert_allclose(again.proba(feats), agg.proba(feats))


def test_mean_aggregation_rewards_steps_without_mismatch() -> None:
    probs = np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    aspect = np.zeros((2, 4, 3))
    aspect[0, :, 0] = 10.0  # every aspect matches
    aspect[1, :, 1] = 10.0  # every aspect mismatches
    s = mean_score(probs, aspect, np.array(ESCI.gains))
    assert s[0] == pytest.approx(1.0, abs=1e-3) and s[1] == pytest.approx(0.2, abs=1e-3)
