"""Reading a relkd YAML (experiment, pipeline, ablation, study): one place that turns a missing
file, a YAML syntax error or a top level that is not a mapping into a one-line ConfigError."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from relkd.errors import ConfigError


def read_yaml(path: Path, what: str = "experiment") -> DictConfig:
    """The file's mapping; ``what`` names the kind of file in the messages."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        # OmegaConf reads a lone string as a one-key mapping ({"text": None}): look first
        plain = yaml.safe_load(path.read_text(encoding="utf-8"))
        conf = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError, UnicodeDecodeError and OmegaConf errors alike
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(conf, DictConfig) or not isinstance(plain, dict | None):
        raise ConfigError(f"{path}: top level must be a mapping")
    return conf
