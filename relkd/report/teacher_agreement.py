"""Teacher–student agreement: a confusion matrix of the teacher's argmax class (from the run's
teacher cache) against the student's (from its test predictions), over the test pairs the cache
holds. A cache of train pairs only has no such pairs: the run gets a note, not a matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relkd.errors import RelkdError
from relkd.report.run_predictions import read_predictions
from relkd.report.run_record import REPORT_SPLIT, RunRecord, shown_path
from relkd.teacher_cache.teacher_cache import TeacherCache


@dataclass(frozen=True)
class Agreement:
    """``matrix[t, s]``: pairs the teacher puts in class ``t`` and the student in class ``s``."""

    run: str
    labels: tuple[str, ...]
    matrix: np.ndarray  # int64 [K, K]

    @property
    def pairs(self) -> int:
        return int(self.matrix.sum())

    @property
    def rate(self) -> float:
        """Share of pairs where the two argmaxes agree."""
        return float(np.trace(self.matrix) / max(self.pairs, 1))


def teacher_cache_dir(run: RunRecord) -> Path | None:
    """The run's ``data.teacher_cache`` folder, None when it trained without one. A relative
    path was relative to where the run was started: the working folder, else the run folder's
    ancestors (a report made elsewhere than the repo it ran in)."""
    value = run.select("data.teacher_cache")
    if not value:
        return None
    given = Path(str(value))
    if given.is_absolute():
        return given
    for base in (Path.cwd(), *run.path.resolve().parents):
        if (base / given).is_dir():
            return base / given
    return given


def confusion(teacher_class: np.ndarray, student_class: np.ndarray, k: int) -> np.ndarray:
    """K x K counts of (teacher class, student class) pairs."""
    flat = np.asarray(teacher_class, np.int64) * k + np.asarray(student_class, np.int64)
    return np.bincount(flat, minlength=k * k).reshape(k, k)


def teacher_agreement(
    run: RunRecord, caches: dict[Path, TeacherCache | str] | None = None
) -> Agreement | str:
    """The run's agreement matrix on the test split, or why there is none (one line, without
    the run's name, so runs with one reason share a note). ``caches`` keeps each cache opened
    once across runs (or the reason it could not be)."""
    root = teacher_cache_dir(run)
    if root is None:
        return "trained without a teacher cache"
    preds = read_predictions(run.path, REPORT_SPLIT)
    if preds is None:
        return f"no predictions/{REPORT_SPLIT}.parquet"
    caches = {} if caches is None else caches
    key = root.resolve()
    if key not in caches:
        if not root.is_dir():
            caches[key] = f"teacher cache {shown_path(root)} not found"
        else:
            try:
                caches[key] = TeacherCache.load(root, verify_hash=False)
            except RelkdError as exc:
                caches[key] = f"teacher cache unreadable ({exc})"
    cache = caches[key]
    if isinstance(cache, str):
        return cache
    k = preds.probs.shape[1]
    if cache.num_labels != k:
        return f"teacher cache {shown_path(root)} has {cache.num_labels} classes, the run {k}"
    rows = cache.align(preds.pair_id)
    hit = rows >= 0
    if not hit.any():
        return (
            f"teacher cache {shown_path(root)} holds none of the run's {REPORT_SPLIT} pairs (annotated "
            "for other splits)"
        )
    teacher_class = np.asarray(cache.probs[rows[hit]]).argmax(axis=1)
    student_class = preds.probs[hit].argmax(axis=1)
    return Agreement(run.name, cache.labels, confusion(teacher_class, student_class, k))
