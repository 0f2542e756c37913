"""Run a pipeline: train the teacher, annotate, distil each student, print one table.

Each step's run folder is named by a fingerprint of what it depends on: its resolved config
(and, for a distilled student, the teacher cache's identity). A step whose folder already holds
a finished run (``metrics.json``) is reused, never retrained; annotation resumes its cache and
labels only the pairs missing from it (none on a second run). A step that started but did not
finish is refused with the command that resumes it, so a kill never silently loses work.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from relkd.artifacts.atomic_files import atomic_write_bytes, atomic_write_json
from relkd.artifacts.identity import json_digest, short_id
from relkd.config import compose, to_container
from relkd.errors import ConfigError
from relkd.experiment_files import find_experiment
from relkd.metrics.relevance_metrics import NDCG_KEY
from relkd.pipeline.comparison_table import (
    SLICES,
    bucket_table,
    comparison_table,
    has_slices,
    markdown_table,
    paired_note,
    paired_table,
    robustness_table,
)
from relkd.pipeline.pipeline_config import PipelineConfig

log = logging.getLogger(__name__)
# settings that name where a run goes or how it reports, not what it computes
_UNFINGERPRINTED = ("experiment", "output_dir", "version", "resume")
# what the pipeline itself sets for every step (output_dir= on its command line moves it all)
_PLACED = ("experiment", "version", "resume")
_PENDING_CACHE = "teacher_cache/pending"  # a distilled student's cache before annotation
TEACHERS = "teachers"  # <output_dir>/teachers/<digest>: teacher steps, shared across pipelines
_TRAINER_COSMETIC = ("enable_progress_bar", "log_every_n_steps")


@dataclass
class StepResult:
    name: str
    run_dir: Path
    reused: bool
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


def experiment_path(name: str, pipeline_file: Path) -> Path:
    """An experiment named in a pipeline (or ablation, or study) file: as given (from the current
    directory), beside that file, else bundled with relkd: a name (``mkd/cross_encoder``) or a
    repository path (``experiments/mkd/cross_encoder.yaml``, as the bundled files write them)."""
    beside = pipeline_file.parent / name
    if not Path(name).is_file() and beside.is_file():
        return beside
    try:
        return find_experiment(name)
    except ConfigError as exc:
        raise ConfigError(f"{pipeline_file}: experiment {exc}") from None


def step_fingerprint(cfg: DictConfig, extra: dict[str, Any] | None = None) -> str:
    """12 hex digits (relkd.artifacts.identity.short_id: never a number) over everything a step's result depends on: the resolved config less the
    section the other task reads (a teacher never reads ``model``, a student never ``teacher``),
    and ``extra`` inputs such as the teacher cache's identity."""
    body = to_container(cfg)
    for key in (*_UNFINGERPRINTED, "model" if cfg.task == "teacher" else "teacher"):
        body.pop(key, None)
    for key in _TRAINER_COSMETIC:
        body.get("trainer", {}).pop(key, None)
    return short_id(json_digest({"config": body, "inputs": extra or {}}, default=str), 12)


def placement(cli_overrides: list[str], what: str, unit: str) -> tuple[str | None, list[str]]:
    """(``output_dir=`` of the command line, the other overrides). A pipeline or an ablation
    places each of its runs itself (``<output_dir>/<name>/<unit>/<fingerprint>``), so
    ``output_dir=`` moves the whole of it, and ``experiment=``, ``version=`` or ``resume=``,
    which it sets per run, are refused in one line rather than silently replaced."""
    output_dir, rest = None, []
    for item in cli_overrides:
        key, _, value = item.partition("=")
        key = key.strip()
        if key == "output_dir":
            output_dir = value.strip()
        elif key in _PLACED:
            raise ConfigError(
                f"command line: key {key}: the {what} sets it for each {unit} (runs go under "
                f"output_dir/<name>/<{unit}>/<fingerprint>); pass output_dir= to move them"
            )
        else:
            rest.append(item)
    return output_dir, rest


