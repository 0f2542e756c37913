"""The schema of a pipeline YAML (experiments/pipeline/*.yaml).

A pipeline names experiment YAMLs rather than repeating them: the teacher's, then each
student's, with a few overrides. ``overrides`` (and any ``key=value`` on the command line) apply
to every step, so all of them read the same dataset with the same seed. Unknown keys are errors,
as in experiment YAMLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from relkd.config.yaml_file import read_yaml
from relkd.errors import ConfigError


@dataclass
class TeacherStep:
    experiment: str = "experiments/teacher/embedded.yaml"
    overrides: list[str] = field(default_factory=list)
    # a finished teacher run folder (relkd teacher train, or another pipeline's teacher step) to
    # use instead of training one; experiment and overrides are then not read
    run: str | None = None


@dataclass
class AnnotateStep:
    """What the teacher labels for the students (``relkd teacher annotate``)."""

    splits: list[str] = field(default_factory=lambda: ["train"])
    pool_ratio: float | None = 1.0  # this multiple of the labelled train pairs from the pool;
    # 0 or null: no pool (the students that set data.pool_ratio take nested subsets of it)
    batch_size: int = 64
    hidden: str = "none"  # none | last | mean: also store pooled hidden states


@dataclass
class StudentStep:
    name: str = "student"  # its row in the comparison table
    experiment: str = "experiments/quickstart.yaml"
    distil: bool = False  # join the annotated teacher cache (data.teacher_cache)
    overrides: list[str] = field(default_factory=list)
    # an earlier student's name: start from its run of the same seed (model.seminar.init_from,
    # e.g. SEMINAR fine-tuning from its pretraining); None: from the usual initialisation
    pretrained: str | None = None


@dataclass
class PipelineConfig:
    name: str = "pipeline"
    output_dir: str = "runs/pipeline"  # steps run under <output_dir>/<name>/<step>/<fingerprint>
    overrides: list[str] = field(default_factory=list)  # every step's experiment, first
    student_overrides: list[str] = field(default_factory=list)  # then every student's
    teacher: TeacherStep = field(default_factory=TeacherStep)
    annotate: AnnotateStep = field(default_factory=AnnotateStep)
    students: list[StudentStep] = field(default_factory=list)
    bm25: bool = True  # a BM25 row on the same test split
    split: str = "test"  # the split the table compares
    # each student runs once per seed (mean ± std in the table); the teacher is trained once, at
    # the experiments' own seed, so the seeds measure the students' variance, not the teacher's
    seeds: list[int] = field(default_factory=lambda: [0])
    # perturbation kinds (relkd eval --perturb) every student is also evaluated on; [] = none
    perturb: list[str] = field(default_factory=list)
    # the student every other row is compared with, as a paired difference over the split's
    # queries with a 95 % interval; null: the first student
    baseline: str | None = None


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and check a pipeline YAML; a ConfigError names the file and the key."""
    path = Path(path)
    raw = read_yaml(path, "pipeline")
    try:
        students = raw.pop("students", [])
        cfg = OmegaConf.merge(OmegaConf.structured(PipelineConfig), raw)
        steps = [OmegaConf.merge(OmegaConf.structured(StudentStep), s) for s in students]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"{path}: key {key}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # not YAML at all
        raise ConfigError(f"{path}: not a valid pipeline YAML ({exc})") from None
    out: PipelineConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    out.students = [OmegaConf.to_object(s) for s in steps]  # type: ignore[misc]
    if not out.students:
        raise ConfigError(f"{path}: key students: name at least one student")
    names = [s.name for s in out.students]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: key students: names must be unique, got {names}")
    for i, step in enumerate(out.students):
        if step.pretrained is not None and step.pretrained not in names[:i]:
            raise ConfigError(
                f"{path}: key students[{i}].pretrained: {step.pretrained!r} is not an earlier "
                f"student (earlier: {names[:i]})"
            )
    if out.baseline is not None and out.baseline not in names:
        raise ConfigError(f"{path}: key baseline: {out.baseline!r} is not a student ({names})")
    if out.annotate.hidden not in ("none", "last", "mean"):
        raise ConfigError(f"{path}: key annotate.hidden: none, last or mean")
    if out.annotate.pool_ratio is not None and out.annotate.pool_ratio < 0:
        raise ConfigError(f"{path}: key annotate.pool_ratio: must be >= 0")
    if not out.seeds or len(set(out.seeds)) != len(out.seeds):
        raise ConfigError(f"{path}: key seeds: name one or more distinct seeds")
    if out.split not in ("val", "test"):
        raise ConfigError(f"{path}: key split: val or test")
    return out
