"""Each student file declares its StudentSpec; the registry finds them, and the config checks,
the factory, the DataModule's batch features, the ONNX export and ``relkd explain`` read the
spec instead of the student's name, so a new student is its own file and its YAML
(docs/architecture.md, "Adding a student")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import relkd.nets as nets_pkg
from relkd.config import compose
from relkd.errors import ConfigError
from relkd.nets import student_registry
from relkd.nets.student_spec import StudentSpec
from tests.conftest import QUICKSTART, tiny_overrides

MEAN_BAG = '''
"""A planted student: the mean of the encoder's word embeddings over the packed pair."""
from torch import nn

from relkd.nets.student_spec import StudentParts, StudentSpec


class MeanBag(nn.Module):
    input_keys = ("input_ids", "attention_mask")

    def __init__(self, encoder: nn.Module, num_labels: int) -> None:
        super().__init__()
        self.embeddings = encoder.get_input_embeddings()
        self.hidden_size = self.embeddings.embedding_dim
        self.feature_dim = self.hidden_size
        self.head = nn.Linear(self.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask):
        e = self.embeddings(input_ids)
        m = attention_mask.unsqueeze(-1).to(e.dtype)
        pooled = (e * m).sum(1) / m.sum(1).clamp_min(1.0)
        return {"logits": self.head(pooled), "pooled": pooled, "features": pooled}


def build_mean_bag(parts: StudentParts) -> MeanBag:
    return MeanBag(parts.encoder(), parts.num_labels)


SPEC = StudentSpec(
    name="mean_bag",
    display="mean-bag",
    encoding="cross",
    build=build_mean_bag,
    serving_graph="cross_encoder",
)
'''


def test_the_registry_finds_every_shipped_student() -> None:
    specs = student_registry.STUDENT_SPECS
    assert set(specs) == {"cross_encoder", "two_tower", "berm", "seminar"}
    assert {n: s.encoding for n, s in specs.items()} == {
        "cross_encoder": "cross",
        "two_tower": "bi",
        "berm": "cross",
        "seminar": "bi",
    }
    assert student_registry.servable_students() == ["cross_encoder", "two_tower"]
    assert [n for n, s in specs.items() if s.reads_metapaths] == ["berm"]
    assert [n for n, s in specs.items() if s.reads_sequences] == ["seminar"]
    assert [n for n, s in specs.items() if s.perturbable] == ["cross_encoder"]
    with pytest.raises(ConfigError, match=r"model\.student: 'poly' not in \['berm', "):
        student_registry.student_spec("poly")


def test_a_spec_checks_itself() -> None:
    def build(parts):  # never called
        raise AssertionError

    with pytest.raises(ValueError, match="encoding 'pair'"):
        StudentSpec(
            name="x", display="x", encoding="pair", build=build, serving_graph="cross_encoder"
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one"):
        StudentSpec(name="x", display="x", encoding="cross", build=build)
    with pytest.raises(ValueError, match="exactly one"):
        StudentSpec(
            name="x",
            display="x",
            encoding="cross",
            build=build,
            serving_graph="two_tower",
            needs_context="y",
        )


def test_a_student_that_reads_context_is_refused_by_export_and_free_text_explain(
    tmp_path: Path,
) -> None:
    """The refusals come from the spec's needs_context, for each student that has one."""
    from relkd.serving import onnx_export

    for name in ("berm", "seminar"):
        cfg = compose(QUICKSTART, [f"model.student={name}", "model.pooling=mean"])
        why = onnx_export._unsupported(cfg)
        assert why is not None and why.startswith(f"model.student {name} reads the ")
        assert "export serves cross_encoder and two_tower students" in why
    for name in ("cross_encoder", "two_tower"):
        cfg = compose(QUICKSTART, [f"model.student={name}"])
        assert onnx_export._unsupported(cfg) is None


@pytest.fixture
def planted(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """relkd/nets/ plus one more folder holding mean_bag.py; the registry rebuilt over both."""
    folder = tmp_path_factory.mktemp("planted_nets")
    (folder / "mean_bag.py").write_text(MEAN_BAG)
    monkeypatch.setattr(nets_pkg, "__path__", [*nets_pkg.__path__, str(folder)])
    monkeypatch.setattr(student_registry, "STUDENT_SPECS", student_registry._collect_specs())
    yield
    import sys

    sys.modules.pop("relkd.nets.mean_bag", None)


def test_a_new_student_file_is_composed_built_trained_and_evaluated(
    planted: None, tmp_path: Path, shared_data_root: Path
) -> None:
    """One planted file, and `model.student: mean_bag` composes (with the cross-only settings
    its encoding allows), builds, trains, evaluates and names itself in its run."""
    from relkd.train import run_training

    assert "mean_bag" in student_registry.STUDENT_SPECS
    overrides = tiny_overrides(tmp_path / "runs", shared_data_root, **{"model.student": "mean_bag"})
    cfg = compose(QUICKSTART, overrides)
    assert cfg.model.student == "mean_bag"
    with pytest.raises(ConfigError, match=r"model\.student is mean_bag"):  # not perturbable
        compose(QUICKSTART, [*overrides, "loss.weights.adv_ce=1.0"])
    compose(QUICKSTART, [*overrides, "data.layout=slots"])  # a cross encoding: allowed
    run = run_training(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["overall"]["ndcg@10"] <= 1.0
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    keys = set(state["state_dict"])
    assert "net.embeddings.weight" in keys and "net.head.weight" in keys
    assert not any(k.startswith("net.encoder.") for k in keys)  # its own net, not a cross-encoder
    from relkd.runs.run_setup import student_name

    assert student_name(cfg.model) == "mean-bag tiny-bert"  # printed tables: the spec's display
