"""The teacher beside the student: its judgement of a pair read from a teacher cache, or generated
on the spot by a teacher run through the annotate path (the same prompt store, backend and CoT
parsing ``relkd teacher annotate`` uses, so an explanation shows what annotation would cache).

``--teacher`` is a teacher cache folder (answers the pairs it holds) or a teacher run folder
(answers from ``RUN/teacher_cache/<dataset folder>`` when annotate wrote one there and holds
the pair, else generates). A cache is verified against the pair's dataset first: one annotated
on another dataset, or on an older version of it, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import DataError
from relkd.explain.explanation import LabelDistribution, TeacherView
from relkd.explain.store_rows import rows_of
from relkd.teacher.annotate_runner import AnnotateOptions, AnnotateSetup, build_annotator
from relkd.teacher_cache.annotation import Annotation
from relkd.teacher_cache.cache_writer import read_cache_manifest
from relkd.teacher_cache.teacher_cache import TeacherCache

CACHE_MANIFEST = "manifest.json"
TEACHER_MANIFEST = "relkd_teacher.json"


@dataclass(frozen=True)
class TeacherRef:
    """What a ``--teacher`` path is: a run that can generate, or a cache that can only look up."""

    path: Path
    run: Path | None  # a teacher run (or its adapter/ folder)
    cache: Path | None  # an explicit cache folder

    @classmethod
    def of(cls, path: str | Path) -> TeacherRef:
        """Classify ``path``; DataError naming it when it is neither kind."""
        path = Path(path)
        if (path / CACHE_MANIFEST).is_file():
            read_cache_manifest(path)  # DataError naming the file when it is another artifact
            return cls(path, None, path)
        if any((p / TEACHER_MANIFEST).is_file() for p in (path / "adapter", path)):
            return cls(path, path, None)
        raise DataError(
            f"--teacher {path}: neither a teacher run (no adapter/{TEACHER_MANIFEST}) nor a "
            f"teacher cache (no {CACHE_MANIFEST} of kind 'teacher_cache')"
        )

    def cache_for(self, dataset: CanonicalDataset) -> Path | None:
        """The cache that may hold ``dataset``'s pairs: the explicit one, or the run's default
        annotate output for this dataset when it exists."""
        if self.cache is not None:
            return self.cache
        assert self.run is not None
        default = self.run / "teacher_cache" / dataset.root.name
        return default if (default / CACHE_MANIFEST).is_file() else None


def cache_dataset_name(manifest: dict[str, Any]) -> str | None:
    """The dataset name a cache records (v1: ``dataset``; v2: its fingerprint's)."""
    if manifest.get("schema_version") == 2:
        return ((manifest.get("fingerprint") or {}).get("dataset") or {}).get("name")
    return (manifest.get("dataset") or {}).get("name")


def open_cache(root: Path, dataset: CanonicalDataset) -> TeacherCache:
    """Load ``root`` verified against ``dataset``: DataError naming the manifest when it was
    annotated on another dataset, StaleArtifactError when ``dataset`` changed since."""
    name = cache_dataset_name(read_cache_manifest(root))
    if name is not None and name != dataset.manifest.name:
        raise DataError(
            f"{root / CACHE_MANIFEST}: field dataset: the cache was annotated on dataset {name!r}, "
            f"the pair is from {dataset.manifest.name!r} ({dataset.root}); pass the teacher cache "
            "of this dataset"
        )
    return TeacherCache.load(root, dataset)


def _aspects(codes: np.ndarray) -> dict[str, str | None]:
    return {
        a: (ASPECT_VALUES[int(c)] if c >= 0 else None) for a, c in zip(ASPECTS, codes, strict=True)
    }


def cached_view(cache: TeacherCache, row: int) -> TeacherView:
    rows = np.asarray([row], dtype=np.int64)
    return TeacherView(
        source="cache",
        where=str(cache.root),
        dist=LabelDistribution(
            cache.labels, np.asarray(cache.probs[row], np.float64), float(cache.score[row])
        ),
        cot=cache.cot(rows)[0] if cache.has_cot else None,
        aspects=_aspects(np.asarray(cache.aspect_codes[row])),
    )


def generated_view(ann: Annotation, i: int, labels: tuple[str, ...], run: Path) -> TeacherView:
    stated = int(ann.verdict[i])
    return TeacherView(
        source="generated",
        where=str(run),
        dist=LabelDistribution(labels, np.asarray(ann.probs[i], np.float64), float(ann.score[i])),
        cot=None if ann.cot is None else ann.cot[i],
        stated_verdict=labels[stated] if stated >= 0 else None,
        aspects=_aspects(np.asarray(ann.aspects[i])),
    )


class TeacherJudge:
    """Answers pairs for one ``--teacher``; caches and the loaded teacher are reused across
    calls on the same dataset.

    Args:
        ref: the classified ``--teacher`` path.
        prompt_cache: where prompt stores of dataset pairs are built (default: annotate's,
            ``data_cache/prompts``, so a store ``relkd teacher annotate`` built is reused).
        device: the teacher's device (``auto``: CUDA when available).
    """

    def __init__(
        self, ref: TeacherRef, prompt_cache: Path | None = None, device: str = "auto"
    ) -> None:
        self.ref = ref
        self.prompt_cache = prompt_cache
        self.device = device
        self._caches: dict[Path, TeacherCache | None] = {}
        self._setups: dict[tuple[Path, bool], AnnotateSetup] = {}

    def cache(self, dataset: CanonicalDataset) -> TeacherCache | None:
        if dataset.root not in self._caches:
            root = self.ref.cache_for(dataset)
            self._caches[dataset.root] = None if root is None else open_cache(root, dataset)
        return self._caches[dataset.root]

    def judge_pairs(
        self, dataset: CanonicalDataset, pair_ids: np.ndarray, labelled: np.ndarray
    ) -> list[TeacherView]:
        """One view per pair of ``dataset`` (``labelled``: which of them have a gold label,
        since annotate's prompt store holds unlabelled pairs only with ``--pool``)."""
        pair_ids = np.asarray(pair_ids, dtype=np.int64)
        cache = self.cache(dataset)
        rows = cache.align(pair_ids) if cache is not None else np.full(len(pair_ids), -1)
        views: list[TeacherView | None] = [
            cached_view(cache, int(r)) if cache is not None and r >= 0 else None for r in rows
        ]
        missing = np.flatnonzero(rows < 0)
        if len(missing) and self.ref.run is not None:
            pool = not bool(np.asarray(labelled)[missing].all())
            generated = self._generate(dataset.root, pair_ids[missing], pool, self.prompt_cache)
            for j, view in zip(missing.tolist(), generated, strict=True):
                views[j] = view
        where = cache.root if cache is not None else self.ref.path
        return [
            v
            if v is not None
            else TeacherView("none", f"pair {int(p)} is not in teacher cache {where}")
            for v, p in zip(views, pair_ids.tolist(), strict=True)
        ]

    def judge_texts(self, data_dir: Path, n: int, prompt_cache: Path) -> list[TeacherView]:
        """Views of the ``n`` pairs of a free-text dataset (relkd/explain/text_pairs.py)."""
        if self.ref.run is None:
            reason = (
                f"free text is not in teacher cache {self.ref.path}; pass a teacher run as "
                "--teacher to generate its judgement"
            )
            return [TeacherView("none", reason)] * n
        return self._generate(data_dir, np.arange(n, dtype=np.int64), True, prompt_cache)

    def _generate(
        self, data_dir: Path, pair_ids: np.ndarray, pool: bool, prompt_cache: Path | None
    ) -> list[TeacherView]:
        assert self.ref.run is not None
        setup = self._setup(data_dir, pool, prompt_cache)
        rows = rows_of(setup.store, pair_ids)
        if (rows < 0).any():  # annotate's selection (labelled, or --pool): cannot happen
            raise DataError(
                f"{setup.store.root}: the prompt store lacks pairs {pair_ids[rows < 0]}"
            )
        ann = setup.annotator.annotate(rows)
        labels = setup.dataset.scheme.labels
        return [generated_view(ann, i, labels, self.ref.run) for i in range(len(pair_ids))]

    def _setup(self, data_dir: Path, pool: bool, prompt_cache: Path | None) -> AnnotateSetup:
        key = (data_dir, pool)
        if key not in self._setups:
            assert self.ref.run is not None
            opts = AnnotateOptions(
                run_dir=self.ref.run, data=data_dir, pool=pool, device=self.device, progress=False
            )
            if prompt_cache is not None:
                opts.cache_dir = prompt_cache
            self._setups[key] = build_annotator(opts)
        return self._setups[key]

    def forget(self, data_dir: Path) -> None:
        """Release the teacher set up for ``data_dir`` (a free-text dataset about to be deleted)."""
        for key in [k for k in self._setups if k[0] == data_dir]:
            self._setups.pop(key).annotator.close()

    def close(self) -> None:
        for setup in self._setups.values():
            setup.annotator.close()
        self._setups.clear()
