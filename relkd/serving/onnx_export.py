"""``relkd export RUN_DIR --format onnx``: a trained student as ONNX graphs for serving.

The student is rebuilt from the run (config.yaml + the checkpoint's ``net.`` weights, eval
mode) and exported with dynamic batch and sequence dimensions: first with the torch.export-based
exporter (``dynamo=True`` with ``dynamic_shapes``), falling back to the TorchScript exporter
(``dynamic_axes``) if that fails; ``export.json`` records which one produced each graph.

Files (default folder ``RUN_DIR/export/onnx``)::

    cross-encoder:  model.onnx        input_ids, attention_mask[, token_type_ids] -> logits
    two-tower:      query_tower.onnx  input_ids, attention_mask -> query_embedding
                    item_tower.onnx   input_ids, attention_mask -> item_embedding
                    scorer.onnx       query_embedding, item_embedding -> logits
                    item_embeddings.npy  float32 [n_items, H], the item tower over every item of
                                      the run's dataset, in items-table row order
                    item_ids.json     the dataset's item_id of each item_embeddings row
    both:           export.json       run, checkpoint sha256, student, opset, exporter, graph
                                      inputs/outputs, labels and gains (ranking score =
                                      softmax(logits) @ gains), encoding settings, parity result

Parity: before anything is written, onnxruntime is run on a real batch of the run's DataModule
(``PARITY_PAIRS`` pairs of the test split, a different batch size and length than the example
the graphs were traced with, plus a single pair) and compared with PyTorch; a max abs difference
above ``TOLERANCE`` raises ExportParityError. Two-tower: query embeddings, item embeddings, and
logits served as ``scorer(query_tower(q), item_table[row])`` against the PyTorch student.

The folder is built in a staging sibling and renamed into place (a reader never sees half an
export). An existing non-empty target is never silently replaced: when it is an export of the
same checkpoint (same checkpoint sha256, config.yaml sha256, opset and, for a two-tower, the
same items table) whose files are unchanged, it is reused and nothing is written; anything else
is refused with a DataError (library callers may pass ``overwrite=True`` to replace an earlier
export; a folder that is not an export is never replaced).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datamodules.tokenized_store import ITEM_FIELD_SEPARATOR
from relkd.artifacts.atomic_files import (
    atomic_write_json,
    check_file_record,
    check_replaceable,
    file_record,
    move_into_place,
    sha256_file,
    staged_folder,
)
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError, DataError, RelkdError
from relkd.nets.student_registry import servable_students, student_spec
from relkd.nets.two_tower import TwoTower
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.run_setup import student_name
from relkd.serving.item_table import encode_items, item_ids
from relkd.serving.runtime import MANIFEST, read_manifest, require_onnxruntime, session
from relkd.serving.student_loader import (
    LoadedStudent,
    checkpoint_path,
    net_state_dict,
    run_config,
    student_from_config,
)

log = logging.getLogger(__name__)

FORMAT = "relkd-onnx-export"
FORMAT_VERSION = 1
OPSET = 18  # onnxruntime >= 1.14 runs it (the serve extra asks for >= 1.18)
TOLERANCE = 1e-4
PARITY_PAIRS = 32
EXAMPLE_PAIRS = 3  # traced example: the shortest pairs of the parity batch (another shape)
EXPORTERS = ("auto", "dynamo", "torchscript")
ITEM_TABLE = "item_embeddings.npy"
ITEM_IDS = "item_ids.json"


class ExportParityError(RelkdError):
    """onnxruntime and PyTorch disagree on the parity batch beyond the tolerance."""


# ---- the graphs ----------------------------------------------------------------------------


class CrossEncoderGraph(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.net(input_ids, attention_mask, token_type_ids)["logits"]


class CrossEncoderGraphNoTypes(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids, attention_mask):
        return self.net(input_ids, attention_mask)["logits"]


class QueryTowerGraph(nn.Module):
    def __init__(self, net: TwoTower) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids, attention_mask):
        return self.net.encode_query(input_ids, attention_mask)


class ItemTowerGraph(nn.Module):
    def __init__(self, net: TwoTower) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids, attention_mask):
        return self.net.encode_item(input_ids, attention_mask)


class ScorerGraph(nn.Module):
    def __init__(self, net: TwoTower) -> None:
        super().__init__()
        self.net = net

    def forward(self, query_embedding, item_embedding):
        return self.net.compare(query_embedding, item_embedding)["logits"]


TOKENS = {0: "batch", 1: "sequence"}
ROWS = {0: "batch"}


@dataclass
class Graph:
    """One ONNX file: the module, its traced example and its named (dynamic) axes."""

    file: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]  # name -> example tensor, in forward() order
    outputs: dict[str, dict[int, str]]  # name -> dynamic axes
    axes: dict[str, dict[int, str]]  # input name -> dynamic axes
    exporter: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "dynamic_axes": {
                name: {str(a): d for a, d in axes.items()}
                for name, axes in {**self.axes, **self.outputs}.items()
            },
            "exporter": self.exporter,
        }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' deprecation warnings and registration chatter, silenced."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip()


def export_graph(graph: Graph, path: Path, opset: int, exporter: str) -> str | None:
    """Write ``graph`` to ``path``; returns why the dynamo exporter was not used (None: it was).

    ``exporter``: ``auto`` (dynamo, then TorchScript if dynamo fails), ``dynamo`` or
    ``torchscript``. Sets ``graph.exporter``.
    """
    names, args = list(graph.inputs), tuple(graph.inputs.values())
    fallback = None
    if exporter in ("auto", "dynamo"):
        dims: dict[str, Any] = {}
        shapes = tuple(
            {a: dims.setdefault(d, torch.export.Dim(d)) for a, d in graph.axes[n].items()}
            for n in names
        )
        try:
            with _quiet():
                program = torch.onnx.export(
                    graph.module,
                    args,
                    dynamo=True,
                    dynamic_shapes=shapes,
                    input_names=names,
                    output_names=list(graph.outputs),
                    opset_version=opset,
                    verbose=False,
                )
                program.save(str(path), external_data=False)
            graph.exporter = "dynamo"
            return None
        except Exception as exc:
            if exporter == "dynamo":
                raise
            fallback = _first_line(exc)
            log.warning(
                "%s: the dynamo exporter failed (%s); using the TorchScript exporter",
                graph.file,
                fallback,
            )
            path.unlink(missing_ok=True)
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            graph.module,
            args,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=list(graph.outputs),
            dynamic_axes={**graph.axes, **graph.outputs},
            opset_version=opset,
            do_constant_folding=True,
        )
    graph.exporter = "torchscript"
    return fallback or "exporter='torchscript' was asked for"


# ---- batches -------------------------------------------------------------------------------


def parity_rows(dm: Any, n: int) -> tuple[str, np.ndarray]:
    """``n`` labelled pairs spread over the test split (val, then train, if it is empty)."""
    for split in ("test", "val", "train"):
        rows = dm.rows(split)
        if len(rows):
            pick = np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(np.int64)
            return split, rows[np.unique(pick)]
    raise DataError(f"{dm.data_dir}: no labelled pairs to check the export on")


def _trim(
    ids: torch.Tensor, mask: torch.Tensor, *more: torch.Tensor, avoid: int | None = None
) -> tuple[torch.Tensor, ...]:
    """Cut right padding no row of the batch needs. ``avoid``: a width the result must not
    have (the traced example's batch size: equal sizes could be traced as one dimension); a
    padding column is added instead."""
    width = max(int(mask.sum(1).max()), 2)
    if width == avoid:
        width += 1
    out = []
    for t in (ids, mask, *more):
        t = t[:, :width]
        if t.shape[1] < width:
            t = torch.nn.functional.pad(t, (0, width - t.shape[1]))  # mask 0: padding
        out.append(t.contiguous())
    return tuple(out)


def _model_inputs(batch: dict[str, Any], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in keys if k in batch}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ---- the export ----------------------------------------------------------------------------


def _graphs(net: nn.Module, example: dict[str, Any], graph: str) -> list[Graph]:
    """The ONNX graphs of ``net`` for its spec's serving graph family (``cross_encoder`` or
    ``two_tower``)."""
    if graph == "two_tower":
        b = len(example["query_input_ids"])
        q = _trim(example["query_input_ids"], example["query_attention_mask"], avoid=b)
        i = _trim(example["item_input_ids"], example["item_attention_mask"], avoid=b)
        with torch.inference_mode():
            u, v = net.encode_query(*q), net.encode_item(*i)
        u, v = u.clone(), v.clone()  # inference tensors cannot be traced
        return [
            Graph(
                "query_tower.onnx",
                QueryTowerGraph(net),
                {"input_ids": q[0], "attention_mask": q[1]},
                {"query_embedding": ROWS},
                {"input_ids": TOKENS, "attention_mask": TOKENS},
            ),
            Graph(
                "item_tower.onnx",
                ItemTowerGraph(net),
                {"input_ids": i[0], "attention_mask": i[1]},
                {"item_embedding": ROWS},
                {"input_ids": TOKENS, "attention_mask": TOKENS},
            ),
            Graph(
                "scorer.onnx",
                ScorerGraph(net),
                {"query_embedding": u, "item_embedding": v},
                {"logits": ROWS},
                {"query_embedding": ROWS, "item_embedding": ROWS},
            ),
        ]
    inputs = _model_inputs(example, ("input_ids", "attention_mask", "token_type_ids"))
    trimmed = _trim(*inputs.values(), avoid=len(inputs["input_ids"]))
    inputs = dict(zip(inputs, trimmed, strict=True))
    module = CrossEncoderGraph(net) if "token_type_ids" in inputs else CrossEncoderGraphNoTypes(net)
    return [
        Graph(
            "model.onnx",
            module,
            inputs,
            {"logits": ROWS},
            {name: TOKENS for name in inputs},
        )
    ]


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@torch.inference_mode()
def check_parity(
    net: nn.Module,
    folder: Path,
    batch: dict[str, Any],
    table: np.ndarray | None,
    tolerance: float,
) -> dict[str, Any]:
    """Max abs differences, onnxruntime vs PyTorch, on ``batch`` and on its first pair alone;
    ``table`` (the item embeddings) is given for a two-tower export, None for a cross-encoder.

    Raises ExportParityError (naming the output and the difference) above ``tolerance``.
    """
    diffs: dict[str, float] = {}
    sessions: dict[str, Any] = {}

    def ort(file: str, feed: dict[str, torch.Tensor | np.ndarray]) -> np.ndarray:
        if file not in sessions:
            sessions[file] = session(folder / file)
        sess = sessions[file]
        arrays = {k: v if isinstance(v, np.ndarray) else _np(v) for k, v in feed.items()}
        try:
            return sess.run(None, arrays)[0]
        except Exception as exc:
            shapes = {k: tuple(v.shape) for k, v in arrays.items()}
            raise ExportParityError(
                f"{folder / file}: onnxruntime cannot run inputs of shapes {shapes} "
                f"({_first_line(exc)})"
            ) from None

    shapes: dict[str, list[int]] = {}
    if table is not None:  # the two-tower graphs
        q_ids, q_mask = batch["query_input_ids"], batch["query_attention_mask"]
        i_ids, i_mask = batch["item_input_ids"], batch["item_attention_mask"]
        rows = _np(batch["item_index"])
        net.reset_item_cache()
        logits = net(q_ids, q_mask, i_ids, i_mask)["logits"]
        u_ort = ort("query_tower.onnx", {"input_ids": q_ids, "attention_mask": q_mask})
        v_ort = ort("item_tower.onnx", {"input_ids": i_ids, "attention_mask": i_mask})
        diffs["query_embedding"] = _diff(u_ort, net.encode_query(q_ids, q_mask))
        diffs["item_embedding"] = _diff(v_ort, net.encode_item(i_ids, i_mask))
        diffs["item_table"] = _diff(table[rows], net.encode_item(i_ids, i_mask))
        served = ort("scorer.onnx", {"query_embedding": u_ort, "item_embedding": table[rows]})
        diffs["logits"] = _diff(served, logits)
        q1, i1 = _trim(q_ids[:1], q_mask[:1]), _trim(i_ids[:1], i_mask[:1])
        u1 = ort("query_tower.onnx", {"input_ids": q1[0], "attention_mask": q1[1]})
        one = ort("scorer.onnx", {"query_embedding": u1, "item_embedding": table[rows[:1]]})
        diffs["logits_single_pair"] = _diff(one, net(*q1, *i1)["logits"])
        shapes = {"query": list(q_ids.shape), "item": list(i_ids.shape)}
    else:
        inputs = _model_inputs(batch, ("input_ids", "attention_mask", "token_type_ids"))
        logits = net(**inputs)["logits"]
        diffs["logits"] = _diff(ort("model.onnx", inputs), logits)
        first = dict(zip(inputs, _trim(*(v[:1] for v in inputs.values())), strict=True))
        diffs["logits_single_pair"] = _diff(ort("model.onnx", first), net(**first)["logits"])
        shapes = {"pair": list(inputs["input_ids"].shape)}
    worst = max(diffs, key=lambda k: diffs[k])
    result = {
        "tolerance": tolerance,
        "max_abs_diff": diffs,
        "max": diffs[worst],
        "shapes": shapes,
        "passed": diffs[worst] <= tolerance,
    }
    if not result["passed"]:
        raise ExportParityError(
            f"{folder}: onnxruntime {worst} differs from PyTorch by {diffs[worst]:.3g} > "
            f"tolerance {tolerance:g} on {len(logits)} pairs (all: "
            + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
            + ")"
        )
    return result


def _unsupported(cfg: Any) -> str | None:
    """Why this student cannot be exported (None when it can)."""
    student = student_spec(cfg.model.student)
    if student.serving_graph is None:
        return (
            f"model.student {student.name} {student.needs_context} at serving time; export "
            f"serves {' and '.join(servable_students())} students (distil it into one of them "
            "to serve it)"
        )
    if cfg.data.layout != "packed" or cfg.data.professional_terms:
        return (
            "data.layout slots and data.professional_terms change the serving-time "
            "tokenisation, which the ONNX item tokeniser does not reproduce yet"
        )
    return None


def _identity(cfg: Any, tables: dict[str, str], sha: str, config_sha: str | None, opset: int):
    kind = student_spec(cfg.model.student).serving_graph
    identity: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "student": kind,
        "checkpoint_sha256": sha,
        "config_sha256": config_sha,
        "opset": opset,
    }
    if kind == "two_tower":
        identity["items_sha256"] = tables.get("items")
    return identity


# ---- the target folder ---------------------------------------------------------------------


def _short(value: Any) -> Any:
    return value[:12] if isinstance(value, str) and len(value) == 64 else value


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(wanted)):
        a, b = recorded.get(key), wanted.get(key)
        if a != b:
            out.append(f"{key} {_short(a)} != {_short(b)}")
    return out


def reusable_export(target: Path, identity: dict[str, Any], overwrite: bool) -> dict | None:
    """The manifest of an export at ``target`` of the same identity with unchanged files
    (reuse it), or None when ``target`` is free (missing or an empty folder) or may be replaced
    (``overwrite`` and an earlier export). Raises DataError otherwise."""
    if not target.exists():
        return None
    if not target.is_dir():
        raise DataError(f"{target}: exists and is not a folder; choose another --out")
    if not any(target.iterdir()):
        return None
    if not (target / MANIFEST).is_file():
        raise DataError(
            f"{target}: exists, is not empty and is not a relkd ONNX export (no {MANIFEST}); "
            "refusing to overwrite it; choose another --out"
        )
    manifest = read_manifest(target)
    if overwrite:
        check_replaceable(target, target, True, "relkd ONNX export")
        return None
    diff = _differences(manifest.get("identity") or {}, identity)
    if diff:
        raise DataError(
            f"{target}: holds another export ({'; '.join(diff)}); refusing to overwrite it; "
            "choose another --out or remove that folder"
        )
    for name, record in (manifest.get("files") or {}).items():
        check_file_record(
            target / name, record, target / MANIFEST, hint="remove the folder to export again"
        )
    return manifest


@dataclass(frozen=True)
class ExportResult:
    """Where an export is, its manifest, and whether an existing one was reused."""

    out: Path
    manifest: dict[str, Any]
    reused: bool = False
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        m = self.manifest
        kind = "two-tower" if m["student"] == "two_tower" else "cross-encoder"
        sha = m["checkpoint_sha256"][:12]
        if self.reused:
            return (
                f"{self.out}: already holds the ONNX export of this checkpoint "
                f"(sha256 {sha}, {kind}); nothing written"
            )
        p = m["parity"]
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in p["max_abs_diff"].items())
        lines = [
            f"{self.out}: {kind} exported ({m['exporter']} exporter, opset {m['opset']}, "
            f"checkpoint sha256 {sha}, {self.seconds:.0f}s)",
            f"  files: {', '.join([*sorted(m['files']), MANIFEST])}",
            f"  parity vs PyTorch on {p['pairs']} {p['split']} pairs (and 1 pair): max |diff| "
            f"{diffs} (tolerance {p['tolerance']:g})",
        ]
        if "item_table" in m:
            t = m["item_table"]
            lines.insert(2, f"  item table: {t['rows']} items x {t['dim']} ({ITEM_TABLE})")
        return "\n".join(lines)


def _require_packages() -> dict[str, str]:
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "relkd export needs onnx, onnxruntime and onnxscript; install the serve extra: "
            "pip install -c constraints.txt -e '.[serve]'"
        ) from None
    ort = require_onnxruntime()
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}


def _default_out(run_dir: Path) -> Path:
    return run_dir / "export" / "onnx"


def export_onnx(
    run_dir: str | Path,
    out: str | Path | None = None,
    ckpt: str | Path = "best",
    *,
    opset: int = OPSET,
    exporter: str = "auto",
    parity_pairs: int = PARITY_PAIRS,
    tolerance: float = TOLERANCE,
    overwrite: bool = False,
) -> ExportResult:
    """Export a student run to ONNX (see the module docstring for the files and the rules).

    Args:
        run_dir: a student run folder (config.yaml, checkpoints/).
        out: the export folder (default ``RUN_DIR/export/onnx``).
        ckpt: ``best``, ``last`` or a checkpoint path.
        opset: ONNX opset of the graphs.
        exporter: ``auto`` (dynamo, TorchScript as fallback), ``dynamo`` or ``torchscript``.
        parity_pairs: test pairs onnxruntime is checked against PyTorch on.
        tolerance: largest max-abs difference accepted (logits and embeddings).
        overwrite: replace an earlier export of another checkpoint (never a non-export folder).

    Raises ConfigError (teacher run, missing config/checkpoint, missing packages), DataError
    (the target is taken), ExportParityError (onnxruntime disagrees with PyTorch).
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    started = time.perf_counter()
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    unsupported = _unsupported(cfg)
    if unsupported:
        raise ConfigError(f"{run_dir / 'config.yaml'}: {unsupported}")
    path = checkpoint_path(run_dir, ckpt)
    target = Path(out) if out is not None else _default_out(run_dir)
    versions = _require_packages()
    sha = sha256_file(path)
    config_sha = sha256_file(run_dir / "config.yaml")
    tables = CanonicalDataset(resolve_dataset(cfg.data, build=False)).verify()
    identity = _identity(cfg, tables, sha, config_sha, opset)
    existing = reusable_export(target, identity, overwrite)
    if existing is not None:
        return ExportResult(target, existing, reused=True)
    student = student_from_config(cfg, net_state_dict(path), source=path)

    net = student.net
    dm = student.datamodule()
    split, rows = parity_rows(dm, parity_pairs)
    batch = dm.eval_collator(rows)
    by_length = np.argsort(dm.pair_lengths(with_response=False)[rows], kind="stable")
    example = dm.eval_collator(rows[by_length[:EXAMPLE_PAIRS]])
    graphs = _graphs(net, example, student.kind)
    with staged_folder(target) as staging:
        fallbacks = {}
        for graph in graphs:
            reason = export_graph(graph, staging / graph.file, opset, exporter)
            if reason is not None:
                fallbacks[graph.file] = reason
        table = None
        extra: dict[str, Any] = {}
        if student.kind == "two_tower":
            table = encode_items(net, dm)
            np.save(staging / ITEM_TABLE, table)
            ids = item_ids(student.dataset)
            (staging / ITEM_IDS).write_text(json.dumps(ids) + "\n")
            extra["item_table"] = {
                "file": ITEM_TABLE,
                "ids": ITEM_IDS,
                "rows": int(table.shape[0]),
                "dim": int(table.shape[1]),
                "order": "items table row order of the dataset (item_ids.json: row -> item_id)",
            }
        parity = check_parity(net, staging, batch, table, tolerance)
        parity.update(
            pairs=len(rows),
            split=split,
            example_shapes={
                g.file: {k: list(v.shape) for k, v in g.inputs.items()} for g in graphs
            },
        )
        used = sorted({g.exporter for g in graphs})
        manifest = {
            "format": FORMAT,
            "identity": identity,
            "run_dir": str(run_dir.resolve()),
            "checkpoint": str(path.resolve()),
            "checkpoint_sha256": sha,
            "student": student.kind,
            "name": student_name(cfg.model, student.spec),
            "encoder": student.spec.name,
            "tokenizer": student.spec.tokenizer,
            "opset": opset,
            "exporter": used[0] if len(used) == 1 else "+".join(used),
            "exporter_fallback": fallbacks or None,
            "graphs": {g.file: g.describe() for g in graphs},
            "label_scheme": student.scheme.name,
            "labels": list(student.scheme.labels),
            "gains": [float(g) for g in student.scheme.gains],
            "score": "softmax(logits) @ gains (the expected gain; rank by it, higher first)",
            "encoding": _encoding(student),
            "dataset": {
                "name": student.dataset.manifest.name,
                "root": str(student.data_dir),
                "tables_read": student.tables_read,
            },
            **extra,
            "parity": parity,
            "versions": versions,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        manifest["files"] = {
            f.name: file_record(f) for f in sorted(staging.iterdir()) if f.is_file()
        }
        atomic_write_json(staging / MANIFEST, manifest)
        moved = move_into_place(staging, target, replace=overwrite)
    if not moved:  # another process exported into the same target first
        existing = reusable_export(target, identity, overwrite=False)
        assert existing is not None
        return ExportResult(target, existing, reused=True)
    return ExportResult(target, manifest, seconds=time.perf_counter() - started)


def _encoding(student: LoadedStudent) -> dict[str, Any]:
    """How a server must tokenize to feed the graphs (the DataModule's settings)."""
    d, m = student.cfg.data, student.cfg.model
    out: dict[str, Any] = {
        "tokenizer": student.spec.tokenizer,
        "max_length": int(d.max_length),
        "max_query_tokens": int(d.max_query_tokens),
        "max_item_tokens": int(d.max_item_tokens),
        "item_fields": list(d.item_fields),
        "item_field_separator": ITEM_FIELD_SEPARATOR,
        "pooling": str(m.pooling),
        "padding": "right; attention_mask 0 on padding; any width (dynamic)",
    }
    if student.kind == "two_tower":
        out["layout"] = "query and item apart: [CLS] text [SEP], each cut at max_length"
        out["similarity"] = str(m.two_tower.similarity)
    else:
        out["layout"] = (
            "[CLS] query [SEP] item [SEP], cut at max_length keeping the query "
            "(token_type_ids 0 up to the first [SEP], 1 after)"
        )
    return out


def export_from_cli(run_dir: str | Path, out: str | Path | None = None, ckpt: str = "best") -> str:
    """``relkd export RUN_DIR --format onnx [--out PATH] [--ckpt best|last|PATH]``: the
    export's one-paragraph summary (what was written, the exporter, the parity figures)."""
    return export_onnx(run_dir, out=out, ckpt=ckpt).summary()


__all__ = [
    "FORMAT",
    "OPSET",
    "TOLERANCE",
    "ExportParityError",
    "ExportResult",
    "check_parity",
    "export_from_cli",
    "export_graph",
    "export_onnx",
    "reusable_export",
]
