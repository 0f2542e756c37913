"""The report's sections, in order: the runs, metrics per bucket, training losses, teacher–student
agreement, calibration, the pool-size curve, quality against latency, and one per Optuna study.
Each builds its tables and writes at most one figure into the report folder; what it cannot show
becomes a note."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from matplotlib.figure import Figure

from relkd.artifacts.identity import json_digest
from relkd.metrics.relevance_metrics import ECE_BINS, NDCG_KEY
from relkd.pipeline.comparison_table import BUCKET_COLUMNS, GROUPS, cell, metric
from relkd.report.figures import (
    draw_agreement,
    draw_bucket_metrics,
    draw_calibration,
    draw_loss_curves,
    draw_pareto,
    draw_pool_curves,
    draw_study,
    save_figure,
)
from relkd.report.figures.figure_canvas import MAX_PANELS
from relkd.report.figures.loss_curves_figure import loss_terms
from relkd.report.pareto_front import pareto_front
from relkd.report.pool_curve import POOL_KEY, POOL_METRICS, pool_curves
from relkd.report.reliability_bins import reliability_bins
from relkd.report.report_section import FigureRef, Section, Table
from relkd.report.run_predictions import predictions_path, read_predictions
from relkd.report.run_record import REPORT_SPLIT, RunRecord, shown_path
from relkd.report.serving_record import SERVING_FILE
from relkd.report.study_record import StudyRecord
from relkd.report.teacher_agreement import Agreement, teacher_agreement
from relkd.report.tensorboard_scalars import loss_curves

T = TypeVar("T")


def _number(value: object) -> str:
    return "-" if value is None else str(value)


def _figure(section: Section, fig: Figure, folder: Path, alt: str) -> None:
    name = f"{section.anchor}.png"
    save_figure(fig, folder / name)
    section.figures.append(FigureRef(name, alt))


def _capped(section: Section, items: Sequence[T], what: str) -> list[T]:
    if len(items) > MAX_PANELS:
        section.notes.append(
            f"{what}: the figure shows the first {MAX_PANELS} of {len(items)} runs; the table "
            "lists them all"
        )
    return list(items[:MAX_PANELS])


def runs_section(runs: Sequence[RunRecord]) -> Section:
    rows = []
    for r in runs:
        if r.select("task") == "student":
            model = f"{r.select('model.student', '')} {r.select('model.encoder', '')}".strip()
        else:
            model = str(r.select("teacher.model", "-"))
        cache = r.select("data.teacher_cache")
        rows.append(
            [
                r.name,
                shown_path(r.path),
                str(r.select("task", "-")),
                model,
                _number(r.seed),
                _number(r.metrics.get("global_step")),
                _number(r.split().get("num_pairs")),
                str(cache) if cache else "-",
                "-" if r.serving is None else f"{r.serving.ms_per_pair:.3f} ms/pair",
            ]
        )
    header = ["run", "folder", "task", "model", "seed", "steps", "test pairs", "teacher cache"]
    return Section(
        "runs",
        "Runs",
        f"{len(runs)} run folders (metrics.json + config.yaml), from their config.yaml, "
        "metrics.json and serving.json.",
        tables=[Table([*header, "serving"], rows)],
    )


def bucket_section(runs: Sequence[RunRecord], folder: Path) -> Section:
    section = Section(
        "buckets",
        "Metrics per bucket",
        f"Each run's {REPORT_SPLIT} metrics from its metrics.json, overall and per query "
        "popularity bucket (an empty bucket shows -).",
    )
    rows = [
        [
            r.name,
            group,
            _number(None if (n := metric(r.split(), group, "num_pairs")) is None else int(n)),
            *(cell([r.split()], group, key) for _, key in BUCKET_COLUMNS),
        ]
        for r in runs
        for group in GROUPS
    ]
    header = ["run", "bucket", "pairs", *(c[0] for c in BUCKET_COLUMNS)]
    section.tables.append(Table(header, rows))
    evaluated = [r for r in runs if r.split()]
    missing = [r.name for r in runs if not r.split()]
    if missing:
        section.notes.append(f"no {REPORT_SPLIT} metrics in: {', '.join(missing)}")
    if evaluated:
        shown = _capped(section, evaluated, "metrics per bucket")
        alt = f"{REPORT_SPLIT} NDCG@10 and class accuracy per bucket for {len(shown)} runs"
        _figure(section, draw_bucket_metrics(shown), folder, alt)
    return section


def loss_section(runs: Sequence[RunRecord], folder: Path) -> Section:
    section = Section(
        "losses",
        "Training losses",
        "The weighted total (train/loss) and every term (train/loss/<term>) as logged, read "
        "from each run's TensorBoard event files.",
    )
    curves = {}
    for r in runs:
        found = loss_curves(r.path)
        if found:
            curves[r.name] = found
        else:
            section.notes.append(f"{r.name}: no train/loss scalars in its TensorBoard events")
    if not curves:
        return section
    terms = loss_terms(curves)
    rows = [
        [
            name,
            str(max(len(c.steps) for c in run.values())),
            *(f"{run[t].values[-1]:.4f}" if t in run else "-" for t in terms),
        ]
        for name, run in curves.items()
    ]
    header = ["run", "points", *(("train/loss" if t == "total" else t) for t in terms)]
    section.tables.append(Table(header, rows, "last logged value of each term"))
    shown = dict(_capped(section, list(curves.items()), "loss curves"))
    named = ", ".join("train/loss" if t == "total" else f"train/loss/{t}" for t in terms)
    _figure(section, draw_loss_curves(shown), folder, f"loss curves per step: {named}")
    return section


def agreement_section(runs: Sequence[RunRecord], folder: Path) -> Section:
    section = Section(
        "agreement",
        "Teacher–student agreement",
        f"Confusion matrices of the teacher's argmax class (the run's data.teacher_cache) "
        f"against the student's (predictions/{REPORT_SPLIT}.parquet), over the {REPORT_SPLIT} "
        "pairs the cache holds; rows are the teacher's class.",
    )
    caches: dict = {}
    found: list[Agreement] = []
    left_out: dict[str, list[str]] = {}
    for r in runs:
        result = teacher_agreement(r, caches)
        if isinstance(result, str):
            left_out.setdefault(result, []).append(r.name)
        else:
            found.append(result)
    section.notes += [f"{why}: {', '.join(names)}" for why, names in left_out.items()]
    if not found:
        return section
    section.tables.append(
        Table(
            ["run", "pairs in both", "agreement"],
            [[a.run, str(a.pairs), f"{a.rate:.4f}"] for a in found],
        )
    )
    shown = _capped(section, found, "agreement")
    alt = f"teacher against student argmax confusion matrices for {len(shown)} runs"
    _figure(section, draw_agreement(shown), folder, alt)
    return section


def calibration_section(runs: Sequence[RunRecord], folder: Path) -> Section:
    section = Section(
        "calibration",
        "Calibration",
        f"Reliability diagrams of the predicted class on {REPORT_SPLIT}: the accuracy of the "
        f"top class in {ECE_BINS} equal-width bins of its probability, from "
        f"predictions/{REPORT_SPLIT}.parquet; ECE weights each bin's gap by its share of pairs "
        "(metrics.json's class_ece beside it).",
    )
    diagrams, rows = [], []
    for r in runs:
        preds = read_predictions(r.path, REPORT_SPLIT)
        if preds is None or not len(preds.label):
            section.notes.append(f"{r.name}: no {shown_path(predictions_path(r.path))}")
            continue
        bins = reliability_bins(preds.probs, preds.label)
        diagrams.append((r.name, bins))
        recorded = metric(r.split(), None, "class_ece")
        rows.append(
            [
                r.name,
                str(int(bins.count.sum())),
                f"{bins.ece:.4f}",
                "-" if recorded is None else f"{recorded:.4f}",
            ]
        )
    if not diagrams:
        return section
    section.tables.append(Table(["run", "pairs", "ECE", "class_ece (metrics.json)"], rows))
    shown = _capped(section, diagrams, "calibration")
    alt = f"reliability diagrams with ECE for {len(shown)} runs"
    _figure(section, draw_calibration(shown), folder, alt)
    return section


def pool_section(runs: Sequence[RunRecord], folder: Path) -> Section:
    section = Section(
        "pool",
        "Pool-size curve",
        f"{REPORT_SPLIT} quality against {POOL_KEY} (the teacher-labelled pool as a multiple of "
        "the labelled train pairs, experiments/ablations/walmart_pool.yaml), mean ± std over "
        f"seeds, for runs whose configs differ only in {POOL_KEY} and the seed.",
    )
    curves = pool_curves(runs)
    if not curves:
        set_count = sum(r.select(POOL_KEY) is not None for r in runs)
        section.notes.append(
            f"no set of runs varies {POOL_KEY} ({set_count} of {len(runs)} runs set it); "
            "the curve is left out"
        )
        return section
    rows = [
        [
            s.label,
            f"{x:g}",
            str(len(s.runs[x])),
            *(cell([r.split() for r in s.runs[x]], None, key) for _, key in POOL_METRICS),
        ]
        for s in curves
        for x in s.values
    ]
    header = ["recipe", POOL_KEY, "runs", *(h for h, _ in POOL_METRICS)]
    section.tables.append(Table(header, rows))
    alt = f"{REPORT_SPLIT} NDCG@10 and class accuracy against {POOL_KEY}, a curve per recipe"
    _figure(section, draw_pool_curves(curves), folder, alt)
    return section


def pareto_section(runs: Sequence[RunRecord], folder: Path) -> Section:
    section = Section(
        "pareto",
        "Quality against latency",
        f"{REPORT_SPLIT} NDCG@10 (metrics.json) against serving latency (ms per pair, from each "
        f"run's {SERVING_FILE}); the Pareto front is the runs no other run beats on both.",
    )
    points = [
        (r, r.serving, q)
        for r in runs
        if r.serving is not None and (q := metric(r.split(), None, NDCG_KEY)) is not None
    ]
    if not points:
        section.notes.append(
            f"no run has both {SERVING_FILE} and {REPORT_SPLIT} NDCG@10; the chart is left out"
        )
        return section
    latency = np.array([s.ms_per_pair for _, s, _ in points])
    quality = np.array([q for _, _, q in points])
    front = pareto_front(latency, quality)
    rows = [
        [
            r.name,
            f"{s.ms_per_pair:.4f}",
            _number(s.batch),
            _number(s.threads),
            _number(s.device),
            _number(s.params),
            f"{q:.4f}",
            "yes" if on else "",
        ]
        for (r, s, q), on in zip(points, front, strict=True)
    ]
    header = ["run", "ms/pair", "batch", "threads", "device", "params", "NDCG@10", "front"]
    section.tables.append(Table(header, rows))
    names = [r.name for r, _, _ in points]
    alt = f"{REPORT_SPLIT} NDCG@10 against ms per pair for {len(points)} runs, Pareto front marked"
    _figure(section, draw_pareto(names, latency, quality, front), folder, alt)
    return section


def recipe_groups(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs that differ only in their seed (and where they were written) are seeds of one
    recipe: name -> its runs, in report order. A group is named by its variant, else by its
    first run."""

    from omegaconf import OmegaConf

    groups: dict[str, list[RunRecord]] = {}
    names: dict[str, str] = {}
    for r in runs:
        body = OmegaConf.to_container(r.config, resolve=False)
        assert isinstance(body, dict)
        for key in ("seed", "experiment", "output_dir", "version", "resume"):
            body.pop(key, None)
        key = json_digest(body, default=str)
        name = names.setdefault(key, r.variant or r.name)
        groups.setdefault(name, []).append(r)
    return groups


