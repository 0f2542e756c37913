"""Distillation loss terms on random tensors against hand-written references, each pinning one
failure mode (torchtune / sentence-transformers style)."""

from __future__ import annotations

import pytest
import torch

from relkd.data.label_scheme import ESCI
from relkd.losses import build_loss
from relkd.losses.score_bce import ScoreBCE
from relkd.losses.score_mse import ScoreMSE
from relkd.losses.soft_kl import SoftKL


def batch(b: int = 12, k: int = 4, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(b, k, generator=g, requires_grad=True)
    teacher = torch.randn(b, k, generator=g) * 2
    mask = torch.rand(b, generator=g) > 0.3
    gains = torch.tensor(ESCI.gains, dtype=torch.float32)
    score = teacher.softmax(-1) @ gains
    return {"logits": student}, {
        "teacher_logits": teacher,
        "teacher_mask": mask,
        "teacher_score": score,
    }


def reference_kl(s: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    total = torch.tensor(0.0)
    for si, ti in zip(s, t, strict=True):
        p = torch.softmax(ti / temp, -1)
        q = torch.softmax(si / temp, -1)
        total = total + sum(p[j] * torch.log(p[j] / q[j]) for j in range(len(p)))
    return total / len(s) * temp**2


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_soft_kl_matches_reference_on_covered_rows_only(temp: float) -> None:
    out, b = batch()
    m = b["teacher_mask"]
    got = SoftKL(temp)(out, b)
    want = reference_kl(out["logits"][m].detach(), b["teacher_logits"][m], temp)
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)


def test_soft_kl_is_zero_when_student_equals_teacher_and_positive_otherwise() -> None:
    out, b = batch()
    same = {"logits": b["teacher_logits"].clone().requires_grad_(True)}
    assert float(SoftKL(2.0)(same, b)) == pytest.approx(0.0, abs=1e-6)
    assert float(SoftKL(2.0)(out, b)) > 0


def test_soft_kl_t_squared_keeps_the_gradient_scale() -> None:
    """Without T² the gradient would shrink as 1/T² for large T (Hinton et al.)."""
    out, b = batch(b=256, seed=1)
    norms = []
    for temp in (4.0, 8.0):
        s = out["logits"].detach().clone().requires_grad_(True)
        SoftKL(temp)({"logits": s}, b).backward()
        norms.append(float(s.grad.norm()))
    assert 0.5 < norms[1] / norms[0] < 2.0


def test_score_terms_match_reference() -> None:
    out, b = batch()
    m = b["teacher_mask"]
    gains = torch.tensor(ESCI.gains, dtype=torch.float32)
    pred = out["logits"][m].detach().softmax(-1) @ gains
    target = b["teacher_score"][m]
    torch.testing.assert_close(ScoreMSE(ESCI.gains)(out, b).detach(), ((pred - target) ** 2).mean())
    p = pred.clamp(1e-6, 1 - 1e-6)
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    torch.testing.assert_close(ScoreBCE(ESCI.gains)(out, b).detach(), bce)


@pytest.mark.parametrize("term", [SoftKL(1.0), ScoreMSE(ESCI.gains), ScoreBCE(ESCI.gains)])
def test_no_teacher_rows_is_zero_and_differentiable(term) -> None:
    out, b = batch()
    b["teacher_mask"] = torch.zeros_like(b["teacher_mask"])
    b["teacher_logits"] = torch.full_like(b["teacher_logits"], float("nan"))  # never read
    loss = term(out, b)
    loss.backward()
    assert float(loss) == 0.0 and out["logits"].grad is not None


def test_a_batch_without_teacher_fields_names_the_setting() -> None:
    out, _ = batch()
    with pytest.raises(KeyError, match=r"data\.teacher_cache"):
        SoftKL()(out, {"labels": torch.zeros(12, dtype=torch.long)})


def test_gains_outside_unit_interval_are_refused() -> None:
    with pytest.raises(ValueError, match="gains"):
        ScoreBCE([2.0, 1.0, 0.0, 0.0])


def test_registry_builds_the_terms_from_config() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "weights": {"hard_ce": 0.5, "soft_kl": 0.5, "score_mse": 0.0},
            "label_smoothing": 0.0,
            "temperature": 3.0,
            "soft_targets": {},
            "grades": {},
        }
    )
    loss = build_loss(cfg, ESCI)
    assert set(loss.terms) == {"hard_ce", "soft_kl"}
    assert loss.terms["soft_kl"].temperature == 3.0


