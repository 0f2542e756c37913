"""``relkd teacher annotate``: label pairs with a trained teacher into a resumable cache.

The run: load the exported teacher, verify the dataset against its manifest, render every
prompt once (the prompt store), select the requested pairs (labelled pairs of ``--splits``, plus
the unlabelled pool with ``--pool``, or only its nested ``--pool-ratio`` subset, see
relkd/data/pool_subset.py) and this process's ``--shard``, skip the pairs the cache
already holds, and annotate the rest in parts of ``--part-size`` pairs, committing each part
atomically. Parts are cut from the pair_id-sorted work list, so a resumed run batches exactly as
an uninterrupted one. An unsharded run finalizes the cache at the end; sharded runs are
finalized once by ``relkd teacher cache finalize``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import get_label_scheme
from relkd.data.pool_subset import pool_mask
from relkd.data.schema import SPLITS
from relkd.errors import ConfigError, DataError
from relkd.teacher.annotator import Annotator
from relkd.teacher_cache.cache_writer import Shard, TeacherCacheWriter

log = logging.getLogger(__name__)

# --backend name -> "module:Annotator subclass", imported only when chosen. Every backend is
# built as Backend(exported, load, store, scheme, adapter_sha256, batch_size=..., device=...,
# precision=..., hidden=..., cot=..., max_new_tokens=...).
BACKENDS: dict[str, str] = {"hf": "relkd.teacher.hf_annotator:HFAnnotator"}


def backend_class(name: str) -> type[Annotator]:
    if name not in BACKENDS:
        raise ConfigError(f"--backend {name!r}: available backends are {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclass
class AnnotateOptions:
    """What ``relkd teacher annotate`` was asked for (see ``relkd teacher annotate --help``)."""

    run_dir: Path
    data: Path | None = None
    splits: tuple[str, ...] = SPLITS
    pool: bool = False
    pool_ratio: float | None = None  # only this subset of the pool (relkd.data.pool_subset)
    out: Path | None = None
    backend: str = "hf"
    shard: Shard = field(default_factory=Shard)
    batch_size: int = 32
    part_size: int = 2048
    device: str = "auto"
    precision: str = "auto"
    hidden: str = "none"
    cot: bool = True
    max_new_tokens: int | None = None
    force: bool = False
    finalize: bool = True
    cache_dir: Path = Path("data_cache/prompts")
    limit: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.pool_ratio is not None:
            if not self.pool_ratio >= 0:  # also refuses nan
                raise ConfigError(f"--pool-ratio must be >= 0, got {self.pool_ratio}")
            self.pool = True  # a subset of the pool implies the pool


@dataclass
class AnnotateResult:
    cache: Path
    requested: int
    skipped: int
    annotated: int
    seconds: float
    annotate_seconds: float
    finalized: bool

    @property
    def pairs_per_s(self) -> float:
        return self.annotated / self.annotate_seconds if self.annotate_seconds > 0 else 0.0


def options_from_args(args: Any) -> AnnotateOptions:
    for name in ("batch_size", "part_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be >= 1")
    return AnnotateOptions(
        run_dir=args.run_dir,
        data=args.data,
        splits=tuple(s for s in args.splits.split(",") if s),
        pool=args.pool,
        pool_ratio=args.pool_ratio,
        out=args.out,
        backend=args.backend,
        shard=Shard.parse(args.shard),
        batch_size=args.batch_size,
        part_size=args.part_size,
        device=args.device,
        precision=args.precision,
        hidden=args.hidden,
        cot=not args.no_cot,
        max_new_tokens=args.max_new_tokens,
        force=args.force,
        finalize=not args.no_finalize,
        cache_dir=args.prompt_cache,
        limit=args.limit,
        progress=not args.quiet,
    )


def adapter_dir(run_dir: Path) -> Path:
    """A run folder's ``adapter/``, or the exported teacher folder itself."""
    for candidate in (run_dir / "adapter", run_dir):
        if (candidate / "relkd_teacher.json").is_file():
            return candidate
    raise DataError(
        f"{run_dir}: no adapter/relkd_teacher.json; pass a `relkd teacher train` run folder or "
        "its adapter/ folder"
    )


