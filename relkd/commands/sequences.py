"""``relkd sequences build EXPERIMENT``: the user histories SEMINAR reads."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    seqs = sub.add_parser("sequences", help="user histories from the behaviour log (SEMINAR)")
    ssub = seqs.add_subparsers(dest="sequences_cmd", required=True)
    sbuild = ssub.add_parser("build", help="build the user sequences an experiment reads")
    sbuild.add_argument("experiment", type=experiment_arg(), help="an experiment YAML or name")
    sbuild.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.sequences.max_length=32"
    )
    sbuild.set_defaults(func=build_command)


def build_command(args: argparse.Namespace) -> int:
    build_sequences_from_cli(args.experiment, args.overrides)
    return 0


def build_sequences_from_cli(experiment: str | Path, overrides: list[str]) -> Any:
    """Build the config's user sequences (or reuse them) and print how long the histories are."""
    import numpy as np

    from relkd.behavior.sequence_artifact import SequenceArtifact
    from relkd.config import compose
    from relkd.nets.seminar_build import sequences_cache_dir
    from relkd.runs.dataset_resolver import dataset_with_behavior

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
