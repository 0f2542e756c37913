"""Loss-weight schedules and the temperature schedule: the pure schedule, the combiner's use of
it, and the config checks (each test pins one failure mode)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from relkd.data.label_scheme import ESCI
from relkd.losses import WeightedLoss, WeightSchedule, build_loss
from tests.test_kd_losses import batch, loss_cfg, reference_kl

# start 2 -> end 0.5 over the first 40%: at 10% a quarter of the ramp is done
QUARTER = {"linear": 2 - 1.5 * 0.25, "cosine": 0.5 + 1.5 * 0.5 * (1 + math.cos(math.pi / 4))}


@pytest.mark.parametrize("kind", ["linear", "cosine", "step"])
def test_schedule_values_before_during_and_after_the_ramp(kind: str) -> None:
    s = WeightSchedule(kind, start=2.0, end=0.5, ramp=0.4)
    assert s(0.0) == pytest.approx(2.0)
    assert s(0.1) == pytest.approx(QUARTER.get(kind, 2.0))  # step holds start until the ramp
    assert s(0.4) == pytest.approx(0.5)
    assert s(0.9) == pytest.approx(0.5)  # held after the ramp
    assert s(-1.0) == pytest.approx(2.0) and s(3.0) == pytest.approx(0.5)  # clamped


def test_cosine_is_flat_at_both_ends_and_linear_is_not() -> None:
    cos, lin = WeightSchedule("cosine", 0.0, 1.0, 1.0), WeightSchedule("linear", 0.0, 1.0, 1.0)
    assert cos(0.01) < 0.001 < lin(0.01)
    assert cos(0.5) == pytest.approx(lin(0.5)) == pytest.approx(0.5)


def test_default_schedule_is_a_ten_percent_warm_up() -> None:
    s = WeightSchedule()
    assert (s(0.0), s(0.05), s(0.1), s(1.0)) == pytest.approx((0.0, 0.5, 1.0, 1.0))


@pytest.mark.parametrize(
    ("args", "message"),
    [(("exp",), "kind"), (("linear", 0.0, 1.0, 0.0), "ramp"), (("linear", -1.0), ">= 0")],
)
def test_bad_schedules_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WeightSchedule(*args)


class Constant(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, outputs, batch) -> torch.Tensor:
        return torch.tensor(self.value)


def test_weighted_loss_uses_the_scheduled_weights_and_reports_them() -> None:
    loss = WeightedLoss(
        {"a": Constant(1.0), "b": Constant(10.0)},
        {"a": 1.0, "b": 0.5},
        schedules={"b": WeightSchedule("linear", 0.0, 1.0, 0.5)},
    )
    out = loss({}, {})  # before set_progress: progress 0, the warm-up's start
    assert float(out.total) == pytest.approx(1.0) and out.weights == {"b": 0.0}
    assert float(out.terms["b"]) == 10.0  # still computed (and logged) at weight 0
    loss.set_progress(0.25)
    out = loss({}, {})
    assert float(out.total) == pytest.approx(1.0 + 0.25 * 10.0)
    assert out.weights == pytest.approx({"b": 0.25})  # scheduled terms only
    assert loss.current_weights() == pytest.approx({"a": 1.0, "b": 0.25})
    assert loss.weights == {"a": 1.0, "b": 0.5}  # the base weights are kept
    loss.set_progress(1.0)
    assert float(loss({}, {}).total) == pytest.approx(1.0 + 5.0)


def test_a_schedule_for_a_missing_term_is_refused() -> None:
    with pytest.raises(ValueError, match="not terms"):
        WeightedLoss({"a": Constant(1.0)}, {"a": 1.0}, schedules={"b": WeightSchedule()})


def test_temperature_schedule_anneals_soft_kl_as_the_reference_predicts() -> None:
    cfg = loss_cfg(
        {"soft_kl": 1.0},
        temperature=1.5,
        temperature_schedule={"kind": "linear", "start": 2.0, "end": 1.0, "ramp": 0.5},
    )
    loss = build_loss(cfg, ESCI)
    out, b = batch()
    m = b["teacher_mask"]
    s, t = out["logits"][m].detach(), b["teacher_logits"][m]
    for progress, temp in ((0.0, 3.0), (0.25, 2.25), (0.5, 1.5), (1.0, 1.5)):
        loss.set_progress(progress)
        got = loss(out, b).terms["soft_kl"]
        torch.testing.assert_close(got, reference_kl(s, t, temp), rtol=1e-5, atol=1e-6)
    assert loss.terms["soft_kl"].temperature == 1.5  # the base T is kept


def test_temperature_schedule_leaves_listwise_tau_alone() -> None:
    cfg = loss_cfg(
        {"soft_kl": 1.0, "listwise_kl": 1.0},
        temperature_schedule={"kind": "step", "start": 4.0, "end": 1.0, "ramp": 0.5},
    )
    loss = build_loss(cfg, ESCI)
    out, b = batch(b=8)
    b["query_index"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    b["teacher_mask"] = torch.ones(8, dtype=torch.bool)
    before = loss(out, b).terms["listwise_kl"]
    loss.set_progress(1.0)
    assert float(loss(out, b).terms["listwise_kl"]) == pytest.approx(float(before))
    assert loss.terms["listwise_kl"].temperature == 0.1


def test_build_loss_builds_schedules_from_config() -> None:
    cfg = loss_cfg(
        {"hard_ce": 1.0, "soft_kl": 2.0},
        schedules={"soft_kl": {"kind": "step", "start": 0.0, "end": 1.0, "ramp": 0.3}},
    )
    loss = build_loss(cfg, ESCI)
    assert loss.current_weights() == {"hard_ce": 1.0, "soft_kl": 0.0}
    loss.set_progress(0.3)
    assert loss.current_weights() == {"hard_ce": 1.0, "soft_kl": 2.0}


# -- config --------------------------------------------------------------------------------


def test_schedule_overrides_compose_with_defaults_and_reach_the_loss(tmp_path) -> None:
    from relkd.config import compose
    from tests.conftest import QUICKSTART

    cfg = compose(
        QUICKSTART,
        [
            "loss.weights.soft_kl=0.5",
            f"data.teacher_cache={tmp_path}",
            "loss.schedules.soft_kl.ramp=0.5",
            "loss.temperature_schedule.start=2.0",
        ],
    )
    s = cfg.loss.schedules.soft_kl
    assert (s.kind, s.start, s.end, s.ramp) == ("linear", 0.0, 1.0, 0.5)
    loss = build_loss(cfg.loss, ESCI)
    loss.set_progress(0.25)
    assert loss.current_weights()["soft_kl"] == pytest.approx(0.25)
    assert loss.terms["soft_kl"].current_temperature == pytest.approx(1.0)  # ramp 0.1 passed


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["loss.schedules.sof_kl.ramp=0.5"], r"loss\.schedules\.sof_kl", "not a loss term"),
        (["loss.schedules.soft_kl.ramp=0.5"], r"loss\.schedules\.soft_kl", "weight > 0"),
        (["loss.schedules.hard_ce.kind=exp"], r"loss\.schedules\.hard_ce", "kind 'exp'"),
        (["loss.schedules.hard_ce.ramp=0"], r"loss\.schedules\.hard_ce", r"\(0, 1\]"),
        (["loss.schedules.hard_ce.ramp=1.5"], r"loss\.schedules\.hard_ce", r"\(0, 1\]"),
        (["loss.schedules.hard_ce.start=-1"], r"loss\.schedules\.hard_ce", ">= 0"),
        (["loss.temperature_schedule.end=2"], r"loss\.temperature_schedule", "soft_kl"),
    ],
)
def test_bad_schedule_config_is_rejected_naming_the_key(
    overrides: list[str], key: str, message: str
) -> None:
    from relkd.config import compose
    from relkd.errors import ConfigError
    from tests.conftest import QUICKSTART

    with pytest.raises(ConfigError, match=rf"command line.*{key}.*{message}"):
        compose(QUICKSTART, overrides)


def test_temperature_multiplier_must_be_positive(tmp_path) -> None:
    from relkd.config import compose
    from relkd.errors import ConfigError
    from tests.conftest import QUICKSTART

    kd = ["loss.weights.soft_kl=1", f"data.teacher_cache={tmp_path}"]
    with pytest.raises(ConfigError, match=r"loss\.temperature_schedule.*> 0"):
        compose(QUICKSTART, [*kd, "loss.temperature_schedule.end=0"])


def test_a_schedule_key_dropped_by_kd_ratio_is_rejected(tmp_path) -> None:
    """kd_ratio 0 leaves soft_kl out, so its schedule would silently do nothing."""
    from relkd.config import compose
    from relkd.errors import ConfigError
    from tests.conftest import QUICKSTART

    kd = ["loss.weights.soft_kl=1", f"data.teacher_cache={tmp_path}", "loss.kd_ratio=0"]
    with pytest.raises(ConfigError, match=r"loss\.schedules\.soft_kl"):
        compose(QUICKSTART, [*kd, "loss.schedules.soft_kl.ramp=0.5"])