def _dataset_dir(opts: AnnotateOptions, manifest: dict[str, Any], adapter: Path) -> Path:
    if opts.data is not None:
        return opts.data
    recorded = (manifest.get("dataset") or {}).get("root")
    if not recorded:
        raise DataError(f"{adapter / 'relkd_teacher.json'}: no dataset recorded; pass --data")
    return Path(recorded)


@dataclass
class AnnotateSetup:
    """What a run annotates with: the backend over its prompt store, the verified dataset, the
    exported teacher folder and the cache fingerprint."""

    annotator: Annotator
    store: Any
    dataset: CanonicalDataset
    adapter: Path
    fingerprint: dict[str, Any]


def build_annotator(opts: AnnotateOptions) -> AnnotateSetup:
    """Load the teacher, verify the dataset, render the prompts and fingerprint the run."""
    from datamodules.prompt_store import PromptStore
    from relkd.teacher.teacher_adapter import adapter_sha256, load_teacher, read_teacher

    backend = backend_class(opts.backend)
    adapter = adapter_dir(opts.run_dir)
    exported = read_teacher(adapter)
    manifest = exported.manifest
    dataset = CanonicalDataset(_dataset_dir(opts, manifest, adapter))
    tables = dataset.verify()
    scheme = get_label_scheme(dataset.manifest.label_scheme)
    if list(manifest["labels"]) != list(scheme.labels):
        raise DataError(
            f"{adapter / 'relkd_teacher.json'}: the teacher's labels {manifest['labels']} are not "
            f"the dataset's {list(scheme.labels)} ({dataset.root})"
        )
    # responses are never fed at inference; the rule-based ones need no CoT file
    spec = replace(
        exported.prompt_spec, labelled_only=not opts.pool, cot_source="rules", cot_file=None
    )
    store = PromptStore.open_or_build(
        dataset.root, exported.tokenizer, spec, cache_dir=opts.cache_dir
    )
    annotator = backend(
        exported,
        lambda: load_teacher(adapter),
        store,
        scheme,
        adapter_sha256(adapter),
        batch_size=opts.batch_size,
        device=opts.device,
        precision=opts.precision,
        hidden=opts.hidden,
        cot=opts.cot,
        max_new_tokens=opts.max_new_tokens,
    )
    read = store.manifest["inputs"]["dataset_tables"]
    fingerprint = {
        "format": 2,
        "teacher": annotator.identity(),
        "decode": annotator.settings(),
        "label_scheme": scheme.name,
        "dataset": {
            "name": dataset.manifest.name,
            "tables": {t: tables[t] for t in sorted(read)},
        },
    }
    return AnnotateSetup(annotator, store, dataset, adapter, fingerprint)