def paired_section(runs: Sequence[RunRecord]) -> Section:
    """Every recipe against the first one (the first run or variant given), as a paired
    difference over the test queries with a 95 % interval (relkd/metrics/paired_difference.py)."""
    from relkd.errors import DataError
    from relkd.metrics.paired_difference import against_baseline_files
    from relkd.pipeline.comparison_table import paired_headers

    section = Section(
        "paired",
        "Paired differences",
        f"Each recipe (its runs that differ only in the seed) against the first, on the "
        f"{REPORT_SPLIT} queries both were evaluated on: model − baseline per query, then a 95 % "
        "bootstrap interval that resamples the queries and each recipe's seeds; (0 in CI): not "
        "separated from the baseline.",
    )
    groups = recipe_groups([r for r in runs if r.split()])
    scheme = next((r.split().get("scheme") for g in groups.values() for r in g), None)
    if len(groups) < 2 or scheme is None:
        section.notes.append("fewer than two recipes with test metrics: nothing to pair")
        return section
    baseline = next(iter(groups))
    files = {
        f"{name} ({len(g)} seed{'s' if len(g) > 1 else ''})": [predictions_path(r.path) for r in g]
        for name, g in groups.items()
    }
    base_key = next(iter(files))
    try:
        diffs = against_baseline_files(files, base_key, scheme)
    except DataError as exc:
        section.notes.append(f"not paired: {exc}")
        return section
    missing = [n for n in files if n != base_key and n not in diffs]
    if missing:
        section.notes.append(f"no {REPORT_SPLIT} predictions for: {', '.join(missing)}")
    rows = [
        [name, *(d.cell() if (d := row.get(g)) is not None else "-" for g in row)]
        for name, row in diffs.items()
    ]
    if rows:
        section.notes.insert(0, f"baseline: {base_key} ({baseline})")
        section.tables.append(Table(["recipe", *paired_headers()], rows))
    return section