def test_config_refuses_distillation_without_a_cache_and_in_a_teacher(tmp_path) -> None:
    from relkd.config import compose
    from relkd.errors import ConfigError
    from tests.conftest import QUICKSTART, REPO

    with pytest.raises(ConfigError, match=r"loss\.weights.*set data\.teacher_cache"):
        compose(QUICKSTART, ["loss.weights.soft_kl=0.5"])
    cfg = compose(QUICKSTART, ["loss.weights.soft_kl=0.5", f"data.teacher_cache={tmp_path}"])
    assert cfg.loss.weights.soft_kl == 0.5
    margin = ["loss.weights.margin_mse=1.0", f"data.teacher_cache={tmp_path}"]
    with pytest.raises(ConfigError, match=r"data\.group_size >= 2"):
        compose(QUICKSTART, margin)
    listwise = ["loss.weights.listwise_kl=1.0", f"data.teacher_cache={tmp_path}"]
    with pytest.raises(ConfigError, match=r"listwise_kl.*data\.group_size >= 2"):
        compose(QUICKSTART, listwise)
    assert compose(QUICKSTART, [*margin, "data.group_size=4"]).data.group_size == 4
    teacher = REPO / "experiments" / "teacher" / "embedded.yaml"
    with pytest.raises(ConfigError, match="student distillation terms"):
        compose(teacher, ["loss.weights.score_mse=1.0"])


def reference_margin_mse(s, t, q) -> torch.Tensor:
    per_query = []
    for query in sorted(set(q.tolist())):
        idx = [i for i in range(len(q)) if q[i] == query]
        n = len(idx)
        if n < 2:
            continue
        total = sum(
            ((s[idx[a]] - s[idx[b]]) - (t[idx[a]] - t[idx[b]])) ** 2
            for a in range(n)
            for b in range(a + 1, n)
        )
        per_query.append(total * 2 / (n * (n - 1)))
    return torch.stack(per_query).mean()


def test_margin_mse_matches_walmarts_formula_per_query() -> None:
    from relkd.losses.margin_mse import MarginMSE

    out, b = batch(b=20, seed=3)
    b["query_index"] = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4, 5, 6, 6, 6, 7, 7, 8, 9])
    m = b["teacher_mask"]
    gains = torch.tensor(ESCI.gains, dtype=torch.float32)
    s = out["logits"][m].detach().softmax(-1) @ gains
    want = reference_margin_mse(s, b["teacher_score"][m], b["query_index"][m])
    got = MarginMSE(ESCI.gains)(out, b)
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-7)
    got.backward()
    assert out["logits"].grad[~m].abs().sum() == 0  # uncovered rows get no gradient


def test_margin_mse_ignores_a_constant_shift_and_needs_two_items() -> None:
    """Margins only: a student off by a constant score per query costs nothing."""
    from relkd.losses.margin_mse import MarginMSE

    out, b = batch(b=6, seed=4)
    b["teacher_mask"] = torch.ones(6, dtype=torch.bool)
    b["query_index"] = torch.tensor([0, 0, 0, 1, 1, 1])
    gains = torch.tensor(ESCI.gains, dtype=torch.float32)
    s = out["logits"].detach().softmax(-1) @ gains
    b["teacher_score"] = s + torch.tensor([0.3, 0.3, 0.3, -0.2, -0.2, -0.2])
    assert float(MarginMSE(ESCI.gains)(out, b)) == pytest.approx(0.0, abs=1e-10)
    b["query_index"] = torch.arange(6)  # one item per query: no pair
    loss = MarginMSE(ESCI.gains)(out, b)
    loss.backward()
    assert float(loss) == 0.0


def reference_listwise(s, t, q, tau: float) -> torch.Tensor:
    per_query = []
    for query in sorted(set(q.tolist())):
        idx = [i for i in range(len(q)) if q[i] == query]
        if len(idx) < 2:
            continue
        p = torch.softmax(t[idx] / tau, -1)
        r = torch.softmax(s[idx] / tau, -1)
        per_query.append((p * (p / r).log()).sum())
    return torch.stack(per_query).mean()


