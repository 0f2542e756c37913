"""The teacher's only LightningModule: supervised fine-tuning of a causal LM (LoRA or full).

The net (CausalLMTeacher) and the loss (WeightedLoss) are injected, as for students. Training is
teacher-forced over prompt + response; the loss terms read the verbalizer logits
(``soft_target_ce``, ``graded_bce``, ``hard_ce``), the CoT tokens (``cot_lm``) and the aspect
slots (``aspect_ce``), and each is logged as ``train/loss/<term>``. Evaluation runs the mode's
inference (one forward pass, CoT generation or guided progressive steps) and reports the shared
relevance metrics plus, for CoT modes, the CoT parse rate and per-aspect accuracy against the
dataset's aspect facts. Checkpoints keep only what training changes (trainable and newly
initialised weights), so a 7B teacher's checkpoint is the size of its adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lightning_modules.relevance_module import RelevanceModule, split_decay
from relkd.data.label_scheme import LabelScheme
from relkd.data.schema import ASPECTS
from relkd.losses.weighted_loss import WeightedLoss
from relkd.nets.causal_lm_presets import base_param_name
from relkd.nets.causal_lm_teacher import CausalLMTeacher
from relkd.prompts.cot_template import parse_cot
from relkd.teacher_cache.aspect_aggregator import AspectAggregator, mean_score, step_features

log = logging.getLogger(__name__)


class TeacherSFTModule(RelevanceModule):
    """Fine-tunes ``net`` with ``loss`` and evaluates it as a relevance model.

    Args:
        net: the CausalLMTeacher (its LM possibly peft-wrapped).
        loss: the weighted combiner of teacher terms.
        scheme, optim, eval_splits: as for students (RelevanceModule).
        new_weights: names (in the base model) of weights the checkpoint lacked; they use
            ``optim.head_lr`` and are always kept in checkpoints.
        tokenizer: decodes generated CoT text.
        aggregation: progressive only: verdict | mean | fitted (on val).
        explain_eval: multitask: generate explanations at evaluation too.
    """

    def __init__(
        self,
        net: CausalLMTeacher,
        loss: WeightedLoss,
        scheme: LabelScheme,
        optim: dict[str, Any],
        eval_splits: tuple[str, ...] = ("val", "test"),
        *,
        new_weights: Sequence[str] = (),
        label_words: Mapping[str, str],
        tokenizer: Any = None,
        aggregation: str = "verdict",
        explain_eval: bool = True,
    ) -> None:
        super().__init__(scheme, optim, eval_splits)
        self.net = net
        self.loss = loss
        net.need_lm = "cot_lm" in loss.terms
        self.new_weights = tuple(new_weights)
        self.label_words = dict(label_words)
        self.tokenizer = tokenizer
        self.aggregation = aggregation
        self.explain_eval = explain_eval
        self.aggregator: AspectAggregator | None = None
        self.strict_loading = False  # checkpoints hold trainable and new weights only

    # ---- parameters ----
    def new_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(module name, parameter) of the newly initialised base weights."""
        new = set(self.new_weights)
        return [(n, p) for n, p in self.named_parameters() if base_param_name(n) in new]

    def trainable_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.net.parameters())
        trainable = sum(p.numel() for p in self.net.parameters() if p.requires_grad)
        new = sum(p.numel() for _, p in self.new_parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "trainable_new_weights": new}

    def param_groups(self) -> tuple[list, list, list]:
        new = {name for name, _ in self.new_parameters()}
        body, head = [], []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (head if name in new else body).append((name, param))
        decay, no_decay = split_decay(body)
        return decay, no_decay, [p for _, p in head]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop frozen base weights (tied copies included) from the checkpoint."""
        keep = {id(p) for p in self.parameters() if p.requires_grad}
        keep |= {id(p) for _, p in self.new_parameters()}
        state = checkpoint["state_dict"]
        for key, value in self.state_dict(keep_vars=True).items():
            if isinstance(value, torch.nn.Parameter) and id(value) not in keep:
                state.pop(key, None)

    # ---- training ----
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.net(**{k: batch[k] for k in self.net.input_keys if k in batch})
        return self.log_loss(self.loss(out, batch), batch)

    # ---- evaluation ----
    def eval_outputs(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        explain = self.explain_eval and self.net.mode == "multitask"
        pred = self.net.predict(batch, explain=explain)
        probs, score = self.scores_from_logits(pred.logits)
        out: dict[str, np.ndarray] = {
            "score": score.float().cpu().numpy(),
            "probs": probs.float().cpu().numpy(),
            "verdict_logits": pred.logits.float().cpu().numpy(),
        }
        if pred.aspect_logits is not None:
            out["aspect_logits"] = pred.aspect_logits.float().cpu().numpy()
        if pred.generated is not None:
            texts = [self.net.decode(self.tokenizer, ids) for ids in pred.generated]
            need_verdict = self.net.mode != "multitask"
            parsed = [parse_cot(t, self.label_words, require_verdict=need_verdict) for t in texts]
            out["cot"] = np.array(texts, dtype=object)
            out["cot_ok"] = np.array([p.ok for p in parsed], dtype=bool)
            out["aspect_pred"] = np.array([p.aspect_codes() for p in parsed], dtype=np.int8)
            if "aspects" in batch:
                out["aspect_true"] = batch["aspects"].cpu().numpy().astype(np.int8)
        if pred.verdict_found is not None:
            out["verdict_found"] = pred.verdict_found.cpu().numpy()
        return out

    def extra_metrics(self, rows: dict[str, np.ndarray]) -> dict[str, Any]:
        if "cot_ok" not in rows:
            return {}
        out: dict[str, Any] = {"parse_rate": float(rows["cot_ok"].mean())}
        if "verdict_found" in rows:
            out["verdict_cue_rate"] = float(rows["verdict_found"].mean())
        if "aspect_true" in rows:
            truth, pred = rows["aspect_true"], rows["aspect_pred"]
            acc = {}
            for j, aspect in enumerate(ASPECTS):
                known = truth[:, j] >= 0
                if known.any():
                    acc[aspect] = float((pred[known, j] == truth[known, j]).mean())
            if acc:
                out["aspect_accuracy"] = acc
        if self.aggregator is not None:
            out["aggregation"] = "fitted on val"
        return out

    def finalize_predictions(self, gathered: dict[str, dict[str, np.ndarray]]) -> None:
        """Progressive aggregation: ``mean`` rescores every split; ``fitted`` fits the
        aggregator on val (its val metrics are then in-sample) and applies it everywhere."""
        if self.aggregation == "verdict" or not any(
            "aspect_logits" in rows for rows in gathered.values()
        ):
            return
        gains = self.scheme.gain_array()
        if self.aggregation == "fitted":
            val = gathered.get("val")
            if not val:
                log.warning("teacher.aggregation fitted needs a val split; using the verdict")
                return
            self.aggregator = AspectAggregator.fit(
                step_features(val["verdict_logits"], val["aspect_logits"]),
                val["labels"],
                self.scheme.num_labels,
            )
        for rows in gathered.values():
            if not rows:
                continue
            if self.aggregation == "mean":
                rows["score"] = mean_score(rows["probs"], rows["aspect_logits"], gains)
            else:
                assert self.aggregator is not None
                feats = step_features(rows["verdict_logits"], rows["aspect_logits"])
                rows["probs"] = self.aggregator.proba(feats)
                rows["score"] = rows["probs"] @ gains
