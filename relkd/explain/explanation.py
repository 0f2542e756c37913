"""What ``relkd explain`` found out about one query-item pair: typed, so a notebook or a test reads
the numbers the terminal layout shows without parsing text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

PairSource = Literal["dataset", "text"]
TeacherSource = Literal["cache", "generated", "none"]


@dataclass(frozen=True)
class LabelDistribution:
    """Probabilities over a label scheme, and the ranking score (expected gain) under them."""

    labels: tuple[str, ...]
    probs: np.ndarray  # float (K,), in ``labels`` order
    score: float

    @property
    def predicted(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    def prob(self, label: str) -> float:
        return float(self.probs[self.labels.index(label)])


@dataclass(frozen=True)
class AspectOutput:
    """One CoT-aspect head of the student: its most likely value and that value's probability."""

    aspect: str  # relkd.data.schema.ASPECTS
    value: str  # relkd.data.schema.ASPECT_VALUES
    prob: float


@dataclass(frozen=True)
class ExplainedPair:
    """The pair as the student read it.

    ``student_input`` is the decoded token ids the student was fed (after truncation): one
    ``[CLS] query [SEP] item [SEP]`` text for a cross-encoder, the query and the item text for a
    two-tower. Free text has no pair_id, split, bucket or gold label.
    """

    source: PairSource
    query: str
    item: str  # the item's title (free text: the text given, used as the title)
    student_input: tuple[str, ...]
    pair_id: int | None = None
    split: str | None = None
    bucket: str | None = None
    gold: str | None = None


@dataclass(frozen=True)
class StudentView:
    dist: LabelDistribution
    aspects: tuple[AspectOutput, ...] = ()  # empty: the student has no aspect heads


@dataclass(frozen=True)
class TeacherView:
    """The teacher's judgement of the pair, or why there is none (``source`` ``none``).

    ``where`` is the cache folder or the teacher run that answered (or the reason). ``verdict``
    is the argmax of the teacher's label distribution (read where its CoT reaches the verdict);
    ``stated_verdict`` is the label its generated CoT text names, when it names one.
    ``aspects`` holds the aspect values the teacher judged (None where it judged none).
    """

    source: TeacherSource
    where: str
    dist: LabelDistribution | None = None
    cot: str | None = None
    stated_verdict: str | None = None
    aspects: dict[str, str | None] = field(default_factory=dict)

    @property
    def verdict(self) -> str | None:
        return None if self.dist is None else self.dist.predicted


@dataclass(frozen=True)
class PairExplanation:
    """A student's view of one pair beside its teacher's."""

    run: Path
    checkpoint: Path
    student_kind: str  # model.student of the run
    pair: ExplainedPair
    student: StudentView
    teacher: TeacherView

    @property
    def agree(self) -> bool | None:
        """Whether the student's and the teacher's argmax labels agree (None: no teacher)."""
        verdict = self.teacher.verdict
        return None if verdict is None else verdict == self.student.dist.predicted
