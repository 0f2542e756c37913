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
