"""A trained student scoring store rows as evaluation does: the run's collator builds the batch,
the net's ``input_keys`` pick its inputs (StudentModule.forward), and the probabilities and the
ranking score (expected gain over the scheme's gains) are those metrics.json is computed from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules import QueryItemDataModule
from lightning_modules.student_module import NET_INPUTS
from relkd.artifacts.checkpoint_file import checkpoint_state, net_weights
from relkd.explain.aspect_heads import aspect_outputs, load_aspect_heads
from relkd.explain.explanation import LabelDistribution, StudentView
from relkd.losses.cot_aspects import CotAspects
from relkd.runs.run_dir import checkpoint_path
from relkd.serving.student_loader import LoadedStudent, run_config, student_from_config

# the batch keys holding what the net reads as text: a cross pair, or a two-tower's two sides
TEXT_INPUTS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("input_ids", "attention_mask"),),
    (("query_input_ids", "query_attention_mask"), ("item_input_ids", "item_attention_mask")),
)


def student_inputs(batch: dict[str, Any], tokenizer: Any) -> list[tuple[str, ...]]:
    """Per row, the decoded tokens the student is fed (padding dropped, specials kept)."""
    sides = next(s for s in TEXT_INPUTS if all(ids in batch for ids, _ in s))
    rows = len(batch["pair_id"])
    return [
        tuple(
            tokenizer.decode(batch[ids][r][batch[mask][r].bool()].tolist()) for ids, mask in sides
        )
        for r in range(rows)
    ]


@dataclass
class ScoredRow:
    view: StudentView
    inputs: tuple[str, ...]


class StudentScorer:
    """A student run loaded once (net and, when it has them, its CoT-aspect heads)."""

    def __init__(self, student: LoadedStudent, aspect_heads: CotAspects | None) -> None:
        self.student = student
        self.aspect_heads = aspect_heads

    @classmethod
    def load(cls, run_dir: Path, ckpt: str | Path = "best") -> StudentScorer:
        """Like ``load_student``, reading the checkpoint once for the net and the heads."""
        cfg = run_config(run_dir)
        path = checkpoint_path(run_dir, ckpt)
        state = checkpoint_state(path)
        student = student_from_config(cfg, net_weights(state), source=path)
        return cls(student, load_aspect_heads(state, path))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.student.scheme.labels)

    @torch.inference_mode()
    def score(self, dm: QueryItemDataModule, rows: np.ndarray) -> list[ScoredRow]:
        """The student's view of each store row of ``dm`` (in batches of its eval size)."""
        out: list[ScoredRow] = []
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), dm.data.eval_batch_size):
            out.extend(self._batch(dm, rows[start : start + dm.data.eval_batch_size]))
        return out

    def _batch(self, dm: QueryItemDataModule, rows: np.ndarray) -> list[ScoredRow]:
        net = self.student.net
        reset = getattr(net, "reset_item_cache", None)
        if reset is not None:  # a two-tower caches item embeddings by item row, per dataset
            reset()
        batch = dm.eval_collator(rows)
        keys = getattr(net, "input_keys", NET_INPUTS)
        result = net(**{k: batch[k] for k in keys if k in batch})
        probs = result["logits"].float().softmax(-1).numpy().astype(np.float64)
        score = self.student.scheme.expected_score(probs)
        heads = self.aspect_heads
        aspects = (
            aspect_outputs(heads, result["features"])
            if heads is not None and "features" in result
            else [()] * len(rows)
        )
        inputs = student_inputs(batch, dm.tokenizer)
        return [
            ScoredRow(
                StudentView(LabelDistribution(self.labels, probs[i], float(score[i])), aspects[i]),
                inputs[i],
            )
            for i in range(len(rows))
        ]
