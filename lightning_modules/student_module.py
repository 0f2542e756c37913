"""Training logic shared by every student: the net and the loss are injected.

The net maps a batch to ``{"logits": (B, K), ...}``; the module adds the ranking score (expected
gain under the softmax), trains on the weighted loss, and evaluates with the shared relevance
metrics. Evaluation gathers predictions from every rank and de-duplicates them by ``pair_id``,
so DDP's padded eval shards never count a pair twice.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from relkd.data.label_scheme import LabelScheme
from relkd.losses.weighted_loss import WeightedLoss
from relkd.metrics import compute_relevance_metrics, tune_threshold

log = logging.getLogger(__name__)
NET_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EVAL_FIELDS = ("pair_id", "labels", "query_index", "bucket")


def flatten_metrics(split: str, result: dict[str, Any]) -> dict[str, float]:
    """``{"overall": {m: v}, "buckets": {b: {m: v}}}`` -> ``{"split/m": v, "split/b/m": v}``."""
    flat: dict[str, float] = {}
    for name, value in result["overall"].items():
        if isinstance(value, (int, float)) and value is not None:
            flat[f"{split}/{name}"] = float(value)
    for bucket, metrics in result.get("buckets", {}).items():
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and value is not None:
                flat[f"{split}/{bucket}/{name}"] = float(value)
    if result.get("threshold") is not None:
        flat[f"{split}/threshold"] = float(result["threshold"])
    return flat


class StudentModule(L.LightningModule):
    """A relevance student: ``net`` (nn.Module) trained with ``loss`` (WeightedLoss).

    Args:
        net: maps the batch's model inputs to ``{"logits": (B, K)}``; it reads the batch keys
            named by its ``input_keys`` attribute (default: the cross-encoder inputs).
        loss: the weighted combiner; every term is logged as ``train/loss/<term>``.
        scheme: label scheme, for gains (ranking score) and metrics.
        optim: ``lr, head_lr, weight_decay, warmup_ratio, scheduler``.
        eval_splits: names of the dataloaders passed to ``trainer.test``, in order; when
            ``val`` is among them its tuned threshold is applied to the others.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: WeightedLoss,
        scheme: LabelScheme,
        optim: dict[str, Any],
        eval_splits: tuple[str, ...] = ("val", "test"),
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
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

    # ---- forward and training ----
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        keys = getattr(self.net, "input_keys", NET_INPUTS)
        out = dict(self.net(**{k: batch[k] for k in keys if k in batch}))
        probs = out["logits"].float().softmax(-1)
        out["probs"] = probs
        # under bf16-true Lightning casts buffers to bf16; the score stays float32
        out["score"] = probs @ self.gains.float()
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self(batch)
        result = self.loss(out, batch)
        size = int(batch["labels"].shape[0])
        self.log("train/loss", result.total.detach(), prog_bar=True, batch_size=size)
        for name, value in result.terms.items():
            self.log(f"train/loss/{name}", value, batch_size=size)
        return result.total

    # ---- evaluation ----
    def _collect(self, batch: dict[str, Any], dataloader_idx: int) -> None:
        out = self(batch)
        buf = self._buffers_eval.setdefault(dataloader_idx, {})
        for key in EVAL_FIELDS:
            buf.setdefault(key, []).append(batch[key].detach().cpu().numpy())
        buf.setdefault("score", []).append(out["score"].detach().float().cpu().numpy())
        buf.setdefault("probs", []).append(out["probs"].detach().float().cpu().numpy())

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
        return compute_relevance_metrics(
            self.scheme,
            labels=rows["labels"],
            scores=rows["score"],
            query_ids=rows["query_index"],
            buckets=rows["bucket"],
            class_probs=rows["probs"],
            threshold=threshold,
        )

    def on_validation_epoch_end(self) -> None:
        rows = self._gathered(0)
        if not rows:
            return
        result = self._metrics(rows, threshold=None)
        self.eval_results = {"val": result}
        for key, value in flatten_metrics("val", result).items():
            self.log(key, value, prog_bar=key == "val/ndcg@10", sync_dist=False)

    def on_test_epoch_end(self) -> None:
        gathered = {i: self._gathered(i) for i in range(len(self.eval_splits))}
        results: dict[str, dict[str, Any]] = {}
        threshold = None
        if "val" in self.eval_splits:
            val_rows = gathered[self.eval_splits.index("val")]
            if val_rows:
                binary = self.scheme.binary_array()[val_rows["labels"]]
                threshold = tune_threshold(binary, val_rows["score"])
        if threshold is None:
            log.warning(
                "no val split to tune the decision threshold on: accuracy and macro-F1 of %s use "
                "a threshold tuned on that split itself (metrics.json: threshold_tuned)",
                ", ".join(self.eval_splits),
            )
        for i, split in enumerate(self.eval_splits):
            if gathered[i]:
                results[split] = self._metrics(gathered[i], threshold=threshold)
        self.eval_results = results
        self.eval_predictions = {
            s: gathered[i] for i, s in enumerate(self.eval_splits) if gathered[i]
        }
        for split, result in results.items():
            for key, value in flatten_metrics(split, result).items():
                self.log(key, value, sync_dist=False, add_dataloader_idx=False)

    # ---- optimisation ----
    def configure_optimizers(self) -> Any:
        from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

        lr = float(self.optim["lr"])
        head_lr = float(self.optim.get("head_lr") or lr)
        decay, no_decay, head = [], [], []
        for name, param in self.net.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith("head."):
                head.append(param)
            elif param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name:
                no_decay.append(param)
            else:
                decay.append(param)
        groups = [
            {"params": decay, "weight_decay": float(self.optim["weight_decay"]), "lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr},
            {"params": head, "weight_decay": 0.0, "lr": head_lr},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
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
