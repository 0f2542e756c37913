"""SEMINAR's pretraining terms (next_pair, seq_relevance, view_align) on hand-made tensors,
each against a plain loop reference and on the failure mode it guards."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from relkd.data.label_scheme import ESCI
from relkd.losses.next_pair import NextPair
from relkd.losses.registry import (
    DISTILLATION_TERMS,
    LABEL_TERMS,
    LOSS_TERMS,
    SEQUENCE_TERMS,
    build_loss,
    effective_weights,
)
from relkd.losses.seq_relevance import SeqRelevance
from relkd.losses.view_align import ViewAlign

TAU = 0.1


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def neg_log_softmax(logits: list[float], target: int) -> float:
    top = max(logits)
    return -(logits[target] - top - math.log(sum(math.exp(x - top) for x in logits)))


# -- references: one row at a time, duplicates left out of the candidate list ---------------


def ref_next_pair(outputs: dict, batch: dict, tau: float) -> float:
    user, pair, neg = outputs["seq_user"], outputs["seq_pair"], outputs["seq_neg_pair"]
    item = batch["seq_item_row"].tolist()
    losses = []
    for b in range(user.shape[0]):
        if batch["event_clicked"][b] != 1 or batch["hist_mask"][b].sum() == 0:
            continue
        cand = [c for c in range(user.shape[0]) if c == b or item[c] != item[b]]
        logits = [cos(user[b], pair[c]) / tau for c in cand]
        logits += [cos(user[b], neg[b, k]) / tau for k in range(neg.shape[1])]
        losses.append(neg_log_softmax(logits, cand.index(b)))
    return sum(losses) / len(losses)


def ref_weights(batch: dict) -> list[float]:
    w = []
    for b in range(batch["event_clicked"].shape[0]):
        if "teacher_mask" in batch and bool(batch["teacher_mask"][b]):
            w.append(float(batch["teacher_score"][b]))
        else:
            w.append(float(batch["event_clicked"][b]))
    return w


def ref_seq_relevance(outputs: dict, batch: dict, tau: float) -> float:
    query, item_vec = outputs["seq_query"], outputs["seq_item"]
    item = batch["seq_item_row"].tolist()
    w = ref_weights(batch)
    total = 0.0
    for b in range(query.shape[0]):
        cand = [c for c in range(query.shape[0]) if c == b or item[c] != item[b]]
        logits = [cos(query[b], item_vec[c]) / tau for c in cand]
        total += w[b] * neg_log_softmax(logits, cand.index(b))
    return total / sum(w)


def ref_view_align(outputs: dict, batch: dict, tau: float) -> float:
    views = outputs["seq_views"]
    item = batch["seq_item_row"].tolist()
    n, v = views.shape[0], views.shape[1]
    pair_losses = []
    for a in range(v):
        for b in range(a + 1, v):
            one_way = []
            for x, y in ((a, b), (b, a)):
                ces = []
                for i in range(n):
                    cand = [j for j in range(n) if j == i or item[j] != item[i]]
                    logits = [cos(views[i, x], views[j, y]) / tau for j in cand]
                    ces.append(neg_log_softmax(logits, cand.index(i)))
                one_way.append(sum(ces) / n)
            pair_losses.append(0.5 * sum(one_way))
    return sum(pair_losses) / len(pair_losses)


# -- fixtures ---------------------------------------------------------------------------------


def seq_outputs(b: int = 6, n: int = 3, v: int = 3, d: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "seq_user": torch.randn(b, d, generator=g),
        "seq_pair": torch.randn(b, d, generator=g),
        "seq_neg_pair": torch.randn(b, n, d, generator=g),
        "seq_query": torch.randn(b, d, generator=g),
        "seq_item": torch.randn(b, d, generator=g),
        "seq_views": torch.randn(b, v, d, generator=g),
    }


def seq_batch() -> dict:
    # rows 1 and 4 share an item; row 2 is unclicked, row 3 has an empty history
    return {
        "seq_item_row": torch.tensor([10, 11, 12, 13, 11, 14]),
        "event_clicked": torch.tensor([1, 1, 0, 1, 1, 1]),
        "hist_mask": torch.tensor(
            [[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]]
        ),
    }


def with_grad(outputs: dict) -> dict:
    return {k: t.clone().requires_grad_(True) for k, t in outputs.items()}


def assert_zero_with_grad(loss: torch.Tensor, inputs: list[torch.Tensor]) -> None:
    loss.backward()
    assert loss.item() == 0.0
    for t in inputs:
        assert t.grad is not None and torch.all(t.grad == 0)


# -- next_pair --------------------------------------------------------------------------------


def test_next_pair_matches_reference() -> None:
    out, batch = seq_outputs(), seq_batch()
    got = NextPair(TAU)(out, batch)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref_next_pair(out, batch, TAU), rel=1e-5)


def test_next_pair_ignores_unclicked_rows_and_empty_histories() -> None:
    out, batch = seq_outputs(), seq_batch()
    base = NextPair(TAU)(out, batch)
    moved = dict(out, seq_user=out["seq_user"].clone())
    moved["seq_user"][[2, 3]] = torch.randn(2, 8) * 5
    assert torch.allclose(NextPair(TAU)(moved, batch), base)
    # sanity: a qualifying row's user state does count
    moved["seq_user"][0] = torch.randn(8) * 5
    assert not torch.allclose(NextPair(TAU)(moved, batch), base)


def test_next_pair_with_no_qualifying_row_is_a_differentiable_zero() -> None:
    out = with_grad(seq_outputs())
    batch = dict(seq_batch(), event_clicked=torch.tensor([0, 0, 0, 1, 0, 0]))  # row 3: no history
    got = NextPair(TAU)(out, batch)
    assert_zero_with_grad(got, [out["seq_user"], out["seq_pair"], out["seq_neg_pair"]])


def test_next_pair_reaches_every_input_when_rows_qualify() -> None:
    out = with_grad(seq_outputs())
    NextPair(TAU)(out, seq_batch()).backward()
    for key in ("seq_user", "seq_pair", "seq_neg_pair"):
        assert out[key].grad is not None and out[key].grad.abs().sum() > 0


def test_next_pair_is_lower_when_the_user_state_is_the_positive() -> None:
    out, batch = seq_outputs(), seq_batch()
    on_pos = dict(out, seq_user=out["seq_pair"].clone())
    on_neg = dict(out, seq_user=out["seq_neg_pair"][:, 0].clone())
    assert NextPair(TAU)(on_pos, batch) < NextPair(TAU)(on_neg, batch)


def test_next_pair_does_not_count_a_repeated_item_as_its_own_negative() -> None:
    d = 4
    pair = torch.eye(d)[[0, 0, 1, 2]]  # rows 0 and 1: the same item, the same pair vector
    out = {
        "seq_user": pair.clone(),
        "seq_pair": pair,
        "seq_neg_pair": -torch.eye(d)[[3, 3, 3, 3]].unsqueeze(1),
    }
    batch = {
        "seq_item_row": torch.tensor([5, 5, 6, 7]),
        "event_clicked": torch.ones(4, dtype=torch.long),
        "hist_mask": torch.ones(4, 2, dtype=torch.long),
    }
    got = NextPair(0.05)(out, batch)
    assert got.item() < 1e-3  # unmasked, rows 0 and 1 would each pay >= log 2
    distinct = dict(batch, seq_item_row=torch.tensor([5, 8, 6, 7]))
    assert NextPair(0.05)(out, distinct).item() > 0.49 * math.log(2)


def test_next_pair_does_not_count_a_sampled_copy_of_the_positive_item() -> None:
    d = 4
    pair = torch.eye(d)[[0, 1]]
    out = {"seq_user": pair.clone(), "seq_pair": pair, "seq_neg_pair": pair.unsqueeze(1)}
    batch = {
        "seq_item_row": torch.tensor([5, 6]),
        "event_clicked": torch.ones(2, dtype=torch.long),
        "hist_mask": torch.ones(2, 2, dtype=torch.long),
        "neg_item_row": torch.tensor([[5], [6]]),  # each row drew its own item
    }
    assert NextPair(0.05)(out, batch).item() < 1e-3
    drew_other = dict(batch, neg_item_row=torch.tensor([[9], [9]]))
    assert NextPair(0.05)(out, drew_other).item() > 0.49 * math.log(2)


# -- seq_relevance ----------------------------------------------------------------------------


def teacher_batch() -> dict:
    return dict(
        seq_batch(),
        teacher_mask=torch.tensor([True, True, True, False, False, False]),
        teacher_score=torch.tensor([0.8, 0.0, 0.5, float("nan"), 0.3, 0.9]),
    )


@pytest.mark.parametrize("batch_fn", [seq_batch, teacher_batch])
def test_seq_relevance_matches_reference(batch_fn) -> None:
    out, batch = seq_outputs(seed=1), batch_fn()
    got = SeqRelevance(TAU)(out, batch)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref_seq_relevance(out, batch, TAU), rel=1e-5)


def test_seq_relevance_weights_come_from_the_teacher_where_it_covers_the_pair() -> None:
    out, batch = seq_outputs(seed=2), teacher_batch()
    base = SeqRelevance(TAU)(out, batch)
    # row 1 is clicked but the teacher scores it 0: its query does not count
    moved = dict(out, seq_query=out["seq_query"].clone())
    moved["seq_query"][1] = torch.randn(8) * 5
    assert torch.allclose(SeqRelevance(TAU)(moved, batch), base)
    # row 2 is unclicked but the teacher scores it 0.5: its query counts
    moved["seq_query"][2] = torch.randn(8) * 5
    assert not torch.allclose(SeqRelevance(TAU)(moved, batch), base)
    # row 3 is uncovered (its NaN score unused) and clicked: the click counts
    assert math.isfinite(base.item())


def test_seq_relevance_without_teacher_fields_uses_clicks_only() -> None:
    out, batch = seq_outputs(seed=3), seq_batch()
    base = SeqRelevance(TAU)(out, batch)
    moved = dict(out, seq_query=out["seq_query"].clone())
    moved["seq_query"][2] = torch.randn(8) * 5  # unclicked, no teacher
    assert torch.allclose(SeqRelevance(TAU)(moved, batch), base)


def test_seq_relevance_with_zero_total_weight_is_a_differentiable_zero() -> None:
    out = with_grad(seq_outputs())
    batch = dict(
        seq_batch(),
        event_clicked=torch.tensor([1, 0, 0, 0, 0, 0]),
        teacher_mask=torch.tensor([True, False, False, False, False, False]),
        teacher_score=torch.zeros(6),
    )
    got = SeqRelevance(TAU)(out, batch)
    assert_zero_with_grad(got, [out["seq_query"], out["seq_item"]])


def test_seq_relevance_does_not_count_a_repeated_item_as_its_own_negative() -> None:
    item = torch.eye(4)[[0, 0, 1, 2]]
    out = {"seq_query": item.clone(), "seq_item": item}
    batch = {
        "seq_item_row": torch.tensor([5, 5, 6, 7]),
        "event_clicked": torch.ones(4, dtype=torch.long),
    }
    got = SeqRelevance(0.05)(out, batch)
    assert got.item() < 1e-3
    assert got.item() == pytest.approx(ref_seq_relevance(out, batch, 0.05), abs=1e-6)
    distinct = dict(batch, seq_item_row=torch.tensor([5, 8, 6, 7]))
    assert SeqRelevance(0.05)(out, distinct).item() > 0.49 * math.log(2)


def test_seq_relevance_pulls_query_and_item_together() -> None:
    # the sign: the loss falls as the query moves towards its own item
    out, batch = seq_outputs(seed=4), seq_batch()
    aligned = dict(out, seq_query=out["seq_item"].clone())
    assert SeqRelevance(TAU)(aligned, batch) < SeqRelevance(TAU)(out, batch)
    query = out["seq_query"].clone().requires_grad_(True)
    loss = SeqRelevance(TAU)(dict(out, seq_query=query), batch)
    loss.backward()
    stepped = dict(out, seq_query=(query - 0.1 * query.grad).detach())
    assert SeqRelevance(TAU)(stepped, batch) < loss


# -- view_align -------------------------------------------------------------------------------


def test_view_align_matches_reference() -> None:
    out, batch = seq_outputs(seed=5), seq_batch()
    got = ViewAlign(TAU)(out, batch)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref_view_align(out, batch, TAU), rel=1e-5)


def test_view_align_is_low_for_aligned_views_and_high_for_shuffled_ones() -> None:
    b, d = 6, 8
    base = torch.eye(d)[:b]
    aligned = torch.stack([base, 2 * base, 0.5 * base], dim=1)  # same direction, any norm
    batch = {"seq_item_row": torch.arange(b)}
    low = ViewAlign(0.05)({"seq_views": aligned}, batch)
    shuffled = aligned.clone()
    shuffled[:, 1] = aligned[torch.roll(torch.arange(b), 1), 1]
    high = ViewAlign(0.05)({"seq_views": shuffled}, batch)
    assert low.item() < 1e-3 and high.item() > 5.0


def test_view_align_is_symmetric_in_the_views() -> None:
    out, batch = seq_outputs(seed=6), seq_batch()
    loss = ViewAlign(TAU)(out, batch)
    for order in ([1, 0, 2], [2, 1, 0], [1, 2, 0]):
        swapped = dict(out, seq_views=out["seq_views"][:, order])
        assert torch.allclose(ViewAlign(TAU)(swapped, batch), loss, atol=1e-6)


def test_view_align_masks_duplicate_items_in_both_directions() -> None:
    base = torch.eye(4)[[0, 0, 1, 2]]
    out = {"seq_views": torch.stack([base, base], dim=1)}
    batch = {"seq_item_row": torch.tensor([5, 5, 6, 7])}
    assert ViewAlign(0.05)(out, batch).item() < 1e-3
    distinct = {"seq_item_row": torch.tensor([5, 8, 6, 7])}
    assert ViewAlign(0.05)(out, distinct).item() > 0.49 * math.log(2)
    # the other random batch's duplicates (rows 1 and 4) against the reference
    out2, batch2 = seq_outputs(seed=7, v=2), seq_batch()
    assert ViewAlign(TAU)(out2, batch2).item() == pytest.approx(
        ref_view_align(out2, batch2, TAU), rel=1e-5
    )


@pytest.mark.parametrize("shape", [(5, 1, 4), (1, 3, 4)])
def test_view_align_with_one_view_or_one_row_is_a_differentiable_zero(shape) -> None:
    views = torch.randn(*shape, requires_grad=True)
    got = ViewAlign()({"seq_views": views}, {"seq_item_row": torch.arange(shape[0])})
    assert_zero_with_grad(got, [views])


def test_terms_compute_in_float32_from_half_inputs() -> None:
    out = {k: t.to(torch.bfloat16) for k, t in seq_outputs(seed=8).items()}
    batch = seq_batch()
    for term in (NextPair(TAU), SeqRelevance(TAU), ViewAlign(TAU)):
        got = term(out, batch)
        assert got.dtype == torch.float32 and math.isfinite(got.item())
    full = {k: t.float() for k, t in out.items()}
    assert NextPair(TAU)(out, batch).item() == pytest.approx(
        ref_next_pair(full, batch, TAU), rel=1e-4
    )


@pytest.mark.parametrize("cls", [NextPair, SeqRelevance, ViewAlign])
@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_non_positive_temperature_is_rejected(cls, temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        cls(temperature)


# -- registry ---------------------------------------------------------------------------------


def loss_cfg(weights: dict[str, float], kd_ratio: float | None = None):
    return OmegaConf.create(
        {
            "weights": weights,
            "kd_ratio": kd_ratio,
            "label_smoothing": 0.0,
            "temperature": 1.0,
            "listwise_temperature": 0.1,
            "soft_targets": {},
            "grades": {},
            "adversarial": {"norm": 5.0, "temperature": 0.05},
            "sequence": {"temperature": 0.2},
        }
    )


def test_registry_builds_the_three_terms_and_the_combiner_reports_each() -> None:
    weights = {"next_pair": 1.0, "seq_relevance": 0.5, "view_align": 0.25}
    loss = build_loss(loss_cfg(weights), ESCI)
    assert isinstance(loss.terms["next_pair"], NextPair)
    assert isinstance(loss.terms["seq_relevance"], SeqRelevance)
    assert isinstance(loss.terms["view_align"], ViewAlign)
    assert {term.temperature for term in loss.terms.values()} == {0.2}
    out, batch = seq_outputs(), seq_batch()
    got = loss(out, batch)
    assert set(got.terms) == set(weights)
    want = {
        "next_pair": ref_next_pair(out, batch, 0.2),
        "seq_relevance": ref_seq_relevance(out, batch, 0.2),
        "view_align": ref_view_align(out, batch, 0.2),
    }
    for name, value in want.items():
        assert got.terms[name].item() == pytest.approx(value, rel=1e-5)
    assert got.total.item() == pytest.approx(sum(weights[n] * v for n, v in want.items()), rel=1e-5)


def test_sequence_terms_keep_their_weight_under_kd_ratio() -> None:
    assert {"next_pair", "seq_relevance", "view_align"} == SEQUENCE_TERMS
    assert set(LOSS_TERMS) >= SEQUENCE_TERMS
    assert not SEQUENCE_TERMS & (LABEL_TERMS | DISTILLATION_TERMS)
    cfg = loss_cfg(
        {"hard_ce": 2.0, "score_mse": 1.0, "next_pair": 0.3, "seq_relevance": 0.2}, kd_ratio=0.4
    )
    got = effective_weights(cfg)
    assert got == pytest.approx(
        {"hard_ce": 0.6, "score_mse": 0.4, "next_pair": 0.3, "seq_relevance": 0.2}
    )
