"""Find the dataset an experiment names; build the synthetic one once, keyed by its parameters.

A synthetic dataset lives at ``<dataset_root>/synthetic-<key>`` where the key hashes every
generator parameter, so changing a parameter builds a new folder and never rewrites an old one.
A folder whose manifest disagrees with the requested parameters is refused, not rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from relkd.artifacts.identity import json_digest, short_id
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.data_config import DataConfig, SyntheticDataConfig
from relkd.errors import ConfigError, DataError, StaleArtifactError

log = logging.getLogger(__name__)


def synthetic_key(params: dict[str, Any]) -> str:
    return short_id(json_digest(params), 10)


def resolve_dataset(data_cfg: DataConfig | DictConfig, build: bool = True) -> Path:
    """The dataset folder for ``data`` (a DataConfig, or the composed config's node of its
    schema); builds a missing synthetic dataset when ``build``."""
    if data_cfg.kind == "path":
        root = Path(data_cfg.path)
        CanonicalDataset(root)  # raises DataError naming the folder if it is not a dataset
        return root
    from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset

    params = {f.name: getattr(data_cfg.synthetic, f.name) for f in fields(SyntheticDataConfig)}
    root = Path(data_cfg.dataset_root) / f"synthetic-{synthetic_key(params)}"
    if (root / "manifest.json").is_file():
        stored = CanonicalDataset(root).manifest.source.get("params", {})
        differing = sorted(k for k in params if stored.get(k) != params[k])
        if differing:
            raise StaleArtifactError(
                f"{root}: manifest parameters {differing} differ from data.synthetic; "
                "delete the folder to rebuild it"
            )
        return root
    if root.exists() and any(root.iterdir()):
        raise StaleArtifactError(
            f"{root}: exists without a manifest (interrupted build?); delete it"
        )
    if not build:
        raise ConfigError(f"{root}: synthetic dataset not built yet")
    log.info("building synthetic dataset %s at %s", params, root)
    try:
        generate_dataset(SynthConfig(**params), root)
    except DataError:
        if (root / "manifest.json").is_file():  # a parallel process (a tune worker) built it
            return resolve_dataset(data_cfg, build=False)  # first: check it as any other
        raise
    return root


def dataset_with_behavior(cfg: DictConfig, what: str) -> tuple[Path, Any]:
    """(folder, CanonicalDataset) of ``cfg``'s dataset, built if missing; a ConfigError when it
    has no behaviour table to build ``what`` from (the click graph, the user sequences)."""
    from relkd.data.canonical_dataset import CanonicalDataset
    from relkd.errors import ConfigError

    data_dir = resolve_dataset(cfg.data, build=True)
    dataset = CanonicalDataset(data_dir)
    if not dataset.has_table("behavior"):
        raise ConfigError(f"{data_dir}: the dataset has no behavior table to build {what} from")
    return data_dir, dataset