@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_listwise_kl_matches_a_per_query_reference(tau: float) -> None:
    from relkd.losses.listwise_kl import ListwiseKL

    out, b = batch(b=20, seed=5)
    b["query_index"] = torch.tensor([3, 3, 3, 1, 1, 2, 0, 0, 0, 0, 4, 4, 5, 6, 6, 6, 7, 7, 8, 9])
    m = b["teacher_mask"]
    gains = torch.tensor(ESCI.gains, dtype=torch.float32)
    s = out["logits"][m].detach().softmax(-1) @ gains
    want = reference_listwise(s, b["teacher_score"][m], b["query_index"][m], tau)
    got = ListwiseKL(ESCI.gains, tau)(out, b)
    torch.testing.assert_close(got.detach(), want, rtol=1e-4, atol=1e-6)
    got.backward()
    assert torch.isfinite(out["logits"].grad).all()


def test_listwise_kl_is_zero_for_the_teachers_own_order_up_to_a_shift() -> None:
    from relkd.losses.listwise_kl import ListwiseKL

    out, b = batch(b=6, seed=6)
    b["teacher_mask"] = torch.ones(6, dtype=torch.bool)
    b["query_index"] = torch.tensor([0, 0, 0, 1, 1, 1])
    gains = torch.tensor(ESCI.gains, dtype=torch.float32)
    s = out["logits"].detach().softmax(-1) @ gains
    b["teacher_score"] = s + torch.tensor([0.2, 0.2, 0.2, -0.1, -0.1, -0.1])
    assert float(ListwiseKL(ESCI.gains)(out, b)) == pytest.approx(0.0, abs=1e-6)
    b["query_index"] = torch.arange(6)
    assert float(ListwiseKL(ESCI.gains)(out, b)) == 0.0


# -- auxiliary terms: cot_aspects, hidden_mse ----------------------------------------------


def aspect_batch(b: int = 10, f: int = 6, seed: int = 7) -> tuple[dict, dict]:
    from relkd.data.schema import ASPECT_VALUES, ASPECTS

    g = torch.Generator().manual_seed(seed)
    features = torch.randn(b, f, generator=g, requires_grad=True)
    codes = torch.randint(0, len(ASPECT_VALUES), (b, len(ASPECTS)), generator=g)
    codes[torch.rand(b, len(ASPECTS), generator=g) < 0.3] = -1
    mask = torch.rand(b, generator=g) > 0.25
    return {"features": features}, {"teacher_aspects": codes, "teacher_mask": mask}


def reference_cot_aspects(term, features, codes, mask) -> torch.Tensor:
    w, bias = term.heads.weight.detach(), term.heads.bias.detach()
    a, v = codes.shape[1], w.shape[0] // codes.shape[1]
    losses = []
    for i in range(len(features)):
        for j in range(a):
            if not mask[i] or codes[i, j] < 0:
                continue
            logits = w[j * v : (j + 1) * v] @ features[i] + bias[j * v : (j + 1) * v]
            losses.append(-logits.log_softmax(-1)[codes[i, j]])
    return torch.stack(losses).mean()


def test_cot_aspects_matches_reference_over_present_slots_and_trains_its_heads() -> None:
    from relkd.data.schema import ASPECT_VALUES, ASPECTS
    from relkd.losses.cot_aspects import CotAspects

    torch.manual_seed(0)
    out, b = aspect_batch()
    term = CotAspects(feature_dim=6)
    assert term.logits(out["features"]).shape == (10, len(ASPECTS), len(ASPECT_VALUES))
    got = term(out, b)
    want = reference_cot_aspects(
        term, out["features"].detach(), b["teacher_aspects"], b["teacher_mask"]
    )
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    got.backward()
    assert term.heads.weight.grad.abs().sum() > 0
    uncovered = ~b["teacher_mask"] | (b["teacher_aspects"] < 0).all(-1)
    assert out["features"].grad[uncovered].abs().sum() == 0  # nothing leaks from unused rows


@pytest.mark.parametrize("missing", ["codes", "mask"])
def test_cot_aspects_without_present_slots_is_zero_with_zero_grads_on_the_heads(missing) -> None:
    """DDP needs every parameter in the graph: the heads get a 0 gradient, not None."""
    from relkd.losses.cot_aspects import CotAspects

    out, b = aspect_batch()
    if missing == "codes":
        b["teacher_aspects"] = torch.full_like(b["teacher_aspects"], -1)
    else:
        b["teacher_mask"] = torch.zeros_like(b["teacher_mask"])
    term = CotAspects(feature_dim=6)
    loss = term(out, b)
    loss.backward()
    assert float(loss) == 0.0
    for p in term.parameters():
        assert p.grad is not None and p.grad.abs().sum() == 0
    assert out["features"].grad is not None


