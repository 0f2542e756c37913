"""Each loss file declares its own LossSpec; the registry collects them and derives every group's
term set from them, so a new term is one file (docs/architecture.md, "Adding a loss term")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import relkd.losses as losses_pkg
from relkd.data.label_scheme import get_label_scheme
from relkd.losses import registry
from relkd.losses.loss_spec import LossDims, LossSpec


def test_groups_derive_from_the_specs() -> None:
    assert {"hard_ce", "soft_target_ce", "graded_bce"} == registry.LABEL_TERMS
    assert {
        "soft_kl",
        "score_mse",
        "score_bce",
        "margin_mse",
        "listwise_kl",
    } == registry.SCORE_KD_TERMS
    assert {"cot_aspects", "hidden_mse"} == registry.AUXILIARY_TERMS
    assert registry.DISTILLATION_TERMS == registry.SCORE_KD_TERMS | registry.AUXILIARY_TERMS
    assert {"margin_mse", "listwise_kl"} == registry.GROUPED_TERMS
    assert {"cot_lm", "aspect_ce"} == registry.TEACHER_ONLY_TERMS
    assert {"adv_ce", "adv_kl", "adv_contrastive"} == registry.ADVERSARIAL_TERMS
    assert {"next_pair", "seq_relevance", "view_align"} == registry.SEQUENCE_TERMS
    assert set(registry.LOSS_TERMS) == set(registry.SPECS)
    for name, spec in registry.SPECS.items():  # every term in exactly one group
        assert spec.name == name
        groups = [
            g
            for g in (
                registry.LABEL_TERMS,
                registry.SCORE_KD_TERMS,
                registry.AUXILIARY_TERMS,
                registry.TEACHER_ONLY_TERMS,
                registry.ADVERSARIAL_TERMS,
                registry.SEQUENCE_TERMS,
            )
            if name in g
        ]
        assert len(groups) == 1, name


def test_a_new_loss_file_is_found_by_its_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pairwise_hinge.py").write_text(
        "import torch\n"
        "from relkd.losses.loss_spec import LossSpec\n"
        "class PairwiseHinge(torch.nn.Module):\n"
        "    def forward(self, outputs, batch):\n"
        "        return outputs['logits'].sum() * 0\n"
        "SPEC = LossSpec(name='pairwise_hinge', group='score_kd', needs_cache=True,\n"
        "                needs_group_size=True, build=lambda cfg, scheme, dims: PairwiseHinge())\n"
    )
    monkeypatch.setattr(losses_pkg, "__path__", [*losses_pkg.__path__, str(tmp_path)])
    specs = registry._collect_specs()
    assert specs["pairwise_hinge"].needs_group_size and "hard_ce" in specs
    scheme = get_label_scheme("esci")
    assert isinstance(specs["pairwise_hinge"].build(None, scheme, LossDims()), torch.nn.Module)


def test_a_spec_checks_itself() -> None:
    with pytest.raises(ValueError, match="group"):
        LossSpec(name="x", group="nope", build=lambda c, s, d: torch.nn.Identity())
    with pytest.raises(ValueError, match="needs_cache"):
        LossSpec(name="x", group="score_kd", needs_group_size=True, build=lambda c, s, d: None)
    with pytest.raises(Exception, match="feature_dim"):
        LossDims().need("feature_dim", "cot_aspects")
