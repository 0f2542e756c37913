"""Build the DataModule and the student from a composed config (shared by train and eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from datamodules import QueryItemDataModule
from datamodules.graph_features import ClickGraphSpec
from datamodules.sequence_features import SequenceSpec
from lightning_modules.student_module import StudentModule
from relkd.data.data_config import DataConfig
from relkd.losses.registry import build_loss
from relkd.nets.encoder_presets import EncoderSpec, resolve_encoder
from relkd.nets.student_registry import student_spec
from relkd.nets.student_spec import StudentParts


def encoder_spec(cfg: DictConfig, data_dir: Path) -> EncoderSpec:
    """Resolve ``model.encoder``; a fallback vocabulary (no MiniLM) is cached under data.cache_dir."""
    return resolve_encoder(cfg.model, data_dir, Path(cfg.data.cache_dir) / "tokenizers")


def click_graph_spec(cfg: DictConfig) -> ClickGraphSpec:
    """What the batches read from the click graph: BERM's metapath neighbours (model.student
    berm) and the clicked/cold eval slices (data.click_graph.slices)."""
    g, m = cfg.data.click_graph, cfg.model
    berm = student_spec(m.student).reads_metapaths
    return ClickGraphSpec(
        cache_dir=str(Path(cfg.data.cache_dir).parent / "graphs"),
        top_k=g.top_k,
        min_clicks=g.min_clicks,
        eval_queries=g.eval_queries,
        neighbor_tokens=g.neighbor_tokens,
        slices=g.slices,
        metapaths=tuple(m.berm.metapaths) if berm else (),
        order=m.berm.order if berm else 1,
    )


def sequence_spec(cfg: DictConfig) -> SequenceSpec | None:
    """Each row's user history, for a student that reads it (None for the others)."""
    if not student_spec(cfg.model.student).reads_sequences:
        return None
    from relkd.nets.seminar_build import sequences_cache_dir

    q = cfg.data.sequences
    return SequenceSpec(
        cache_dir=sequences_cache_dir(cfg),
        max_length=q.max_length,
        query_tokens=q.query_tokens,
        item_tokens=q.item_tokens,
        negatives=q.negatives,
        train_on=q.train_on,
    )


def build_datamodule(cfg: DictConfig, data_dir: Path, spec: EncoderSpec) -> QueryItemDataModule:
    """The student's DataModule: the run's data settings, batched the way its student reads."""
    return QueryItemDataModule(
        data_dir,
        spec.tokenizer,
        DataConfig.of(cfg.data),
        encoding=student_spec(cfg.model.student).encoding,
        click_graph=click_graph_spec(cfg),
        sequences=sequence_spec(cfg),
        seed=cfg.seed,
    )


def build_net(
    cfg: DictConfig, spec: EncoderSpec, num_labels: int, data_dir: Path | None = None
) -> nn.Module:
    """The student architecture ``model.student`` names (its StudentSpec builds it), on the
    resolved encoder; students built on a catalogue read ``data_dir``."""
    m = cfg.model
    student = student_spec(m.student)

    def encoder() -> nn.Module:
        enc = spec.build(
            dropout=m.dropout,
            layers=m.encoder_layers,
            attn_implementation=m.get("attn_implementation"),
        )
        if cfg.data.professional_terms:  # one row per mined term (relkd/terms/vocab.py)
            from relkd.runs.dataset_resolver import resolve_dataset
            from relkd.terms import extend_embeddings, terms_for_config

            tok = spec.load_tokenizer()
            terms = terms_for_config(cfg, resolve_dataset(cfg.data, build=False), tok)
            extend_embeddings(enc, tok, terms.terms)
        if m.freeze_embeddings:
            # the word-embedding table is most of a small student's weights (11.7M of MiniLM-L2's
            # 15.5M): frozen, a step is ~1.6x faster on a CPU and the table cannot overfit
            enc.get_input_embeddings().weight.requires_grad_(False)
        return enc

    parts = StudentParts(
        cfg=cfg, num_labels=num_labels, encoder=encoder, encoder_spec=spec, data_dir=data_dir
    )
    return student.build_net(parts)


def teacher_hidden_dim(cfg: DictConfig) -> int | None:
    """Width of the cache's pooled teacher hidden states (None: no cache, or none stored)."""
    if not cfg.data.teacher_cache:
        return None
    from relkd.teacher_cache.cache_writer import read_cache_manifest

    final = read_cache_manifest(Path(cfg.data.teacher_cache)).get("finalized") or {}
    return int(final.get("hidden_dim") or 0) or None


def build_student(
    cfg: DictConfig,
    spec: EncoderSpec,
    scheme: Any,
    eval_splits: tuple[str, ...],
    data_dir: Path | None = None,
) -> StudentModule:
    net = build_net(cfg, spec, scheme.num_labels, data_dir)
    loss = build_loss(
        cfg.loss,
        scheme,
        feature_dim=net.feature_dim,
        pooled_dim=net.hidden_size,
        teacher_hidden_dim=teacher_hidden_dim(cfg),
    )
    if cfg.trainer.get("compile"):
        # in place (nn.Module.compile): parameter names, hence checkpoints, are unchanged
        net.compile()
    return StudentModule(
        net=net, loss=loss, scheme=scheme, optim=dict(cfg.optim), eval_splits=eval_splits
    )


__all__ = ["build_datamodule", "build_net", "build_student", "encoder_spec"]
