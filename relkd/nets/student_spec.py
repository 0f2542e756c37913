"""What a student architecture declares about itself: its ``model.student`` name, how the
DataModule encodes its pairs, how its net is built, and what it reads beyond the pair's text.

Every student's file ends with its ``SPEC`` (relkd/nets/cross_encoder.py, two_tower.py,
berm.py, seminar_build.py); relkd/nets/student_registry.py finds them. The config checks, the
DataModule's batch features, the factory, the ONNX export and ``relkd explain`` read the spec
instead of testing the student's name, so a new student is its net file with a ``SPEC`` and its
YAML (docs/architecture.md, "Adding a student", walks through it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from omegaconf import DictConfig
from torch import nn

from relkd.nets.encoder_presets import EncoderSpec

# how the DataModule lays out a pair: "cross" packs [CLS] query [SEP] item [SEP] into one row;
# "bi" tokenizes query and item apart (towers, sequence students)
ENCODINGS = ("cross", "bi")
# the ONNX graph family a servable student exports to (relkd/serving/onnx_export.py)
SERVING_GRAPHS = ("cross_encoder", "two_tower")


@dataclass(frozen=True)
class StudentParts:
    """What a spec builds its net from; relkd/runs/student_factory.py fills it in."""

    cfg: DictConfig  # the composed config (model.*, data.* read)
    num_labels: int
    encoder: Callable[[], nn.Module]  # a fresh encoder per call: pretrained, truncated, frozen
    encoder_spec: EncoderSpec  # what model.encoder resolved to (its tokenizer, its builder)
    data_dir: Path | None  # the resolved dataset, for students built on its catalogue


@dataclass(frozen=True)
class StudentSpec:
    """One student architecture.

    Args:
        name: its ``model.student`` value.
        display: how printed tables name it (``cross-encoder minilm L3``).
        encoding: ``cross`` or ``bi`` (see ENCODINGS).
        build: the net from the parts.
        serving_graph: the ONNX graph family it exports to; None: not exportable.
        needs_context: what it reads beyond the pair's text at serving time (why export and
            free-text explanations refuse it), or None.
        reads_metapaths: its batches carry click-graph metapath neighbours (model.berm).
        reads_sequences: its batches carry each pair's user history (data.sequences).
        perturbable: the adversarial loss terms may perturb its word embeddings.
        needs_dataset: build reads ``data_dir``'s catalogue (it must be given).
    """

    name: str
    display: str
    encoding: Literal["cross", "bi"]
    build: Callable[[StudentParts], nn.Module]
    serving_graph: Literal["cross_encoder", "two_tower"] | None = None
    needs_context: str | None = None
    reads_metapaths: bool = False
    reads_sequences: bool = False
    perturbable: bool = False
    needs_dataset: bool = False

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"student {self.name}: encoding {self.encoding!r} not in {ENCODINGS}")
        if self.serving_graph is not None and self.serving_graph not in SERVING_GRAPHS:
            raise ValueError(
                f"student {self.name}: serving_graph {self.serving_graph!r} not in {SERVING_GRAPHS}"
            )
        if (self.serving_graph is None) == (self.needs_context is None):
            raise ValueError(
                f"student {self.name}: give serving_graph (exportable) or needs_context (why "
                "not), exactly one"
            )

    def build_net(self, parts: StudentParts) -> nn.Module:
        """The net, with ``feature_dim`` (the width of its outputs["features"]) checked."""
        if self.needs_dataset and parts.data_dir is None:
            raise ValueError(f"model.student {self.name} is built on a dataset: pass data_dir")
        net = self.build(parts)
        if not isinstance(getattr(net, "feature_dim", None), int):
            raise TypeError(f"student {self.name}: its net declares no int feature_dim")
        return net


__all__ = ["ENCODINGS", "SERVING_GRAPHS", "StudentParts", "StudentSpec"]
