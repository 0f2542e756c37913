"""Find every run under the report's arguments and give each a readable, unique name.

Any folder is searched recursively for run folders (``metrics.json`` + ``config.yaml``), so
single runs, ablations, pipelines and ``relkd tune`` studies need no special code. An ablation's
``results.csv`` (relkd/ablate/ablation_runner.py) names its runs by variant and seed; other runs
are named by their path under the argument.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from relkd.errors import ConfigError, DataError
from relkd.report.run_record import RunRecord, is_run_dir, load_run
from relkd.report.study_record import TRIALS_MD

RESULTS_CSV = "results.csv"
# folders that never hold runs of their own: a run's insides, an ablation's HParams view
_SKIPPED = frozenset({"checkpoints", "predictions", "hparams", "bm25"})


def _natural(text: str) -> list[object]:
    """Sort key that puts ``trial-2`` before ``trial-10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def find_run_dirs(root: Path) -> Iterator[Path]:
    """Run folders at or under ``root`` in natural path order; never inside a run folder, a
    hidden or staging folder, or a run moved aside as ``<run>.failed-<n>``."""
    if is_run_dir(root):
        yield root
        return
    for here, dirs, _ in os.walk(root):
        keep = []
        for d in sorted(dirs, key=_natural):
            if d.startswith(".") or d in _SKIPPED or ".failed-" in d:
                continue
            if is_run_dir(Path(here) / d):
                yield Path(here) / d
            else:
                keep.append(d)
        dirs[:] = keep


def ablation_names(folder: Path) -> dict[Path, tuple[str, int | None]]:
    """resolved run folder -> (variant, seed) from an ablation's ``results.csv``. Its run_dir
    column is ``<output_dir>/<name>/<variant slug>/<fingerprint>`` as the ablation saw it (often
    relative to where it ran), so the last two parts are looked up under ``folder``."""
    path = folder / RESULTS_CSV
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    names: dict[Path, tuple[str, int | None]] = {}
    for row in rows:
        run_dir, variant = row.get("run_dir"), row.get("variant")
        if not run_dir or not variant:
            raise DataError(f"{path}: expected columns variant and run_dir (relkd ablate's)")
        seed = row.get("seed")
        parts = Path(run_dir).parts
        for candidate in (folder.joinpath(*parts[-2:]), Path(run_dir)):
            if candidate.is_dir():
                names.setdefault(candidate.resolve(), (variant, int(seed) if seed else None))
                break
    return names


def _ablation_name(
    run: Path, root: Path, read: dict[Path, dict[Path, tuple[str, int | None]]]
) -> tuple[str, int | None] | None:
    """The variant and seed an enclosing ablation's results.csv gives ``run``, if any (``read``
    keeps each results.csv parsed once)."""
    for folder in [run, *run.parents]:
        if (folder / RESULTS_CSV).is_file():
            if folder not in read:
                read[folder] = ablation_names(folder)
            return read[folder].get(run.resolve())
        if folder == root:
            break
    return None


def _path_name(run: Path, root: Path) -> str:
    if run == root:
        return f"{run.parent.name}/{run.name}" if run.parent.name else run.name
    return f"{root.name}/{run.relative_to(root).as_posix()}"


def collect_runs(paths: Sequence[Path | str]) -> list[RunRecord]:
    """Every run under ``paths``, in argument order, each once; ConfigError naming an argument
    that does not exist or holds no run, DataError naming a corrupt file."""
    if not paths:
        raise ConfigError("report: give at least one run or ablation folder")
    runs: list[RunRecord] = []
    seen: set[Path] = set()
    read: dict[Path, dict[Path, tuple[str, int | None]]] = {}
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise ConfigError(f"{root}: no such folder")
        if not root.is_dir():
            raise ConfigError(f"{root}: not a folder (give a run, ablation or study folder)")
        found = list(find_run_dirs(root))
        if not found and not any(root.rglob(TRIALS_MD)):  # a study may have no finished run
            raise ConfigError(
                f"{root}: no run folders under it (a run folder has metrics.json and config.yaml)"
            )
        here = []
        for run_dir in found:
            if run_dir.resolve() in seen:
                continue
            seen.add(run_dir.resolve())
            record = load_run(run_dir, _path_name(run_dir, root), root)
            named = _ablation_name(run_dir, root, read)
            if named is not None:
                record.variant, record.seed = named
            here.append(record)
        # an ablation's runs in its results.csv order (variants as in its file, then seeds),
        # then the others in path order
        rank = {p: (t, i) for t, table in enumerate(read.values()) for i, p in enumerate(table)}
        runs += sorted(here, key=lambda r: rank.get(r.path.resolve(), (len(read), 0)))
    _name_variants(runs)
    _make_unique(runs)
    return runs


def _name_variants(runs: list[RunRecord]) -> None:
    """An ablation run is called by its variant, plus its seed when the variant has several."""
    counts: dict[tuple[Path, str], int] = {}
    for r in runs:
        if r.variant is not None:
            counts[(r.source, r.variant)] = counts.get((r.source, r.variant), 0) + 1
    for r in runs:
        if r.variant is None:
            continue
        several = counts[(r.source, r.variant)] > 1 and r.seed is not None
        r.name = f"{r.variant} [seed {r.seed}]" if several else r.variant


def _make_unique(runs: list[RunRecord]) -> None:
    """Two runs with one name (the same variant in two ablations) get their folder's name."""
    taken: dict[str, int] = {}
    for r in runs:
        taken[r.name] = taken.get(r.name, 0) + 1
    used: set[str] = set()
    for r in runs:
        name = r.name if taken[r.name] == 1 else f"{r.name} ({r.source.name}/{r.path.name})"
        base, n = name, 2
        while name in used:
            name, n = f"{base} #{n}", n + 1
        used.add(name)
        r.name = name
