"""Explain query-item pairs with a trained student: its label probabilities, ranking score and
CoT-aspect heads, beside the teacher's CoT and verdict (docs/explain.md).

Nothing loads until the first pair is explained; then the student, its DataModule over the
dataset and the teacher stay loaded, so one explainer answers many pairs. A catalogue pair is
batched by the run's own collator from the run's tokenized store (exactly as evaluation batches
it). Free text is written as a throwaway one-pair-per-text dataset (relkd/explain/text_pairs.py)
and batched the same way, so it is tokenized exactly as training tokenized the catalogue.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from datamodules import QueryItemDataModule
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import BUCKETS, SPLITS
from relkd.errors import ConfigError, DataError
from relkd.explain.explanation import ExplainedPair, PairExplanation, StudentView, TeacherView
from relkd.explain.store_rows import rows_of
from relkd.explain.student_scorer import StudentScorer
from relkd.explain.teacher_judge import TEACHER_MANIFEST, TeacherJudge, TeacherRef
from relkd.explain.text_pairs import write_text_pairs
from relkd.nets.student_registry import student_spec

# explanations never need the clicked/cold eval slices (a click graph to build or open)
DATA_SETTINGS: dict[str, Any] = {"click_graph": {"slices": False}}


class PairExplainer:
    """Explains pairs with one student run (and optionally a teacher).

    Args:
        run_dir: a student run folder (``relkd train``'s output).
        ckpt: ``best``, ``last`` or a checkpoint path.
        data: the dataset ``pair_id``s refer to (default: the run's).
        teacher: a teacher run or teacher cache folder. Default: the cache the run trained on
            (``data.teacher_cache``) when the pairs are from the run's dataset and it exists.
        prompt_cache: where a teacher run builds the prompt store of dataset pairs it has to
            judge (default: ``relkd teacher annotate``'s ``data_cache/prompts``).
        device: the teacher's device (the student runs on the CPU).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        ckpt: str | Path = "best",
        data: str | Path | None = None,
        teacher: str | Path | None = None,
        prompt_cache: str | Path | None = None,
        device: str = "auto",
    ) -> None:
        self.run_dir = Path(run_dir)
        if (self.run_dir / "adapter" / TEACHER_MANIFEST).is_file():
            raise ConfigError(
                f"--run {self.run_dir}: a teacher run; relkd explain explains a student run "
                "(give the teacher as --teacher)"
            )
        self.ckpt = ckpt
        self.data = None if data is None else Path(data)
        self.teacher = None if teacher is None else TeacherRef.of(teacher)  # fail fast
        self.prompt_cache = None if prompt_cache is None else Path(prompt_cache)
        self.device = device

    # -- lazily loaded -------------------------------------------------------------------

    @cached_property
    def scorer(self) -> StudentScorer:
        return StudentScorer.load(self.run_dir, self.ckpt)

    @cached_property
    def dataset(self) -> CanonicalDataset:
        """The dataset of ``pair_id``s (verified), in the student's label scheme."""
        student = self.scorer.student
        if self.data is None:
            return student.dataset
        dataset = CanonicalDataset(self.data)
        dataset.verify()
        if dataset.scheme.labels != student.scheme.labels:
            raise DataError(
                f"{self.data / 'manifest.json'}: field label_scheme: {dataset.scheme.name!r}, but "
                f"the student {self.run_dir} predicts {student.scheme.name!r} labels"
            )
        return dataset

    @cached_property
    def datamodule(self) -> QueryItemDataModule:
        """The run's DataModule over ``dataset``, with its tokenized store open."""
        return self.scorer.student.datamodule(self.dataset.root, **DATA_SETTINGS)

    @cached_property
    def judge(self) -> TeacherJudge | None:
        ref = self.teacher
        own = self.scorer.student.cfg.data.teacher_cache
        same = self.dataset.root.resolve() == self.scorer.student.data_dir.resolve()
        if ref is None and own and same:
            ref = TeacherRef.of(own) if Path(own).is_dir() else None
        return None if ref is None else TeacherJudge(ref, self.prompt_cache, self.device)

    @cached_property
    def _texts(self) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
        """Every query's text and every item's title (rows as in the tokenized store)."""
        ds = self.dataset
        return (
            ds.table("queries", ["text"]).column("text"),
            ds.table("items", ["title"]).column("title"),
        )

    # -- explaining ----------------------------------------------------------------------

    def explain_pair(self, pair_id: int) -> PairExplanation:
        return self.explain_pairs([pair_id])[0]

    def explain_pairs(self, pair_ids: Sequence[int]) -> list[PairExplanation]:
        """Explanations of pairs of the dataset; DataError naming the first unknown pair_id."""
        dm = self.datamodule
        store = dm.store
        wanted = np.asarray(pair_ids, dtype=np.int64)
        rows = rows_of(store, wanted)
        if (rows < 0).any():
            missing = int(wanted[np.flatnonzero(rows < 0)[0]])
            raise DataError(
                f"--pair-id {missing}: not in dataset {self.dataset.root} "
                f"({self.dataset.path('pairs').name} has no such pair_id)"
            )
        label = np.asarray(store.array("label"))[rows].astype(np.int64)
        scored = self.scorer.score(dm, rows)
        teacher = self._judge_pairs(wanted, label >= 0)
        split = np.asarray(store.array("split"))[rows]
        bucket = np.asarray(store.array("bucket"))[rows]
        q_row = np.asarray(store.array("query_row"))[rows]
        i_row = np.asarray(store.array("item_row"))[rows]
        queries, titles = self._texts
        labels = self.scorer.labels
        out = []
        for j, row in enumerate(scored):
            pair = ExplainedPair(
                source="dataset",
                query=str(queries[int(q_row[j])].as_py()),
                item=str(titles[int(i_row[j])].as_py()),
                student_input=row.inputs,
                pair_id=int(wanted[j]),
                split=SPLITS[int(split[j])],
                bucket=BUCKETS[int(bucket[j])],
                gold=labels[int(label[j])] if label[j] >= 0 else None,
            )
            out.append(self._explanation(pair, row.view, teacher[j]))
        return out

    def explain_text(self, query: str, item: str) -> PairExplanation:
        return self.explain_texts([(query, item)])[0]

    def explain_texts(self, pairs: Sequence[tuple[str, str]]) -> list[PairExplanation]:
        """Explanations of free ``(query, item text)`` pairs; the item text is the item's title.

        The texts are written to a temporary dataset (deleted on return); a teacher run judges
        them all at once (one load of the teacher per call)."""
        cfg = self.scorer.student.cfg
        student = student_spec(str(cfg.model.student))
        if student.needs_context:  # its input is more than the pair's text
            raise ConfigError(
                f"model.student {student.name}: the student {student.needs_context}, which "
                "free text has none of; explain a pair of the dataset with --pair-id"
            )
        if cfg.data.professional_terms:
            raise ConfigError(
                "data.professional_terms: the student's vocabulary adds terms mined from its "
                "catalogue, which free text cannot reproduce; explain a pair with --pair-id"
            )
        with tempfile.TemporaryDirectory(prefix="relkd-explain-") as tmp:
            root = Path(tmp)
            ds = write_text_pairs(root / "dataset", pairs, self.scorer.student.scheme.name)
            dm = self.scorer.student.datamodule(
                ds.root, cache_dir=str(root / "tokenized"), **DATA_SETTINGS
            )
            rows = np.arange(len(pairs), dtype=np.int64)  # pair i is store row i
            scored = self.scorer.score(dm, rows)
            teacher = self._judge_texts(ds.root, len(pairs), root / "prompts")
            queries = ds.table("queries", ["text"]).column("text").to_pylist()
            titles = ds.table("items", ["title"]).column("title").to_pylist()
        return [
            self._explanation(
                ExplainedPair("text", queries[j], titles[j], row.inputs), row.view, teacher[j]
            )
            for j, row in enumerate(scored)
        ]

    # -- helpers -------------------------------------------------------------------------

    def _judge_pairs(self, pair_ids: np.ndarray, labelled: np.ndarray) -> list[TeacherView]:
        judge = self.judge
        if judge is None:
            return [_no_teacher()] * len(pair_ids)
        return judge.judge_pairs(self.dataset, pair_ids, labelled)

    def _judge_texts(self, data_dir: Path, n: int, prompts: Path) -> list[TeacherView]:
        judge = self.judge
        if judge is None:
            return [_no_teacher()] * n
        try:
            return judge.judge_texts(data_dir, n, prompts)
        finally:
            judge.forget(data_dir)

    def _explanation(
        self, pair: ExplainedPair, student: StudentView, teacher: TeacherView
    ) -> PairExplanation:
        s = self.scorer.student
        assert s.checkpoint is not None
        return PairExplanation(
            run=self.run_dir,
            checkpoint=s.checkpoint,
            student_kind=str(s.cfg.model.student),
            pair=pair,
            student=student,
            teacher=teacher,
        )

    def close(self) -> None:
        """Release the teacher (its device memory); the explainer stays usable."""
        judge = self.__dict__.get("judge")
        if judge is not None:
            judge.close()


def _no_teacher() -> TeacherView:
    return TeacherView("none", "no --teacher given, and the run read no teacher cache")