def hidden_batch(b: int = 9, hs: int = 5, ht: int = 12, seed: int = 8) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(b, hs, generator=g, requires_grad=True)
    hidden = (torch.randn(b, ht, generator=g) * 300).half()  # LLM-sized norms, fp16 cache
    mask = torch.rand(b, generator=g) > 0.3
    return {"pooled": pooled}, {"teacher_hidden": hidden, "teacher_mask": mask}


def reference_hidden_mse(term, pooled, hidden, mask) -> torch.Tensor:
    w, bias = term.proj.weight.detach(), term.proj.bias.detach()
    rows = []
    for i in range(len(pooled)):
        if not mask[i]:
            continue
        s = w @ pooled[i] + bias
        t = hidden[i].double().float()
        s, t = s / s.norm(), t / t.norm()
        rows.append(sum((s[k] - t[k]) ** 2 for k in range(len(s))))
    return torch.stack(rows).mean()


def test_hidden_mse_matches_reference_and_ignores_the_teachers_norm() -> None:
    from relkd.losses.hidden_mse import HiddenMSE

    torch.manual_seed(1)
    out, b = hidden_batch()
    term = HiddenMSE(pooled_dim=5, teacher_hidden_dim=12)
    got = term(out, b)
    want = reference_hidden_mse(
        term, out["pooled"].detach(), b["teacher_hidden"], b["teacher_mask"]
    )
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    assert 0.0 <= float(got) <= 4.0  # 2 - 2cos on unit vectors
    scaled = dict(b, teacher_hidden=(b["teacher_hidden"].float() / 50).half())
    torch.testing.assert_close(term(out, scaled).detach(), got.detach(), rtol=1e-3, atol=1e-4)
    got.backward()
    assert term.proj.weight.grad.abs().sum() > 0
    assert out["pooled"].grad[~b["teacher_mask"]].abs().sum() == 0


def test_hidden_mse_without_covered_rows_is_zero_with_zero_grads_on_the_projection() -> None:
    from relkd.losses.hidden_mse import HiddenMSE

    out, b = hidden_batch()
    b["teacher_mask"] = torch.zeros_like(b["teacher_mask"])
    term = HiddenMSE(5, 12)
    loss = term(out, b)
    loss.backward()
    assert float(loss) == 0.0
    for p in term.parameters():
        assert p.grad is not None and p.grad.abs().sum() == 0


def test_hidden_mse_without_hidden_states_names_the_flag_and_the_annotate_option() -> None:
    from relkd.losses.hidden_mse import HiddenMSE

    out, b = hidden_batch()
    del b["teacher_hidden"]
    with pytest.raises(KeyError, match=r"--hidden.*data\.with_hidden"):
        HiddenMSE(5, 12)(out, b)
    with pytest.raises(ValueError, match="width 12"):
        HiddenMSE(5, 16)(*hidden_batch())


def loss_cfg(weights: dict, **extra) -> object:
    from omegaconf import OmegaConf

    base = {
        "weights": weights,
        "label_smoothing": 0.0,
        "temperature": 1.0,
        "listwise_temperature": 0.1,
        "soft_targets": {},
        "grades": {},
    }
    return OmegaConf.create({**base, **extra})


def test_build_loss_gives_the_auxiliary_terms_their_dims_and_names_a_missing_one() -> None:
    from relkd.errors import ConfigError

    cfg = loss_cfg({"hard_ce": 1.0, "cot_aspects": 0.3, "hidden_mse": 0.2})
    with pytest.raises(ConfigError, match=r"cot_aspects.*feature_dim"):
        build_loss(cfg, ESCI, pooled_dim=8, teacher_hidden_dim=16)
    with pytest.raises(ConfigError, match=r"hidden_mse.*teacher_hidden_dim"):
        build_loss(cfg, ESCI, feature_dim=32, pooled_dim=8)
    loss = build_loss(cfg, ESCI, feature_dim=32, pooled_dim=8, teacher_hidden_dim=16)
    assert loss.terms["cot_aspects"].heads.in_features == 32
    assert (
        loss.terms["hidden_mse"].proj.in_features,
        loss.terms["hidden_mse"].proj.out_features,
    ) == (8, 16)
    assert build_loss(loss_cfg({"hard_ce": 1.0}), ESCI).weights == {"hard_ce": 1.0}  # no dims


