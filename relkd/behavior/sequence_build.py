"""``relkd sequences build EXPERIMENT [k=v ...]``: build (or reuse) the user sequences a config
reads, and print how long the histories are."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from relkd.behavior.sequence_artifact import SequenceArtifact
from relkd.config import compose
from relkd.runs.dataset_resolver import dataset_with_behavior
from relkd.runs.seminar_setup import sequences_cache_dir


def build_sequences_from_cli(experiment: str | Path, overrides: list[str]) -> SequenceArtifact:
    cfg = compose(experiment, overrides)
    _, dataset = dataset_with_behavior(cfg, "sequences")
    t0 = time.perf_counter()
    artifact = SequenceArtifact.open_or_build(dataset, sequences_cache_dir(cfg))
    m, seq = artifact.manifest, artifact.sequences()
    has = np.flatnonzero(seq.ctx_user >= 0)
    _, mask = seq.history(seq.ctx_user[has], seq.ctx_time[has], cfg.data.sequences.max_length)
    lengths = mask.sum(1)
    q = np.percentile(lengths, [25, 50, 75]) if len(lengths) else [0, 0, 0]
    print(
        f"user sequences: {artifact.root} ({time.perf_counter() - t0:.1f} s; built in "
        f"{m['build_seconds']} s)\n"
        f"  {m['events']} events, {m['clicks']} clicks, {m['users']} users; pairs with a "
        f"context {m['pairs_with_context']} of {m['pairs']}\n"
        f"  history length (max_length {cfg.data.sequences.max_length}) over pairs with a "
        f"context: quartiles {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f}"
    )
    return artifact
