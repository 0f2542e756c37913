"""The schema of an ablation YAML (experiments/ablations/*.yaml).

An ablation names one base experiment and the variants to compare against it: a list of named
override sets (``variants``), a grid of values (``grid``: every combination is a variant named
``key=value, key=value``), or both. ``overrides`` (then any ``key=value`` on the command line)
apply to every variant; each variant runs once per seed. Unknown keys are errors, as in
experiment YAMLs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from relkd.config.yaml_file import read_yaml
from relkd.errors import ConfigError


@dataclass
class Variant:
    name: str = "variant"  # its row in the tables; its run folder is a slug of it
    overrides: list[str] = field(default_factory=list)


@dataclass
class AblationConfig:
    name: str = "ablation"
    output_dir: str = "runs/ablations"  # runs under <output_dir>/<name>/<variant>/<fingerprint>
    # as given, beside this file, else bundled (a name such as mkd/cross_encoder, or the
    # repository path experiments/mkd/cross_encoder.yaml): pipeline_runner.experiment_path
    experiment: str = "experiments/quickstart.yaml"
    overrides: list[str] = field(default_factory=list)  # every variant's, first
    seeds: list[int] = field(default_factory=lambda: [0])  # --seeds replaces it
    variants: list[Variant] = field(default_factory=list)
    # key -> values: one variant per combination, after the listed variants
    grid: dict[str, list[Any]] = field(default_factory=dict)
    # the variant every other one is compared with (paired difference over the test queries,
    # 95 % interval); null: the first variant
    baseline: str | None = None


@dataclass(frozen=True)
class ResolvedVariant:
    """A variant with where it came from, for error messages (``variants[1].overrides``)."""

    name: str
    overrides: tuple[str, ...]
    key: str


def slug(name: str) -> str:
    """A variant's folder name: lower case, runs of other characters as ``-``."""
    out = "".join(c if c.isalnum() else "-" for c in name.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def expand_variants(cfg: AblationConfig) -> list[ResolvedVariant]:
    """The listed variants, then one per grid combination (in the grid's key order)."""
    out = [
        ResolvedVariant(v.name, tuple(v.overrides), f"variants[{i}].overrides")
        for i, v in enumerate(cfg.variants)
    ]
    keys = list(cfg.grid)
    if not keys:  # product() of nothing is one empty combination
        return out
    for combo in itertools.product(*(cfg.grid[k] for k in keys)):
        pairs = [f"{k}={_value(v)}" for k, v in zip(keys, combo, strict=True)]
        out.append(ResolvedVariant(", ".join(pairs), tuple(pairs), "grid"))
    return out


def load_ablation(path: str | Path) -> AblationConfig:
    """Read and check an ablation YAML; a ConfigError names the file and the key."""
    path = Path(path)
    raw = read_yaml(path, "ablation")
    variants = raw.pop("variants", None) or []
    key = "?"
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(AblationConfig), raw)
        if not isinstance(variants, list) and not OmegaConf.is_list(variants):
            key = "variants"
            raise ConfigError(f"{path}: key variants: a list of {{name, overrides}}")
        steps = []
        for i, v in enumerate(variants):
            key = f"variants[{i}]"
            steps.append(OmegaConf.merge(OmegaConf.structured(Variant), v))
    except OmegaConfBaseException as exc:
        inner = getattr(exc, "full_key", None)
        where = f"{key}.{inner}" if key != "?" and inner else (inner or key)
        raise ConfigError(f"{path}: key {where}: {str(exc).splitlines()[0]}") from None
    out: AblationConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    out.variants = [OmegaConf.to_object(s) for s in steps]  # type: ignore[misc]
    for k, values in out.grid.items():
        if not values:
            raise ConfigError(f"{path}: key grid.{k}: give one or more values")
        if "=" in k or not k:
            raise ConfigError(f"{path}: key grid.{k}: a config key such as data.pool_ratio")
    expanded = expand_variants(out)
    if not expanded:
        raise ConfigError(f"{path}: key variants: name at least one variant (or a grid)")
    names = [v.name for v in expanded]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: key variants: names must be unique, {dup} repeated")
    slugs = [slug(n) for n in names]
    if "" in slugs:
        raise ConfigError(f"{path}: key variants: a name needs a letter or digit")
    clash = sorted({n for n, s in zip(names, slugs, strict=True) if slugs.count(s) > 1})
    if clash:
        raise ConfigError(f"{path}: key variants: names {clash} share a run folder name")
    if out.baseline is not None and out.baseline not in names:
        raise ConfigError(f"{path}: key baseline: {out.baseline!r} is not a variant ({names})")
    if not out.seeds or len(set(out.seeds)) != len(out.seeds):
        raise ConfigError(f"{path}: key seeds: name one or more distinct seeds")
    if not out.name.strip() or "/" in out.name or out.name in (".", ".."):
        raise ConfigError(f"{path}: key name: a folder name, got {out.name!r}")
    return out