def test_term_groups_partition_the_kd_ratio_split() -> None:
    from relkd.losses.registry import (
        AUXILIARY_TERMS,
        DISTILLATION_TERMS,
        LABEL_TERMS,
        LOSS_TERMS,
    )

    assert AUXILIARY_TERMS == {"cot_aspects", "hidden_mse"} <= DISTILLATION_TERMS
    assert {"hard_ce", "soft_target_ce", "graded_bce"} == LABEL_TERMS
    assert not LABEL_TERMS & DISTILLATION_TERMS
    assert set(LOSS_TERMS) >= AUXILIARY_TERMS | LABEL_TERMS


# -- loss.kd_ratio -----------------------------------------------------------------------


def test_kd_ratio_splits_label_and_distillation_groups_by_the_users_weights() -> None:
    from relkd.losses import effective_weights

    weights = {"hard_ce": 2.0, "graded_bce": 1.0, "soft_kl": 1.0, "score_mse": 3.0}
    cfg = loss_cfg({**weights, "cot_aspects": 0.7, "margin_mse": 0.0}, kd_ratio=0.4)
    got = effective_weights(cfg)
    want = {
        "hard_ce": 0.6 * 2 / 3,
        "graded_bce": 0.6 * 1 / 3,
        "soft_kl": 0.4 * 1 / 4,
        "score_mse": 0.4 * 3 / 4,
        "cot_aspects": 0.7,  # auxiliary: absolute weight
    }
    assert got == pytest.approx(want)
    assert sum(got[n] for n in want if n != "cot_aspects") == pytest.approx(1.0)
    assert cfg.weights.hard_ce == 2.0  # the config is not rewritten
    assert effective_weights(loss_cfg(weights)) == weights  # kd_ratio unset: weights as given
    # the same ratio whatever the scale of a group's weights
    scaled = loss_cfg({"hard_ce": 20.0, "graded_bce": 10.0, "soft_kl": 1.0, "score_mse": 3.0})
    scaled.kd_ratio = 0.4
    assert effective_weights(scaled) == pytest.approx(
        {k: v for k, v in want.items() if k != "cot_aspects"}
    )


@pytest.mark.parametrize(("ratio", "left"), [(0.0, {"hard_ce"}), (1.0, {"soft_kl"})])
def test_kd_ratio_at_an_end_leaves_the_other_group_out(ratio: float, left: set) -> None:
    from relkd.losses import effective_weights

    cfg = loss_cfg({"hard_ce": 0.3, "soft_kl": 5.0}, kd_ratio=ratio)
    assert effective_weights(cfg) == pytest.approx(dict.fromkeys(left, 1.0))
    loss = build_loss(cfg, ESCI)
    assert set(loss.terms) == left  # a term at 0 is not built


def test_kd_ratio_is_validated_and_the_cache_checks_see_the_effective_weights(tmp_path) -> None:
    from relkd.config import compose
    from relkd.errors import ConfigError
    from tests.conftest import QUICKSTART

    with pytest.raises(ConfigError, match=r"command line.*loss\.kd_ratio.*distillation"):
        compose(QUICKSTART, ["loss.kd_ratio=0.5"])  # only hard_ce
    only_kd = ["loss.weights.hard_ce=0", "loss.weights.soft_kl=1", f"data.teacher_cache={tmp_path}"]
    with pytest.raises(ConfigError, match=r"loss\.kd_ratio.*no label term"):
        compose(QUICKSTART, [*only_kd, "loss.kd_ratio=0.5"])
    with pytest.raises(ConfigError, match=r"loss\.kd_ratio.*\[0, 1\]"):
        compose(QUICKSTART, [*only_kd, "loss.kd_ratio=1.5"])
    assert compose(QUICKSTART, [*only_kd, "loss.kd_ratio=1.0"]).loss.kd_ratio == 1.0
    # kd_ratio 0 switches distillation off: no cache, no group_size needed
    cfg = compose(QUICKSTART, ["loss.weights.margin_mse=1", "loss.kd_ratio=0"])
    assert cfg.loss.weights.margin_mse == 1.0 and cfg.loss.kd_ratio == 0.0  # saved as given
    with pytest.raises(ConfigError, match=r"set data\.teacher_cache"):
        compose(QUICKSTART, ["loss.weights.soft_kl=1", "loss.kd_ratio=0.5"])
    with pytest.raises(ConfigError, match=r"cot_aspects.*set data\.teacher_cache"):
        compose(QUICKSTART, ["loss.weights.cot_aspects=0.5"])
    with pytest.raises(ConfigError, match=r"at least one weight"):
        compose(QUICKSTART, ["loss.weights.hard_ce=0"])
