"""Evaluation and optimisation shared by every relevance model (the students and the teacher).

A subclass says how to predict a batch (``eval_outputs``: per-pair score, class probabilities and
any extra columns) and which parameters form which optimiser group; this base class gathers the
predictions from every rank, de-duplicates them by ``pair_id`` (DDP's padded eval shards never
count a pair twice), computes the shared relevance metrics overall and per popularity bucket,
applies the threshold tuned on val to the other splits, and logs everything.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

from relkd.data.label_scheme import LabelScheme
from relkd.metrics import compute_relevance_metrics, tune_threshold

log = logging.getLogger(__name__)
EVAL_FIELDS = ("pair_id", "labels", "query_index", "bucket")
# optional per-pair fields collected when batches carry them: the click-graph slice
OPTIONAL_EVAL_FIELDS = ("clicked",)


def flatten_metrics(split: str, result: dict[str, Any]) -> dict[str, float]:
    """``{"overall": {m: v}, "buckets": {b: {m: v}}, "cot": {...}}`` -> ``{"split/m": v,
    "split/b/m": v, "split/cot/...": v}`` (numbers only)."""
    flat: dict[str, float] = {}
    for name, value in result["overall"].items():
        if isinstance(value, (int, float)) and value is not None:
            flat[f"{split}/{name}"] = float(value)
    for group in ("buckets", "slices"):
        for bucket, metrics in result.get(group, {}).items():
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and value is not None:
                    flat[f"{split}/{bucket}/{name}"] = float(value)
    if result.get("threshold") is not None:
        flat[f"{split}/threshold"] = float(result["threshold"])

    def nested(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                nested(f"{prefix}/{key}", value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{prefix}/{key}"] = float(value)

    if isinstance(result.get("cot"), dict):
        nested(f"{split}/cot", result["cot"])
    return flat


class RelevanceModule(L.LightningModule):
    """Base class: eval collection, metrics, thresholds and the optimiser.

    Args:
        scheme: label scheme, for gains (ranking score) and metrics.
        optim: ``lr, head_lr, weight_decay, warmup_ratio, scheduler, fused``.
        eval_splits: names of the dataloaders passed to ``trainer.test``, in order; when
            ``val`` is among them its tuned threshold is applied to the others.
    """

    def __init__(
        self, scheme: LabelScheme, optim: dict[str, Any], eval_splits: tuple[str, ...]
    ) -> None:
        super().__init__()
        self.scheme = scheme
        self.optim = dict(optim)
        self.eval_splits = tuple(eval_splits)
        self.register_buffer(
            "gains", torch.tensor(scheme.gains, dtype=torch.float32), persistent=False
        )
        # plain dicts (no lambdas) so the module pickles for ddp_spawn
        self._buffers_eval: dict[int, dict[str, list[np.ndarray]]] = {}
        self.eval_results: dict[str, dict[str, Any]] = {}
        self.eval_predictions: dict[str, dict[str, np.ndarray]] = {}

    # ---- what a subclass provides ----
    def eval_outputs(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per-pair predictions of a batch: at least ``score`` (B,) and ``probs`` (B, K)."""
        raise NotImplementedError

    def param_groups(self) -> tuple[list, list, list]:
        """(decayed, not decayed, head) trainable parameters; head uses ``optim.head_lr``."""
        raise NotImplementedError

    def finalize_predictions(self, gathered: dict[str, dict[str, np.ndarray]]) -> None:
        """Hook before test metrics: adjust every split's gathered rows in place (e.g. fit a
        score aggregator on val)."""

    def extra_metrics(self, rows: dict[str, np.ndarray]) -> dict[str, Any]:
        """More metrics of one split (stored under ``"cot"``); none by default."""
        return {}

    # ---- training ----
    def log_loss(self, result: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Log a WeightedLoss result (``train/loss`` and every ``train/loss/<term>``); returns the
        total to backpropagate."""
        size = int(batch["labels"].shape[0])
        self.log("train/loss", result.total.detach(), prog_bar=True, batch_size=size)
        for name, value in result.terms.items():
            self.log(f"train/loss/{name}", value, batch_size=size)
        return result.total

    # ---- evaluation ----
    def scores_from_logits(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probs, score): softmax, and the expected gain (float32 even under bf16)."""
        probs = logits.float().softmax(-1)
        return probs, probs @ self.gains.float()

    def _collect(self, batch: dict[str, Any], dataloader_idx: int) -> None:
        out = self.eval_outputs(batch)
        buf = self._buffers_eval.setdefault(dataloader_idx, {})
        for key in EVAL_FIELDS + tuple(k for k in OPTIONAL_EVAL_FIELDS if k in batch):
            buf.setdefault(key, []).append(batch[key].detach().cpu().numpy())
        for key, value in out.items():
            buf.setdefault(key, []).append(value)

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._collect(batch, dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def _gathered(self, dataloader_idx: int) -> dict[str, np.ndarray]:
        """This loader's predictions from all ranks, one row per pair_id (sorted by pair_id)."""
        buf = self._buffers_eval.pop(dataloader_idx, {})
        local = {k: np.concatenate(v) for k, v in buf.items()} if buf else {}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[dict[str, np.ndarray]] = [None] * dist.get_world_size()  # type: ignore[list-item]
            dist.all_gather_object(parts, local)
            parts = [p for p in parts if p]
            local = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        if not local:
            return {}
        _, first = np.unique(local["pair_id"], return_index=True)
        return {k: v[first] for k, v in local.items()}

    def _metrics(self, rows: dict[str, np.ndarray], threshold: float | None) -> dict[str, Any]:
        result = compute_relevance_metrics(
            self.scheme,
            labels=rows["labels"],
            scores=rows["score"],
            query_ids=rows["query_index"],
            buckets=rows["bucket"],
            class_probs=rows["probs"],
            threshold=threshold,
            slices=None
            if "clicked" not in rows
            else {"clicked": rows["clicked"] > 0, "cold": rows["clicked"] == 0},
        )
        extra = self.extra_metrics(rows)
        if extra:
            result["cot"] = extra
        return result

    def on_validation_epoch_end(self) -> None:
        rows = self._gathered(0)
        if not rows:
            return
        result = self._metrics(rows, threshold=None)
        self.eval_results = {"val": result}
        for key, value in flatten_metrics("val", result).items():
            self.log(key, value, prog_bar=key == "val/ndcg@10", sync_dist=False)

    def on_test_epoch_end(self) -> None:
        gathered = {s: self._gathered(i) for i, s in enumerate(self.eval_splits)}
        self.finalize_predictions(gathered)
        results: dict[str, dict[str, Any]] = {}
        threshold = None
        if gathered.get("val"):
            val_rows = gathered["val"]
            binary = self.scheme.binary_array()[val_rows["labels"]]
            threshold = tune_threshold(binary, val_rows["score"])
        if threshold is None:
            log.warning(
                "no val split to tune the decision threshold on: accuracy and macro-F1 of %s use "
                "a threshold tuned on that split itself (metrics.json: threshold_tuned)",
                ", ".join(self.eval_splits),
            )
        for split, rows in gathered.items():
            if rows:
                results[split] = self._metrics(rows, threshold=threshold)
        self.eval_results = results
        self.eval_predictions = {s: rows for s, rows in gathered.items() if rows}
        for split, result in results.items():
            for key, value in flatten_metrics(split, result).items():
                self.log(key, value, sync_dist=False, add_dataloader_idx=False)

    # ---- fit-wide settings ----
    def setup(self, stage: str) -> None:
        """``trainer.deterministic`` keeps its deterministic algorithms, but not their
        debugging aid of NaN-filling every new uninitialised tensor (``fill_uninitialized_memory``):
        that fill was ~10 % of a CPU training step, and correct kernels overwrite the memory
        anyway, so results are unchanged. Restored in ``teardown``."""
        self._fill_uninitialized: bool | None = None
        if torch.are_deterministic_algorithms_enabled():
            self._fill_uninitialized = torch.utils.deterministic.fill_uninitialized_memory
            torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]

    def teardown(self, stage: str) -> None:
        previous = getattr(self, "_fill_uninitialized", None)
        if previous is not None:
            torch.utils.deterministic.fill_uninitialized_memory = previous  # type: ignore[attr-defined]
            self._fill_uninitialized = None

    # ---- optimisation ----
    def _fused_allowed(self) -> bool:
        """``optim.fused``, unless Lightning's mixed-precision plugin (16-mixed, bf16-mixed) has
        to clip gradients: it refuses to clip for an optimizer that unscales internally, which a
        fused one declares itself to be."""
        if not self.optim.get("fused"):
            return False
        from lightning.pytorch.plugins.precision import MixedPrecision

        trainer = self.trainer
        clip = getattr(trainer, "gradient_clip_val", None)
        if isinstance(getattr(trainer, "precision_plugin", None), MixedPrecision) and clip:
            log.info("optim.fused: off under mixed precision with gradient clipping (Lightning)")
            return False
        return True

    def configure_optimizers(self) -> Any:
        from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

        lr = float(self.optim["lr"])
        head_lr = float(self.optim.get("head_lr") or lr)
        decay, no_decay, head = self.param_groups()
        groups = [
            {"params": decay, "weight_decay": float(self.optim["weight_decay"]), "lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr},
            {"params": head, "weight_decay": 0.0, "lr": head_lr},
        ]
        optimizer = adamw([g for g in groups if g["params"]], self._fused_allowed())
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(float(self.optim.get("warmup_ratio", 0.0)) * total)
        if self.optim.get("scheduler", "linear") == "linear":
            scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        else:
            scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def adamw(groups: list[dict[str, Any]], fused: bool) -> torch.optim.AdamW:
    """AdamW with the fused kernel (``optim.fused``: one kernel per step instead of a few
    foreach ops per parameter group) where torch supports it for these parameters' device and
    dtype, else the default (foreach) implementation. Fused and foreach agree to ~1e-7."""
    if fused:
        try:
            return torch.optim.AdamW(groups, fused=True)
        except (RuntimeError, ValueError, TypeError) as exc:
            log.info("optim.fused: fused AdamW unavailable here (%s); using the default", exc)
    return torch.optim.AdamW(groups)


def split_decay(named: list[tuple[str, torch.nn.Parameter]]) -> tuple[list, list]:
    """Weight-decayed matrices vs biases and norms (which are never decayed)."""
    decay, no_decay = [], []
    for name, param in named:
        if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return decay, no_decay