def study_section(record: StudyRecord, folder: Path) -> Section:
    """A study's parameter importances (Optuna's fANOVA over its complete trials) and its
    optimisation history."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState

    slug = "".join(c if c.isalnum() else "-" for c in record.name)
    section = Section(
        f"study-{slug}",
        f"Study {record.name}",
        f"The Optuna study in {shown_path(record.folder)} (storage `{record.url}`): how much of "
        "the variance of its objective each searched parameter explains (fANOVA over the "
        "complete trials, seed 0), and each trial's value in the order they ran.",
    )
    if record.trials is None:
        section.notes.append(f"storage {record.url} could not be read ({record.problem})")
        return section
    by_state = {
        state.name.lower(): sum(t.state == state for t in record.trials) for state in TrialState
    }
    section.notes.append(
        ", ".join(f"{n} {state}" for state, n in by_state.items() if n) or "no trials yet"
    )
    complete = sorted((t.number, float(t.values[0])) for t in record.complete())
    pruned = sorted(
        (t.number, float(t.intermediate_values[max(t.intermediate_values)]))
        for t in record.trials
        if t.state == TrialState.PRUNED and t.intermediate_values
    )
    pick = max if record.direction == "maximize" else min
    best: list[tuple[int, float]] = []
    for number, value in complete:
        best.append((number, value if not best else pick(best[-1][1], value)))
    importances: dict[str, float] = {}
    if len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(
                record.load(),
                evaluator=FanovaImportanceEvaluator(seed=0),
                target=lambda t: t.values[0],
            )
        except (RuntimeError, ValueError) as exc:
            section.notes.append(f"no importances: {exc}")
    else:
        section.notes.append("importances need two or more complete trials")
    if importances:
        rows = [[name, f"{share:.3f}"] for name, share in importances.items()]
        section.tables.append(Table(["parameter", "importance (fANOVA)"], rows))
    if complete:
        number, value = pick(complete, key=lambda c: c[1])
        section.notes.insert(0, f"best: trial {number}, {record.metric} = {value:.4f}")
    if complete or pruned:
        fig = draw_study(complete, pruned, best, importances, record.metric)
        alt = f"{record.metric} of {len(complete)} complete trials by trial number, and importances"
        _figure(section, fig, folder, alt)
    return section


def build_sections(
    runs: Sequence[RunRecord], folder: Path, studies: Sequence[StudyRecord] = ()
) -> list[Section]:
    """Every section, its figures written into ``folder``."""
    return [
        runs_section(runs),
        bucket_section(runs, folder),
        paired_section(runs),
        loss_section(runs, folder),
        agreement_section(runs, folder),
        calibration_section(runs, folder),
        pool_section(runs, folder),
        pareto_section(runs, folder),
        *(study_section(study, folder) for study in studies),
    ]