class PipelineRunner:
    """Runs the steps of one pipeline config (see the module docstring)."""

    def __init__(self, cfg: PipelineConfig, source: Path, cli_overrides: list[str]) -> None:
        self.cfg = cfg
        self.source = source
        output_dir, self.cli = placement(cli_overrides, "pipeline", "step")
        cfg.output_dir = output_dir or cfg.output_dir
        self.root = Path(cfg.output_dir) / cfg.name

    # ---- composing steps ----
    def compose_step(
        self,
        experiment: str,
        overrides: list[str],
        step: str,
        extra: dict[str, Any] | None,
        last: list[str] | None = None,
        root: Path | None = None,
    ) -> tuple[DictConfig, Path]:
        """The step's config and run folder ``<root>/<step>/<digest>`` (root: this pipeline's
        folder unless given)."""
        path = experiment_path(experiment, self.source)
        root = self.root if root is None else root
        # the command line beats the pipeline file; a student's seed (seeds) beats both
        layered = [*self.cfg.overrides, *overrides, *self.cli, *(last or [])]
        digest = step_fingerprint(compose(path, layered), extra)
        placed = [
            *layered,
            f"output_dir={root}",
            f"experiment={step}",
            f"version={digest}",
        ]
        return compose(path, placed), root / step / digest

    def compose_teacher(self) -> tuple[DictConfig, Path]:
        """The teacher step: ``<output_dir>/teachers/<digest>``, shared by every pipeline under
        the same output_dir (a teacher never reads a student setting, so the Walmart, BERM,
        robust and SEMINAR pipelines train one teacher between them and annotate one cache)."""
        t = self.cfg.teacher
        return self.compose_step(
            t.experiment, t.overrides, TEACHERS, None, root=Path(self.cfg.output_dir)
        )

    def _train(self, name: str, cfg: DictConfig, run_dir: Path, task: str) -> StepResult:
        from relkd.train import run_training

        t0 = time.perf_counter()
        metrics_file = run_dir / "metrics.json"
        if metrics_file.is_file():
            log.info("%s: reusing %s", name, run_dir)
            return StepResult(name, run_dir, True, 0.0, json.loads(metrics_file.read_text()))
        if cfg.task != task:
            raise ConfigError(f"{name}: the experiment's task is {cfg.task!r}, expected {task!r}")
        if run_dir.exists():
            # a step stopped mid-run (killed, or the session ended) continues from its last
            # checkpoint: the folder is named by the step's digest, so it is this very step
            last = run_dir / "checkpoints" / "last.ckpt"
            if not (last.is_file() and (run_dir / "config.yaml").is_file()):
                raise ConfigError(
                    f"{run_dir}: step {name!r} started but did not finish, and has no "
                    "checkpoints/last.ckpt to continue from; move the folder away to start it "
                    "again"
                )
            print(f"[pipeline] {name}: continuing the unfinished step from {last}")
            cfg = OmegaConf.merge(cfg, {"resume": str(run_dir)})
        run_training(cfg)
        metrics = json.loads(metrics_file.read_text())
        return StepResult(name, run_dir, False, time.perf_counter() - t0, metrics)

    # ---- the steps ----
    def teacher(self) -> StepResult:
        t = self.cfg.teacher
        if t.run is not None:
            run_dir = Path(t.run)
            metrics = run_dir / "metrics.json"
            if not metrics.is_file() or not (run_dir / "config.yaml").is_file():
                raise ConfigError(
                    f"{self.source}: teacher.run {run_dir} is not a finished teacher run "
                    "(config.yaml and metrics.json expected)"
                )
            print(f"[pipeline] teacher: {run_dir} (given)")
            return StepResult("teacher", run_dir, True, 0.0, json.loads(metrics.read_text()))
        cfg, run_dir = self.compose_teacher()
        print(f"[pipeline] teacher: {run_dir}")
        return self._train("teacher", cfg, run_dir, "teacher")

    def annotate(self, teacher: StepResult) -> tuple[Path, float, int]:
        from relkd.teacher.annotate_runner import AnnotateOptions, annotate

        a = self.cfg.annotate
        ratio = a.pool_ratio
        opts = AnnotateOptions(
            run_dir=teacher.run_dir,
            splits=tuple(a.splits),
            pool=bool(ratio),
            pool_ratio=ratio if ratio else None,
            batch_size=a.batch_size,
            hidden=a.hidden,
            cot=False,
            progress=False,
        )
        print(f"[pipeline] annotate: splits {list(a.splits)}, pool {ratio or 0}x")
        result = annotate(opts)
        if not result.finalized:
            raise ConfigError(f"{result.cache}: annotation did not finalize")
        return result.cache, result.seconds, result.annotated

    def _student_overrides(
        self, step: Any, cache: Path | None, pretrained: Path | None
    ) -> list[str]:
        overrides = [*self.cfg.student_overrides, *step.overrides]
        if pretrained is not None:
            overrides.append(f"model.seminar.init_from={pretrained}")
        if step.distil:
            if cache is None:
                raise ConfigError(f"{self.source}: student {step.name!r} distils but no cache")
            overrides.append(f"data.teacher_cache={cache}")
        return overrides

    def student(
        self,
        step: Any,
        cache: Path | None,
        seed: int | None = None,
        pretrained: Path | None = None,
    ) -> StepResult:
        """One student run; ``seed`` (several seeds) is layered after every other override;
        ``pretrained``: the run its weights start from (the step's ``pretrained``)."""
        from relkd.teacher_cache.teacher_cache import cache_identity

        extra = None
        if step.distil and cache is not None:
            ident = cache_identity(cache)
            extra = {k: ident.get(k) for k in ("fingerprint_sha256", "parts_digest", "rows")}
        last = [] if seed is None else [f"seed={seed}"]
        overrides = self._student_overrides(step, cache, pretrained)
        cfg, run_dir = self.compose_step(step.experiment, overrides, _slug(step.name), extra, last)
        print(f"[pipeline] student {step.name!r}: {run_dir}")
        return self._train(step.name, cfg, run_dir, "student")

    def check(self) -> None:
        """Compose every step before any runs, so a missing experiment, an unknown key or a bad
        value is reported at once, not after the teacher has trained. A distilled student is
        composed with the cache path annotation will write (not yet its identity)."""
        if self.cfg.perturb:  # a bad kind fails now, not after the students have trained
            from relkd.perturb import parse_kinds

            parse_kinds(self.cfg.perturb, f"{self.source}: perturb")
        t = self.cfg.teacher
        if t.run is None:
            cfg, teacher_dir = self.compose_teacher()
            if cfg.task != "teacher":
                raise ConfigError(
                    f"{self.source}: teacher.experiment {t.experiment}: its task is "
                    f"{cfg.task!r}, expected 'teacher'"
                )
        else:
            teacher_dir = Path(t.run)
        pending = teacher_dir / _PENDING_CACHE
        seeds = list(self.cfg.seeds)
        for i, step in enumerate(self.cfg.students):
            start = self.root / "pending-pretrained" if step.pretrained else None
            for seed in seeds:
                try:
                    cfg, _ = self.compose_step(
                        step.experiment,
                        self._student_overrides(step, pending, start),
                        _slug(step.name),
                        None,
                        [] if len(seeds) == 1 else [f"seed={seed}"],
                    )
                except ConfigError as exc:
                    raise ConfigError(
                        f"{self.source}: students[{i}] ({step.name}): {exc}"
                    ) from None
                if cfg.task != "student":
                    raise ConfigError(
                        f"{self.source}: students[{i}].experiment {step.experiment}: its task is "
                        f"{cfg.task!r}, expected 'student'"
                    )

    def perturbed(self, run_dir: Path) -> dict[str, Any]:
        """The run's ``relkd eval --perturb`` report for ``perturb``'s kinds (reused when an
        earlier one covers the same kinds with the same checkpoint)."""
        from relkd.evaluate import evaluate_run
        from relkd.perturb import parse_kinds

        kinds = list(parse_kinds(self.cfg.perturb, "perturb"))
        for found in sorted((run_dir / "eval").glob("*-test-perturb/metrics.json")):
            report = json.loads(found.read_text())
            if report.get("perturbation", {}).get("kinds") == kinds:
                return report
        print(f"[pipeline] perturbed test queries: {run_dir}")
        return evaluate_run(run_dir, perturb=kinds)

    def bm25(self, any_cfg_run: Path) -> tuple[dict[str, Any], Path]:
        """BM25's metrics on the split, and the file of its per-pair scores."""
        from relkd.baselines.bm25_baseline import predictions_path, run_bm25_baseline
        from relkd.runs.dataset_resolver import resolve_dataset

        cfg = compose(any_cfg_run / "config.yaml", with_base=False)
        data_dir = resolve_dataset(cfg.data)
        out = self.root / "bm25" / data_dir.name / f"{self.cfg.split}.json"
        if out.is_file() and predictions_path(out).is_file():
            return json.loads(out.read_text())["metrics"], predictions_path(out)
        result = run_bm25_baseline(data_dir, split=self.cfg.split, out=out, verbose=False)
        return result["metrics"], predictions_path(out)

    def run(self) -> str:
        t0 = time.perf_counter()
        self.check()
        teacher = self.teacher()
        needs_cache = any(s.distil for s in self.cfg.students)
        cache, ann_s, ann_n = (None, 0.0, 0)
        if needs_cache:
            cache, ann_s, ann_n = self.annotate(teacher)
        seeds = list(self.cfg.seeds)
        students = []
        finished: dict[tuple[str, int], Path] = {}
        for step in self.cfg.students:
            for seed in seeds:
                start = finished[(step.pretrained, seed)] if step.pretrained else None
                result = self.student(step, cache, seed if len(seeds) > 1 else None, start)
                finished[(step.name, seed)] = result.run_dir
                students.append((step, seed, result))
        split = self.cfg.split
        rows: dict[str, list[dict[str, Any]]] = {}
        preds: dict[str, list[Path]] = {}
        if self.cfg.bm25:
            bm25_metrics, bm25_preds = self.bm25(students[0][2].run_dir)
            rows["BM25"], preds["BM25"] = [bm25_metrics], [bm25_preds]
        names: dict[str, str] = {}  # step name -> its row (marked when its encoder fell back)
        for step, _, result in students:
            name = names.setdefault(step.name, step.name + fallback_mark(result.run_dir))
            rows.setdefault(name, []).append(result.metrics[split])
            preds.setdefault(name, []).append(result.run_dir / "predictions" / f"{split}.parquet")
        rows["teacher"] = [teacher.metrics[split]]
        preds["teacher"] = [teacher.run_dir / "predictions" / f"{split}.parquet"]
        baseline = names[self.cfg.baseline or self.cfg.students[0].name]
        diffs = paired_differences(rows, preds, baseline)
        table = comparison_table(rows)
        steps: list[dict[str, Any]] = [
            {
                "step": "teacher",
                "run": str(teacher.run_dir),
                "reused": teacher.reused,
                "seconds": round(teacher.seconds, 1),
            },
            {
                "step": "annotate",
                "cache": str(cache) if cache else None,
                "pairs_annotated": ann_n,
                "reused": ann_n == 0,
                "seconds": round(ann_s, 1),
            },
        ]
        for step, seed, result in students:
            steps.append(
                {
                    "step": step.name,
                    "seed": seed if len(seeds) > 1 else None,
                    "run": str(result.run_dir),
                    "reused": result.reused,
                    "seconds": round(result.seconds, 1),
                }
            )
        total = time.perf_counter() - t0
        self.root.mkdir(parents=True, exist_ok=True)
        note = f"{split} split" + (
            f", students mean ± std over seeds {seeds}" if len(seeds) > 1 else ""
        )
        paired = ""
        if diffs:
            paired = f"{paired_note(diffs, baseline, split)}\n\n{paired_table(diffs)}\n"
        long = bucket_table(rows)
        text = f"{note}\n\n{table}\n\n{paired}\nBy popularity bucket:\n\n{long}\n"
        if has_slices(rows):  # the rows that have slices (BM25 and a teacher have none)
            with_slices = {n: r for n, r in rows.items() if has_slices({n: r})}
            sliced = bucket_table(with_slices, ("overall", *SLICES))
            text += f"\nClicked (query and item both clicked) and cold pairs:\n\n{sliced}\n"
        robust: dict[str, list[dict[str, Any]]] = {}
        if self.cfg.perturb:
            for step, _, result in students:
                robust.setdefault(names[step.name], []).append(self.perturbed(result.run_dir))
            kinds = list(self.cfg.perturb)
            for title, key in (("NDCG@10", NDCG_KEY), ("class-acc", "class_accuracy")):
                table_ = robustness_table(robust, kinds, key)
                text += f"\nPerturbed test queries, {title}: clean, and the drop per kind:\n\n"
                text += f"{table_}\n"
        timing = steps_table(steps)
        text += f"\nSteps ({total / 60:.1f} min in all):\n\n{timing}\n"
        atomic_write_bytes(self.root / "comparison.md", text.encode())
        atomic_write_json(
            self.root / "comparison.json",
            {
                "split": split,
                "seeds": seeds,
                "rows": rows,
                "baseline": baseline,
                "paired": {
                    name: [d.as_dict() for d in row.values() if d is not None]
                    for name, row in diffs.items()
                },
                "robustness": robust,
                "steps": steps,
                "seconds": round(total, 1),
            },
        )
        reused = all(s.get("reused", True) for s in steps) and ann_n == 0
        return (
            f"\n{table}\n\n{paired}\n{timing}\n\n({note}; steps {'reused' if reused else 'ran'}; "
            f"{total / 60:.1f} min; saved to {self.root / 'comparison.md'})"
        )


