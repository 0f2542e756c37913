"""Find an experiment YAML: a path as given, else one bundled with relkd, by name.

The repository's top-level ``experiments/`` folder ships in the relkd distribution as package
data at ``relkd/experiments/`` (in the source tree that is a symlink to ``../experiments``; the
wheel holds copies). So an installed ``relkd`` finds ``quickstart``, ``mkd/cross_encoder``,
``pipeline/quickstart`` or ``ablations/mkd`` from any directory, and the bundled pipeline and
ablation files, which name experiments as repository paths (``experiments/mkd/cross_encoder.yaml``),
resolve against the bundle too.

Standard library only: ``relkd.cli`` uses :func:`experiment_arg` as an argparse ``type=``, and
``relkd --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from relkd.errors import ConfigError

BUNDLE = "experiments"  # the folder inside the relkd package
SUFFIX = ".yaml"
REPO_PREFIX = f"{BUNDLE}/"  # how the bundled pipeline/ablation files name an experiment


def bundled_experiments() -> Path:
    """The folder of bundled experiment YAMLs, resolved: in an installed wheel
    ``site-packages/relkd/experiments``; in a source checkout (or an editable install) the
    repository's ``experiments/``, through the ``relkd/experiments`` symlink."""
    root = resources.files("relkd").joinpath(BUNDLE)
    if not isinstance(root, Path):  # a zip import: extends: and base.yaml need real files
        raise ConfigError(f"relkd is imported from an archive ({root}); install it unpacked")
    return root.resolve()


def bundled_names() -> list[str]:
    """Every bundled experiment by name: its path under the bundle, without ``.yaml``."""
    root = bundled_experiments()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*" + SUFFIX))


def _name(text: str) -> str:
    """``experiments/mkd/cross_encoder.yaml`` -> ``mkd/cross_encoder``."""
    name = text.replace("\\", "/").removeprefix("./").removeprefix(REPO_PREFIX)
    return name.removesuffix(SUFFIX)


def bundled_experiment(name: str, folder: str | None = None) -> Path | None:
    """The bundled file named ``name`` (``folder/name`` first when a folder is given), or None."""
    root = bundled_experiments()
    key = _name(name)
    for rel in ([f"{folder}/{key}"] if folder else []) + [key]:
        candidate = (root / f"{rel}{SUFFIX}").resolve()
        if candidate.is_file() and candidate.is_relative_to(root):  # no ../ out of the bundle
            return candidate
    return None


def close_names(name: str, folder: str | None = None) -> list[str]:
    """Bundled names a mistyped ``name`` probably meant, best first (at most six)."""
    names = bundled_names()
    key = _name(name).strip("/")
    tail = key.rsplit("/", 1)[-1]
    found = [n for n in names if n.startswith(f"{key}/")]  # a folder: its files
    found += [n for n in names if n.rsplit("/", 1)[-1] == tail]  # the right file, wrong folder
    if folder:  # compare within the folder, or its shared prefix makes everything look close
        inside = [n.removeprefix(f"{folder}/") for n in names if n.startswith(f"{folder}/")]
        found += [f"{folder}/{n}" for n in difflib.get_close_matches(key, inside, n=6, cutoff=0.6)]
    found += difflib.get_close_matches(key, names, n=6, cutoff=0.6)
    return list(dict.fromkeys(found))[:6]


def find_experiment(name_or_path: str | Path, folder: str | None = None) -> Path:
    """An existing file as given; else a bundled experiment by name, with or without ``.yaml``
    or an ``experiments/`` prefix (``quickstart``, ``mkd/cross_encoder``, ``pipeline/quickstart``,
    ``experiments/ablations/mkd.yaml``); ``folder`` (``pipeline``, ``ablations``) is tried first,
    so ``relkd pipeline quickstart`` means ``pipeline/quickstart``. A one-line ConfigError lists
    close bundled names when there is none."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    bundled = bundled_experiment(str(name_or_path), folder)
    if bundled is not None:
        return bundled
    close = close_names(str(name_or_path), folder)
    hint = f"close: {', '.join(close)}" if close else f"bundled: {_overview(folder)}"
    raise ConfigError(
        f"{name_or_path}: experiment not found (no such file, nor a bundled name); {hint}"
    )


def _overview(folder: str | None) -> str:
    """The bundle in a few words: a folder's files, else the top-level files and folders."""
    names = bundled_names()
    inside = [n for n in names if folder and n.startswith(f"{folder}/")]
    if inside:
        return ", ".join(inside[:10]) + (", ..." if len(inside) > 10 else "")
    top = [n for n in names if "/" not in n]
    folders = sorted({n.split("/", 1)[0] + "/" for n in names if "/" in n})
    return f"{', '.join(top + folders)} (in {bundled_experiments()})"


def experiment_arg(folder: str | None = None) -> Callable[[str], Path]:
    """An argparse ``type=``: the file :func:`find_experiment` finds. A name that matches
    nothing is a usage error at once, with the close names (no subcommand import first); a
    missing ``.yaml`` path is passed on, for the command to report as before."""

    def experiment(text: str) -> Path:
        try:
            return find_experiment(text, folder)
        except ConfigError as exc:
            if Path(text).suffix in (SUFFIX, ".yml"):
                return Path(text)
            raise argparse.ArgumentTypeError(str(exc)) from None

    return experiment
