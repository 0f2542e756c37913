"""Run an ablation: every variant x seed as its own ``relkd train`` process, then the tables.

Every variant x seed is composed and checked before anything runs. Its run folder is
``<output_dir>/<name>/<variant>/<fingerprint>/``, the fingerprint the pipeline's
(``step_fingerprint``: the resolved config less where it is written), so a finished run
(``metrics.json``) is reused, never retrained. A folder left by a killed run is resumed from its
``checkpoints/last.ckpt`` when it has one, else moved aside to ``<folder>.failed-<n>`` and started
again; nothing is deleted. Each run's output goes to ``<folder>.log`` (appended), its resolved
config to ``<folder>.yaml``. A failed run is reported with its log once the others finish.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from relkd.ablate.ablation_config import (
    AblationConfig,
    ResolvedVariant,
    expand_variants,
    load_ablation,
    slug,
)
from relkd.artifacts.atomic_files import atomic_write_bytes
from relkd.config import compose, save
from relkd.errors import ConfigError
from relkd.pipeline.comparison_table import (
    COLUMNS,
    GROUPS,
    SLICES,
    bucket_table,
    cell,
    has_slices,
    markdown_table,
    metric,
    paired_note,
    paired_table,
)
from relkd.pipeline.pipeline_runner import experiment_path, placement, step_fingerprint
from relkd.runs.run_dir import VERSION_ENV

SPLIT = "test"  # the split the tables compare
LOWER_IS_BETTER = frozenset({"class_ece"})


@dataclass
class AblationRun:
    variant: ResolvedVariant
    seed: int
    config: DictConfig  # resolved, with output_dir / experiment / version placed
    run_dir: Path
    status: str = "pending"  # reused | ran | resumed | failed
    seconds: float = 0.0
    returncode: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".log")

    @property
    def config_file(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".yaml")


@dataclass
class AblationReport:
    text: str  # results.md's main table and a summary line
    runs: list[AblationRun]

    @property
    def failed(self) -> list[AblationRun]:
        return [r for r in self.runs if r.status == "failed"]


def _reason(exc: ConfigError) -> str:
    text = str(exc)
    return text.removeprefix("command line: ")


class AblationRunner:
    """Plans, runs and tabulates one ablation config (see the module docstring)."""

    def __init__(
        self, cfg: AblationConfig, source: Path, cli_overrides: Sequence[str], jobs: int = 1
    ) -> None:
        if jobs < 1:
            raise ConfigError(f"--jobs: at least 1, got {jobs}")
        self.cfg = cfg
        self.source = source
        output_dir, self.cli = placement(list(cli_overrides), "ablation", "variant")
        cfg.output_dir = output_dir or cfg.output_dir
        self.jobs = jobs
        self.root = Path(cfg.output_dir) / cfg.name
        self.variants = expand_variants(cfg)
        self._print_lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._print_lock:
            print(f"[ablate] {text}", flush=True)

    # ---- planning: every variant x seed composed before anything runs ----
    def plan(self) -> list[AblationRun]:
        path = experiment_path(self.cfg.experiment, self.source)
        try:  # the shared layers first, so a bad one is named once, not per variant
            compose(path, [*self.cfg.overrides, *self.cli])
        except ConfigError as exc:
            try:
                compose(path, self.cli)
            except ConfigError:
                where = "command-line overrides" if self.cli else "key experiment"
                raise ConfigError(f"{self.source}: {where}: {exc}") from None
            raise ConfigError(f"{self.source}: key overrides: {_reason(exc)}") from None
        runs = []
        for v in self.variants:
            for seed in self.cfg.seeds:
                layered = [*self.cfg.overrides, *v.overrides, *self.cli, f"seed={seed}"]
                try:
                    cfg = compose(path, layered)
                except ConfigError as exc:
                    raise ConfigError(
                        f"{self.source}: key {v.key} (variant {v.name!r}): {_reason(exc)}"
                    ) from None
                if cfg.task not in ("student", "teacher"):
                    raise ConfigError(f"{self.source}: key experiment: unknown task {cfg.task}")
                digest = step_fingerprint(cfg)
                placed = [
                    *layered,
                    f"output_dir={self.root}",
                    f"experiment={slug(v.name)}",
                    f"version={digest}",
                ]
                run_dir = self.root / slug(v.name) / digest
                runs.append(AblationRun(v, seed, compose(path, placed), run_dir))
        return runs

    # ---- running ----
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop(VERSION_ENV, None)  # each child claims its own run folder
        if self.jobs > 1 and "OMP_NUM_THREADS" not in env:  # N runs share the cores
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        return env

    @staticmethod
    def _move_aside(run_dir: Path) -> Path:
        n = 1
        while (target := run_dir.with_name(f"{run_dir.name}.failed-{n}")).exists():
            n += 1
        run_dir.rename(target)
        return target

    def _label(self, run: AblationRun) -> str:
        return f"{run.variant.name!r} seed {run.seed}"

    def execute(self, run: AblationRun) -> AblationRun:
        metrics_file = run.run_dir / "metrics.json"
        if metrics_file.is_file():
            run.status = "reused"
            run.metrics = json.loads(metrics_file.read_text())
            return run
        extra: list[str] = []
        run.status = "ran"
        if run.run_dir.exists():
            if (run.run_dir / "checkpoints" / "last.ckpt").is_file():
                extra = [f"resume={run.run_dir}"]
                run.status = "resumed"
                self.say(f"{self._label(run)}: resuming the unfinished {run.run_dir}")
            else:
                moved = self._move_aside(run.run_dir)
                self.say(
                    f"{self._label(run)}: unfinished run without a checkpoint moved to {moved}"
                )
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        save(run.config, run.config_file)
        train = ["teacher", "train"] if run.config.task == "teacher" else ["train"]
        cmd = [sys.executable, "-m", "relkd.cli", *train, str(run.config_file), *extra]
        if not extra:
            self.say(f"{self._label(run)}: starting -> {run.run_dir}")
        t0 = time.perf_counter()
        with run.log.open("a") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"==== {stamp} relkd ablate: {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env())
        run.seconds = time.perf_counter() - t0
        run.returncode = proc.returncode
        if proc.returncode != 0 or not metrics_file.is_file():
            run.status = "failed"
            self.say(f"{self._label(run)}: FAILED (exit {proc.returncode}); log: {run.log}")
            return run
        run.metrics = json.loads(metrics_file.read_text())
        self.say(f"{self._label(run)}: done in {run.seconds:.0f}s")
        return run

    def _prepare_data(self, runs: Sequence[AblationRun]) -> None:
        """Build each missing synthetic dataset once, here, so parallel runs never race to."""
        from relkd.runs.dataset_resolver import resolve_dataset

        seen: set[str] = set()
        for run in runs:
            if (run.run_dir / "metrics.json").is_file():
                continue
            key = json.dumps(OmegaConf.to_container(run.config.data, resolve=True), sort_keys=True)
            if key not in seen:
                seen.add(key)
                resolve_dataset(run.config.data)

    def run(self) -> AblationReport:
        t0 = time.perf_counter()
        runs = self.plan()
        self.say(
            f"{len(self.variants)} variants x {len(self.cfg.seeds)} seeds = {len(runs)} runs "
            f"under {self.root} (--jobs {self.jobs})"
        )
        self._prepare_data(runs)
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(self.execute, runs))
        self.root.mkdir(parents=True, exist_ok=True)
        done = [r for r in runs if r.status != "failed"]
        atomic_write_bytes(self.root / "results.csv", results_csv(done).encode())
        main, text = results_markdown(done, self.variants, self.cfg.seeds, self.cfg.baseline)
        atomic_write_bytes(self.root / "results.md", text.encode())
        write_hparams(self.root / "hparams", done, self.variants)
        counts = {s: sum(r.status == s for r in runs) for s in ("reused", "ran", "resumed")}
        failed = [r for r in runs if r.status == "failed"]
        summary = (
            f"{len(runs)} runs: {counts['reused']} reused, {counts['ran']} ran, "
            f"{counts['resumed']} resumed, {len(failed)} failed; "
            f"{(time.perf_counter() - t0) / 60:.1f} min; saved to {self.root / 'results.md'}"
        )
        return AblationReport(
            f"\n{SPLIT} split, mean ± std over seeds\n\n{main}\n\n({summary})", runs
        )


# ---- outputs ----
def _groups(split_metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out: list[tuple[str, Mapping[str, Any]]] = [("overall", split_metrics.get("overall", {}))]
    out += [(b, m) for b, m in split_metrics.get("buckets", {}).items()]
    out += [(s, m) for s, m in split_metrics.get("slices", {}).items()]
    return out


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def results_csv(runs: Sequence[AblationRun]) -> str:
    """One row per variant x seed x split x group (overall, each bucket, each slice), with
    every numeric metric of that group; a split's own numbers (e.g. threshold) on its overall row."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        for split, split_metrics in run.metrics.items():
            if not isinstance(split_metrics, Mapping) or "overall" not in split_metrics:
                continue
            own = {k: v for k, v in split_metrics.items() if _numeric(v)}
            for group, values in _groups(split_metrics):
                row: dict[str, Any] = {
                    "variant": run.variant.name,
                    "seed": run.seed,
                    "split": split,
                    "group": group,
                }
                if group == "overall":
                    row.update({k: v for k, v in own.items() if k not in values})
                row.update({k: v for k, v in values.items() if _numeric(v)})
                row["run_dir"] = str(run.run_dir)
                rows.append(row)
    fixed = ["variant", "seed", "split", "group"]
    metrics = sorted({k for r in rows for k in r} - {*fixed, "run_dir"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, [*fixed, *metrics, "run_dir"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main_table(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """comparison_table's columns, mean ± std over seeds, the best mean per column in bold
    (lowest for ECE)."""
    best: dict[int, float] = {}
    for i, (_, bucket, key) in enumerate(COLUMNS):
        means = [
            float(np.mean(vals))
            for results in rows.values()
            if (vals := [v for r in results if (v := metric(r, bucket, key)) is not None])
        ]
        if means:
            best[i] = min(means) if key in LOWER_IS_BETTER else max(means)
    body = []
    for name, results in rows.items():
        line = [name]
        for i, (_, bucket, key) in enumerate(COLUMNS):
            text = cell(results, bucket, key)
            vals = [v for r in results if (v := metric(r, bucket, key)) is not None]
            if vals and i in best and np.isclose(np.mean(vals), best[i], rtol=0, atol=1e-12):
                text = f"**{text}**"
            line.append(text)
        body.append(line)
    return markdown_table(["variant", *(c[0] for c in COLUMNS)], body)


def paired_section(
    runs: Sequence[AblationRun],
    variants: Sequence[ResolvedVariant],
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    baseline: str | None,
) -> str:
    """Every variant against the baseline variant (the first by default) as a paired
    difference over the test queries with its interval; "" when it cannot be computed."""
    from relkd.metrics.paired_difference import against_baseline_files

    base = baseline or variants[0].name
    scheme = next((r["scheme"] for res in rows.values() for r in res if "scheme" in r), None)
    if base not in rows or scheme is None:
        return ""
    files = {
        v.name: [
            r.run_dir / "predictions" / f"{SPLIT}.parquet"
            for r in runs
            if r.variant == v and SPLIT in r.metrics
        ]
        for v in variants
    }
    diffs = against_baseline_files(files, base, scheme)
    if not diffs:
        return ""
    return f"{paired_note(diffs, base, SPLIT)}\n\n{paired_table(diffs)}"


def results_markdown(
    runs: Sequence[AblationRun],
    variants: Sequence[ResolvedVariant],
    seeds: Sequence[int],
    baseline: str | None = None,
) -> tuple[str, str]:
    """(the main table with the paired differences below it, results.md's text)."""
    rows: dict[str, list[Mapping[str, Any]]] = {}
    for v in variants:  # the file's order
        found = [r.metrics[SPLIT] for r in runs if r.variant == v and SPLIT in r.metrics]
        if found:
            rows[v.name] = found
    if not rows:
        return "(no finished runs)", "(no finished runs)\n"
    paired = paired_section(runs, variants, rows, baseline)
    table = main_table(rows) + (f"\n\n{paired}" if paired else "")
    overrides = "\n".join(
        f"- **{v.name}**: {' '.join(f'`{o}`' for o in v.overrides) or '(the base recipe)'}"
        for v in variants
    )
    text = (
        f"{SPLIT} split, mean ± std over seeds {list(seeds)}; best mean per column in bold\n\n"
        f"{table}\n\nBy popularity bucket:\n\n{bucket_table(rows, GROUPS)}\n"
    )
    if has_slices(rows):
        sliced = {n: r for n, r in rows.items() if has_slices({n: r})}
        text += (
            "\nClicked (query and item both clicked) and cold pairs:\n\n"
            f"{bucket_table(sliced, ('overall', *SLICES))}\n"
        )
    text += f"\nVariants:\n\n{overrides}\n"
    return table, text


def _hparam(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)


def write_hparams(
    folder: Path, runs: Sequence[AblationRun], variants: Sequence[ResolvedVariant]
) -> None:
    """A TensorBoard HParams entry per finished variant x seed (once: an entry already written
    is kept): every key any variant overrides, at this run's resolved value, and the test
    figures of the main table."""
    from torch.utils.tensorboard import SummaryWriter

    keys = sorted({o.split("=", 1)[0] for v in variants for o in v.overrides})
    entries = []
    for run in runs:
        sub = f"{slug(run.variant.name)}/seed-{run.seed}-{run.run_dir.name}"
        if (folder / sub).is_dir() and any((folder / sub).glob("events.out.tfevents.*")):
            continue
        hparams: dict[str, Any] = {"variant": run.variant.name, "seed": run.seed}
        for key in keys:
            hparams[key] = _hparam(OmegaConf.select(run.config, key, default=None))
        figures: dict[str, float] = {}
        for header, bucket, key in COLUMNS:
            value = metric(run.metrics.get(SPLIT, {}), bucket, key)
            if value is not None:
                figures[f"{SPLIT}/{header}"] = value
        entries.append((hparams, figures, sub))
    if not entries:
        return
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for hparams, figures, sub in entries:
            writer.add_hparams(hparams, figures, run_name=sub)
    finally:
        writer.close()


def run_ablation(
    path: str | Path,
    cli_overrides: Sequence[str],
    seeds: Sequence[int] | None = None,
    jobs: int = 1,
) -> AblationReport:
    """``relkd ablate ABLATION.yaml [--seeds 0,1,2] [--jobs N] [key=value ...]``."""
    cfg = load_ablation(path)
    if seeds:
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds: distinct seeds, got {list(seeds)}")
        cfg.seeds = list(seeds)
    return AblationRunner(cfg, Path(path), cli_overrides, jobs).run()
