"""Build the SEMINAR student from a config: its catalogue tables, its token table, and the
pretrained weights ``model.seminar.init_from`` names. Its ``SPEC`` lives here, beside the build
that needs the dataset (relkd/nets/seminar.py is the architecture alone)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig

from relkd.artifacts.checkpoint_file import checkpoint_state, net_weights
from relkd.behavior.sequence_artifact import SequenceArtifact
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError
from relkd.nets.encoder_presets import EncoderSpec
from relkd.nets.seminar import Seminar
from relkd.nets.student_spec import StudentParts, StudentSpec


def sequences_cache_dir(cfg: DictConfig) -> str:
    """Where user-sequence artifacts live: beside the tokenized stores."""
    return str(Path(cfg.data.cache_dir).parent / "sequences")


def build_seminar(cfg: DictConfig, spec: EncoderSpec, data_dir: Path) -> Seminar:
    """The net on ``data_dir``'s catalogue; with ``init_from`` its pretrained weights loaded."""
    s = cfg.model.seminar
    dataset = CanonicalDataset(data_dir)
    artifact = SequenceArtifact.open_or_build(dataset, sequences_cache_dir(cfg))
    tokenizer = spec.load_tokenizer()
    word_embeddings = None
    if s.text == "encoder":
        encoder = spec.build(dropout=0.0, layers=cfg.model.encoder_layers)
        word_embeddings = encoder.get_input_embeddings().weight.detach().clone()
        del encoder
    items_sha = dataset.verify()["items"]
    catalogue = json.dumps(
        {"items": items_sha, "tokenizer": spec.tokenizer, "vocab": len(tokenizer)}, sort_keys=True
    )
    net = Seminar(
        vocab_size=len(tokenizer),
        num_items=int(dataset.table("items", ["item_id"]).num_rows),
        attr_sizes=artifact.manifest["attr_sizes"],
        num_labels=dataset.scheme.num_labels,
        gains=dataset.scheme.gains,
        hidden=s.hidden,
        heads=s.heads,
        top_k=s.top_k,
        attention=s.attention,
        pq_subquantizers=s.pq_subquantizers,
        pq_bits=s.pq_bits,
        word_embeddings=word_embeddings,
        dropout=cfg.model.dropout,
        catalogue=catalogue,
        use_history=s.history,
    )
    if s.init_from:
        load_pretrained(net, Path(s.init_from))
    return net


def pretrained_checkpoint(path: Path) -> Path:
    """A run folder's best checkpoint (else last), or ``path`` itself when it is a file."""
    if path.is_file():
        return path
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = path / "checkpoints" / name
        if ckpt.is_file():
            return ckpt
    raise ConfigError(f"model.seminar.init_from: {path} is neither a checkpoint nor a run folder")


def load_pretrained(net: Seminar, path: Path) -> list[str]:
    """Load a seminar checkpoint's net weights into ``net``; returns the keys left at their
    initial values (PQ codebooks, which a pretraining run with exact attention lacks).

    Refused with a one-line ConfigError: a checkpoint without seminar weights, one built on
    another catalogue or vocabulary (its id and token rows would index other things), or one of
    another shape (hidden width, heads)."""
    ckpt_path = pretrained_checkpoint(path)
    weights = net_weights(checkpoint_state(ckpt_path, "model.seminar.init_from"))
    if "catalogue_digest" not in weights:
        raise ConfigError(
            f"{ckpt_path}: field state_dict has no seminar net (net.catalogue_digest)"
        )
    if not torch.equal(weights["catalogue_digest"], net.catalogue_digest):
        raise ConfigError(
            f"{ckpt_path}: field net.catalogue_digest differs: pretrained on another catalogue "
            "or tokenizer than this run's"
        )
    own = net.state_dict()
    shapes = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    if shapes:
        raise ConfigError(
            f"{ckpt_path}: field net.{shapes[0]} has shape {tuple(weights[shapes[0]].shape)}, "
            f"this net {tuple(own[shapes[0]].shape)} (model.seminar differs from pretraining)"
        )
    missing, unexpected = net.load_state_dict(weights, strict=False)
    stray = [k for k in list(missing) + list(unexpected) if not k.startswith("pq.")]
    if stray:
        raise ConfigError(f"{ckpt_path}: field net.{stray[0]} does not fit this seminar net")
    return list(missing)


def build_seminar_student(parts: StudentParts) -> Seminar:
    """model.student seminar, on ``parts.data_dir``'s catalogue (StudentSpec checks it is given)."""
    assert parts.data_dir is not None
    return build_seminar(parts.cfg, parts.encoder_spec, parts.data_dir)


SPEC = StudentSpec(
    name="seminar",
    display="SEMINAR",
    encoding="bi",  # query and item batched apart, beside the pair's user history
    build=build_seminar_student,
    needs_context="reads the user history of a catalogue pair",
    reads_sequences=True,
    needs_dataset=True,
)
