"""Score with an exported student in onnxruntime (no torch needed at serving time).

    student = OnnxStudent("runs/exp/version_0/export/onnx")
    # cross-encoder: token ids of "[CLS] query [SEP] item [SEP]" batches
    logits = student.logits(input_ids=ids, attention_mask=mask, token_type_ids=types)
    # two-tower: one query-tower pass, then the scorer over cached item-table rows
    logits = student.score_items(query_ids, query_mask, item_rows)
    score = expected_gain(logits, student.gains)  # the ranking score

Inputs are int64 numpy arrays shaped (batch, length), padded on the right (mask 0 on padding).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from relkd.errors import ConfigError, DataError

MANIFEST = "export.json"


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "onnxruntime is not installed; install the serve extra: "
            "pip install -c constraints.txt -e '.[serve]'"
        ) from None
    return onnxruntime


def session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session; ``threads`` intra-op threads (None: onnxruntime's default,
    one per physical core)."""
    ort = require_onnxruntime()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def expected_gain(logits: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """The ranking score the students are evaluated with: ``softmax(logits) @ gains``."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)) @ np.asarray(gains, dtype=np.float64)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is {folder} a relkd ONNX export?") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "relkd-onnx-export":
        raise DataError(f"{path}: field format: not a relkd ONNX export")
    return manifest


class OnnxStudent:
    """An export folder loaded into onnxruntime sessions (see the module docstring).

    Args:
        folder: the export folder (``relkd export``'s ``--out``).
        threads: intra-op threads per session (None: onnxruntime's default).
        item_table: two-tower: load ``item_embeddings.npy`` (memory-mapped).
    """

    def __init__(
        self, folder: str | Path, threads: int | None = None, item_table: bool = True
    ) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.kind: str = self.manifest["student"]
        self.labels: list[str] = list(self.manifest["labels"])
        self.gains = np.asarray(self.manifest["gains"], dtype=np.float32)
        self.sessions = {
            name: session(self.folder / name, threads) for name in self.manifest["graphs"]
        }
        self.item_table: np.ndarray | None = None
        self.item_ids: list | None = None
        if self.kind == "two_tower" and item_table:
            self.item_table = np.load(self.folder / "item_embeddings.npy", mmap_mode="r")
            self.item_ids = json.loads((self.folder / "item_ids.json").read_text())

    def input_names(self, graph: str) -> list[str]:
        return list(self.manifest["graphs"][graph]["inputs"])

    def _run(self, graph: str, feed: dict[str, np.ndarray]) -> np.ndarray:
        sess = self.sessions[graph]
        return sess.run(None, {k: feed[k] for k in self.input_names(graph)})[0]

    # ---- cross-encoder ----
    def logits(self, **inputs: np.ndarray) -> np.ndarray:
        """Cross-encoder logits (B, K) from input_ids, attention_mask[, token_type_ids]."""
        return self._run("model.onnx", inputs)

    # ---- two-tower ----
    def query_embedding(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._run(
            "query_tower.onnx", {"input_ids": input_ids, "attention_mask": attention_mask}
        )

    def item_embedding(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._run(
            "item_tower.onnx", {"input_ids": input_ids, "attention_mask": attention_mask}
        )

    def compare(self, query_embedding: np.ndarray, item_embedding: np.ndarray) -> np.ndarray:
        """Scorer logits (B, K) for row-aligned (B, H) query and item embeddings."""
        return self._run(
            "scorer.onnx",
            {
                "query_embedding": np.ascontiguousarray(query_embedding, dtype=np.float32),
                "item_embedding": np.ascontiguousarray(item_embedding, dtype=np.float32),
            },
        )

    def score_items(
        self, query_ids: np.ndarray, query_mask: np.ndarray, item_rows: np.ndarray
    ) -> np.ndarray:
        """Logits (N, K) of one query (ids/mask shaped (1, L)) against N item-table rows."""
        if self.item_table is None:
            raise ConfigError(f"{self.folder}: no item table loaded (a two-tower export?)")
        u = self.query_embedding(query_ids, query_mask)
        v = np.asarray(self.item_table[np.asarray(item_rows)])
        return self.compare(np.repeat(u, len(v), axis=0), v)


def default_threads() -> int:
    """The CPU threads this process may use (its affinity mask where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


__all__ = ["OnnxStudent", "default_threads", "expected_gain", "read_manifest", "session"]
