"""Training logic shared by every student: the net and the loss are injected.

The net maps a batch to ``{"logits": (B, K), ...}``; the module adds the ranking score (expected
gain under the softmax), trains on the weighted loss, and evaluates with the shared relevance
metrics (RelevanceModule: gathered from every rank, de-duplicated by ``pair_id``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from lightning_modules.adversarial_pass import AdversarialPass, supports_embeddings
from lightning_modules.relevance_module import RelevanceModule, flatten_metrics, split_decay
from relkd.config.experiment_config import AdversarialSettings
from relkd.data.label_scheme import LabelScheme
from relkd.losses.registry import ADVERSARIAL_TERMS
from relkd.losses.weighted_loss import WeightedLoss

NET_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

__all__ = ["StudentModule", "flatten_metrics"]


class StudentModule(RelevanceModule):
    """A relevance student: ``net`` (nn.Module) trained with ``loss`` (WeightedLoss).

    Args:
        net: maps the batch's model inputs to ``{"logits": (B, K), ...}`` (CrossEncoder,
            TwoTower); it reads the batch keys named by its ``input_keys`` attribute (default:
            the cross-encoder inputs).
        loss: the weighted combiner; every term is logged as ``train/loss/<term>`` and every
            scheduled weight as ``train/weight/<term>``; terms may own parameters (auxiliary
            heads), which train in the head's optimiser group.
        scheme: label scheme, for gains (ranking score) and metrics.
        optim: ``lr, head_lr, weight_decay, warmup_ratio, scheduler``.
        eval_splits: names of the dataloaders passed to ``trainer.test``, in order; when
            ``val`` is among them its tuned threshold is applied to the others.
        adversarial_norm: the L2 norm of the adversarial perturbation; default the loss's
            ``adversarial_norm`` (``loss.adversarial.norm``, set by ``build_loss``), else that
            setting's default.

    When the loss has an adversarial term (``adv_ce``, ``adv_kl``, ``adv_contrastive``) every
    training step runs :class:`AdversarialPass` (a second forward pass over word embeddings
    perturbed along the clean loss's gradient); with none, a step is one plain forward.
    Validation and test never perturb.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: WeightedLoss,
        scheme: LabelScheme,
        optim: dict[str, Any],
        eval_splits: tuple[str, ...] = ("val", "test"),
        adversarial_norm: float | None = None,
    ) -> None:
        super().__init__(scheme, optim, eval_splits)
        self.net = net
        self.loss = loss
        self._total_steps = 1  # set in on_train_start
        self.adversarial = self._adversarial_pass(adversarial_norm)

    def _adversarial_pass(self, norm: float | None) -> AdversarialPass | None:
        adversarial = sorted(set(self.loss.terms) & ADVERSARIAL_TERMS)
        if not adversarial:
            return None
        if not supports_embeddings(self.net):
            raise ValueError(
                f"loss terms {adversarial} perturb word embeddings: the net "
                f"({type(self.net).__name__}) must take embeddings= and return_embeddings= "
                "(model.student cross_encoder)"
            )
        if not set(self.loss.terms) - ADVERSARIAL_TERMS:
            raise ValueError(
                f"loss terms {adversarial} perturb along the gradient of the other terms, and "
                "there are none: give a clean term (e.g. hard_ce) a weight > 0"
            )
        if norm is None:
            norm = getattr(self.loss, "adversarial_norm", None)
        return AdversarialPass(
            AdversarialSettings.norm if norm is None else norm,
            relative=bool(getattr(self.loss, "adversarial_relative", False)),
        )

    # ---- forward and training ----
    def forward(self, batch: dict[str, Any], **net_kwargs: Any) -> dict[str, torch.Tensor]:
        """The net's outputs plus ``probs`` and ``score``; ``net_kwargs`` go to the net as they
        are (the adversarial pass's ``embeddings`` and ``return_embeddings``)."""
        keys = getattr(self.net, "input_keys", NET_INPUTS)
        out = dict(self.net(**{k: batch[k] for k in keys if k in batch}, **net_kwargs))
        out["probs"], out["score"] = self.scores_from_logits(out["logits"])
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self._trainer is not None:
            # weight and temperature schedules follow the fraction of training done
            self.loss.set_progress(min(1.0, self.global_step / self._total_steps))
        if self.adversarial is None:
            result = self.loss(self(batch), batch)
        else:
            result, _ = self.adversarial(lambda **kw: self(batch, **kw), self.loss, batch)
        for name, weight in result.weights.items():
            self.log(f"train/weight/{name}", weight, batch_size=int(batch["labels"].shape[0]))
        return self.log_loss(result, batch)

    def on_fit_start(self) -> None:
        """Let a net that needs statistics of its inputs compute them before training (the
        seminar student's PQ codebooks, on its starting embeddings); rank 0's result is shared."""
        prepare = getattr(self.net, "prepare_fit", None)
        if prepare is None:
            return
        loader = self.trainer.datamodule.train_dataloader()
        device = self.device

        def batches() -> Any:
            for batch in loader:
                yield {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

        training = self.net.training
        self.net.eval()
        prepared = prepare(batches())  # the submodule whose buffers it filled, or None
        self.net.train(training)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if prepared is not None and distributed:
            for buffer in prepared.buffers():
                dist.broadcast(buffer, src=0)

    def on_train_start(self) -> None:
        # once per fit: Lightning's estimate walks the train loader's length
        self._total_steps = max(1, int(self.trainer.estimated_stepping_batches))

    def on_validation_epoch_start(self) -> None:
        self._reset_net_caches()

    def on_test_epoch_start(self) -> None:
        self._reset_net_caches()

    def _reset_net_caches(self) -> None:
        # a two-tower caches item embeddings within one evaluation pass; weights may have
        # changed since the last one (training, or a checkpoint loaded for testing)
        reset = getattr(self.net, "reset_item_cache", None)
        if reset is not None:
            reset()

    # ---- evaluation and optimisation ----
    def eval_outputs(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        out = self(batch)
        return {
            "score": out["score"].detach().float().cpu().numpy(),
            "probs": out["probs"].detach().float().cpu().numpy(),
        }

    def param_groups(self) -> tuple[list, list, list]:
        body, head = [], []
        for name, param in self.net.named_parameters():
            if param.requires_grad:
                (head if name.startswith("head.") else body).append((name, param))
        decay, no_decay = split_decay(body)
        # parameters a loss term owns (auxiliary CoT heads, hidden-state projections) start
        # fresh, like the head
        aux = [p for p in self.loss.parameters() if p.requires_grad]
        return decay, no_decay, [p for _, p in head] + aux
