"""Encoder loading and the training-speed switches: an unknown ``model.encoder`` falls back or
fails in one line; ``model.attn_implementation``, ``optim.fused`` and ``trainer.compile`` take
effect."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError
from relkd.nets.encoder_presets import resolve_encoder
from tests.conftest import QUICKSTART, tiny_overrides

UNKNOWN = "no-such-org/no-such-encoder-xyz"


def _cfg(tmp_path: Path, data_root: Path, **extra: object) -> Any:
    return compose(QUICKSTART, tiny_overrides(tmp_path / "runs", data_root, **extra))


def test_unknown_encoder_falls_back_with_a_warning(
    tmp_path: Path, shared_data_root: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _cfg(
        tmp_path,
        shared_data_root,
        **{"model.encoder": UNKNOWN, "model.fallback_encoder": "tiny-bert"},
    )
    with caplog.at_level(logging.WARNING, logger="relkd.nets.encoder_presets"):
        spec = resolve_encoder(cfg.model)
    assert spec.name == "tiny-bert"
    assert any("model.encoder" in r.message and UNKNOWN in r.message for r in caplog.records)


def test_unknown_encoder_without_fallback_is_a_one_line_config_error(
    tmp_path: Path, shared_data_root: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _cfg(tmp_path, shared_data_root, **{"model.encoder": UNKNOWN})
    with pytest.raises(ConfigError) as info:
        resolve_encoder(cfg.model)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model.encoder:") and UNKNOWN in message


def test_attn_implementation_switch_takes_effect(tmp_path: Path, shared_data_root: Path) -> None:
    from relkd.runs.dataset_resolver import resolve_dataset
    from relkd.runs.student_factory import build_net, encoder_spec

    nets = {}
    for attn in ("sdpa", "eager"):
        cfg = _cfg(tmp_path, shared_data_root, **{"model.attn_implementation": attn})
        spec = encoder_spec(cfg, resolve_dataset(cfg.data))
        nets[attn] = build_net(cfg, spec, 4).eval()
        assert nets[attn].encoder.config._attn_implementation == attn
    nets["eager"].load_state_dict(nets["sdpa"].state_dict())
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    with torch.no_grad():
        a = nets["sdpa"](input_ids=ids, attention_mask=mask)["logits"]
        b = nets["eager"](input_ids=ids, attention_mask=mask)["logits"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # same maths, other kernel


def _student(cfg: Any) -> Any:
    from relkd.runs.dataset_resolver import resolve_dataset
    from relkd.runs.student_factory import build_student, encoder_spec

    data_dir = resolve_dataset(cfg.data)
    spec = encoder_spec(cfg, data_dir)
    return build_student(cfg, spec, CanonicalDataset(data_dir).scheme, ("val",))


@pytest.mark.parametrize("fused", [True, False])
def test_optim_fused_picks_the_fused_adamw(
    tmp_path: Path, shared_data_root: Path, fused: bool
) -> None:
    module = _student(_cfg(tmp_path, shared_data_root, **{"optim.fused": fused}))
    module.trainer = SimpleNamespace(estimated_stepping_batches=10)  # type: ignore[assignment]
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert bool(optimizer.defaults["fused"]) is fused


def test_optim_fused_yields_to_clipping_under_mixed_precision(
    tmp_path: Path, shared_data_root: Path
) -> None:
    from lightning.pytorch.plugins.precision import MixedPrecision

    module = _student(_cfg(tmp_path, shared_data_root, **{"optim.fused": True}))
    plugin = MixedPrecision("bf16-mixed", "cpu")
    for clip, fused in ((1.0, False), (None, True)):
        module.trainer = SimpleNamespace(  # type: ignore[assignment]
            estimated_stepping_batches=10, precision_plugin=plugin, gradient_clip_val=clip
        )
        optimizer = module.configure_optimizers()["optimizer"]
        assert bool(optimizer.defaults["fused"]) is fused


def test_trainer_compile_compiles_the_net_in_place(tmp_path: Path, shared_data_root: Path) -> None:
    plain = _student(_cfg(tmp_path, shared_data_root))
    compiled = _student(_cfg(tmp_path, shared_data_root, **{"trainer.compile": True}))
    assert plain.net._compiled_call_impl is None
    assert compiled.net._compiled_call_impl is not None
    # in place: the checkpoint keys do not change
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_deterministic_fit_skips_the_nan_fill_of_new_tensors(
    tmp_path: Path, shared_data_root: Path
) -> None:
    import torch.utils.deterministic as det

    module = _student(_cfg(tmp_path, shared_data_root))
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert det.fill_uninitialized_memory
        module.setup("fit")  # what Lightning calls once trainer.deterministic has been applied
        assert not det.fill_uninitialized_memory
        assert torch.are_deterministic_algorithms_enabled()  # the algorithms stay deterministic
        module.teardown("fit")
        assert det.fill_uninitialized_memory
    finally:
        torch.use_deterministic_algorithms(was)