def _slug(name: str) -> str:
    """A student step's folder: ``student-`` and its name, lower case, other characters ``-``."""
    return "student-" + "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def fallback_mark(run_dir: Path) -> str:
    """`` (fell back to X)`` when the run's ``model.encoder`` could not be loaded and it trained
    ``model.fallback_encoder`` instead (run_info.json), else ``""``: a table never shows a
    fallback under the name of the encoder it was asked for."""
    info_file = run_dir / "run_info.json"
    if not info_file.is_file():
        return ""
    info = json.loads(info_file.read_text())
    fallback = info.get("fallback_from")
    return f" (fell back to {info.get('encoder')})" if fallback else ""


def paired_differences(
    rows: dict[str, list[dict[str, Any]]], preds: dict[str, list[Path]], baseline: str
) -> dict[str, Any]:
    """Each row against ``baseline`` from the runs' per-pair predictions (the label scheme is
    the one their metrics name)."""
    from relkd.metrics.paired_difference import against_baseline_files

    scheme = next((r["scheme"] for runs in rows.values() for r in runs if "scheme" in r), None)
    return {} if scheme is None else against_baseline_files(preds, baseline, scheme)


def steps_table(steps: list[dict[str, Any]]) -> str:
    """Each step's wall time (0 when reused)."""
    body = [
        [
            s["step"] + ("" if s.get("seed") is None else f" (seed {s['seed']})"),
            "reused" if s.get("reused") else "ran",
            f"{s['seconds']:.0f} s",
        ]
        for s in steps
    ]
    return markdown_table(["step", "", "time"], body)


def run_pipeline(path: str | Path, cli_overrides: list[str], seeds: list[int] | None = None) -> str:
    """``relkd pipeline PIPELINE.yaml [--seeds 0 1 2] [key=value ...]``; returns the table."""
    from relkd.pipeline.pipeline_config import load_pipeline

    cfg = load_pipeline(path)
    if seeds:
        cfg.seeds = list(seeds)
    return PipelineRunner(cfg, Path(path), list(cli_overrides)).run()