def select_rows(
    store: Any,
    splits: tuple[str, ...],
    pool: bool,
    shard: Shard,
    pool_ratio: float | None = None,
) -> np.ndarray:
    """Prompt-store rows requested (labelled pairs of ``splits``, the pool, or with
    ``pool_ratio`` its subset from relkd.data.pool_subset) in ``shard``."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ConfigError(f"--splits: unknown split(s) {unknown}; known: {list(SPLITS)}")
    label = np.asarray(store.view("label"))
    split = np.asarray(store.view("split"))
    codes = [SPLITS.index(s) for s in splits]
    pid = np.asarray(store.view("pair_id"))
    keep = (label >= 0) & np.isin(split, codes)
    if pool:
        keep |= pool_mask(pid, label >= 0, split == SPLITS.index("train"), pool_ratio)
    keep &= shard.select(pid)
    return np.flatnonzero(keep)


def annotate(opts: AnnotateOptions) -> AnnotateResult:
    """Run one annotate command (see the module docstring)."""
    from relkd.teacher_cache.cache_finalizer import finalize_cache

    t0 = time.perf_counter()
    setup = build_annotator(opts)
    annotator, store, dataset, fp = setup.annotator, setup.store, setup.dataset, setup.fingerprint
    out = opts.out or (opts.run_dir / "teacher_cache" / dataset.root.name)
    writer = TeacherCacheWriter.open(
        out,
        fp,
        shard=opts.shard,
        force=opts.force,
        info={
            "label_scheme": fp["label_scheme"],
            "labels": list(get_label_scheme(fp["label_scheme"]).labels),
            "dataset": {"name": dataset.manifest.name, "root": str(dataset.root)},
            "teacher": str(setup.adapter),
        },
    )
    rows = select_rows(store, opts.splits, opts.pool, opts.shard, opts.pool_ratio)
    pid = np.asarray(store.view("pair_id"))[rows]
    order = np.argsort(pid, kind="stable")
    rows, pid = rows[order], pid[order]
    if opts.limit is not None:
        rows, pid = rows[: opts.limit], pid[: opts.limit]
    annotated = 0
    work_s = 0.0
    with writer.lock():
        done = writer.committed_pair_ids()
        todo = ~np.isin(pid, done, assume_unique=True)
        skipped = int(len(rows) - todo.sum())
        rows = rows[todo]
        request = {
            "splits": sorted(opts.splits),
            "pool": opts.pool,
            "pool_ratio": opts.pool_ratio if opts.pool else None,
        }
        writer.begin(request, requested=len(pid))
        if len(rows):
            annotator.load()  # weights load outside the timed work, and only when needed
        report = _progress(opts.progress, len(rows), writer.root, opts.shard)
        try:
            for start in range(0, len(rows), opts.part_size):
                chunk = rows[start : start + opts.part_size]
                t = time.perf_counter()
                ann = annotator.annotate(chunk)
                writer.commit(ann)
                work_s += time.perf_counter() - t
                annotated += len(chunk)
                report(annotated, work_s)
        finally:
            report(None, work_s)
            annotator.close()
        rate = annotated / work_s if work_s > 0 else 0.0
        writer.finish(
            complete=opts.limit is None,
            stats={
                "annotated": annotated,
                "skipped": skipped,
                "seconds": round(work_s, 3),
                "pairs_per_s": round(rate, 2),
                "settings": annotator.settings(),
            },
        )
    finalized = False
    if opts.shard.count == 1 and opts.finalize and opts.limit is None:
        if annotated or not writer.manifest.get("finalized"):
            finalize_cache(writer.root, dataset.root)
        finalized = True
    return AnnotateResult(
        cache=writer.root,
        requested=len(pid),
        skipped=skipped,
        annotated=annotated,
        seconds=time.perf_counter() - t0,
        annotate_seconds=work_s,
        finalized=finalized,
    )


def _progress(
    enabled: bool, total: int, root: Path, shard: Shard
) -> Callable[[int | None, float], None]:
    """A rich progress bar (pairs/s, ETA) on a terminal; a log line per part elsewhere (SLURM
    logs). Call with the count done so far, and once with None at the end."""
    label = f"annotate {root.name}" + (f" [{shard.index}/{shard.count}]" if shard.count > 1 else "")
    if enabled and sys.stderr.isatty() and total:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} pairs/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        task = bar.add_task(label, total=total, rate="-")
        bar.start()

        def rich_report(done: int | None, seconds: float) -> None:
            if done is None:
                bar.stop()
                return
            bar.update(task, completed=done, rate=f"{done / max(seconds, 1e-9):.1f}")

        return rich_report

    def log_report(done: int | None, seconds: float) -> None:
        if done is None or not enabled:
            return
        rate = done / max(seconds, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("inf")
        print(
            f"{label}: {done}/{total} pairs, {rate:.1f} pairs/s, ETA {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    return log_report
