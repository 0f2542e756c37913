"""The Hugging Face inference backend: plain transformers (+ peft) on CPU or GPU.

Pairs are sorted by prompt length and cut into batches, so a batch pads little; everything runs
under ``torch.inference_mode``. A verdict-first teacher (classifier, multitask) needs one
forward pass that reads the label-token logits at the answer position only; a CoT teacher
decodes greedily with a KV cache (prompts re-padded on the left with explicit position ids, see
relkd/nets/kv_decoder.py) up to its token budget and reads the verdict's label-token logits
where its CoT reaches the verdict cue; a progressive teacher answers each aspect in turn. bf16
is used where the device runs it natively (CUDA with bf16 support), float32 elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptStore
from relkd.data.label_scheme import LabelScheme
from relkd.errors import ConfigError
from relkd.nets.causal_lm_teacher import CausalLMTeacher
from relkd.nets.kv_decoder import base_model
from relkd.prompts.cot_template import parse_cot
from relkd.teacher.annotator import Annotator, empty_aspects, teacher_distribution
from relkd.teacher.teacher_adapter import ExportedTeacher, LoadedTeacher
from relkd.teacher_cache.annotation import Annotation

PRECISIONS = ("auto", "bf16", "fp32")
POOLINGS = ("none", "last", "mean")


def resolve_device(device: str) -> torch.device:
    """``auto``: the GPU of this process's LOCAL_RANK (torchrun, one shard per GPU), else CPU."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(
            "cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count()
        )
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {device!r}: {exc}") from None


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """bf16 where it is native (CUDA with bf16); on CPU it is emulated and ~25x slower here."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose one of {PRECISIONS}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    native = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if native else torch.float32


class _HiddenPool:
    """Captures the backbone's last hidden state on the first call of each batch (the prompt
    pass; later calls are decode steps) and pools it over the prompt tokens."""

    def __init__(self, lm: torch.nn.Module, how: str) -> None:
        model = base_model(lm)
        backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
        if not isinstance(backbone, torch.nn.Module):
            raise ConfigError(
                f"--hidden {how}: cannot find the backbone of {type(model).__name__} "
                "(no base_model_prefix attribute)"
            )
        self.how = how
        self.pooled: torch.Tensor | None = None
        self.handle = backbone.register_forward_hook(self._hook, with_kwargs=True)

    def reset(self) -> None:
        self.pooled = None

    def _hook(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if self.pooled is not None:
            return
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        mask = mask[:, -hidden.shape[1] :].to(hidden.dtype)
        if self.how == "mean":
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        else:  # the last real token: the position the verdict is read from
            cols = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
            last = (cols * mask.long()).argmax(1)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        self.pooled = pooled.float()

    def remove(self) -> None:
        self.handle.remove()


class HFAnnotator(Annotator):
    """Annotate with a teacher exported by ``relkd teacher train`` (see teacher_adapter.py).

    The weights are loaded on the first ``annotate`` call, not before: a re-run whose pairs are
    all cached fingerprints the teacher from its manifest and never loads (or hashes) a model.

    Args:
        exported: the teacher's manifest, tokenizer and prompt settings (``read_teacher``).
        load: loads the teacher's weights (``load_teacher``), called once, when first needed.
        store: the prompt store the rows index (built with the teacher's prompt settings).
        scheme: the label scheme of the teacher's labels.
        adapter_sha256: hash of the exported teacher folder (fingerprinted).
        batch_size: pairs per forward pass / decode batch.
        device, precision: where and in which dtype to run (``auto`` picks CUDA and bf16 when
            available).
        hidden: ``none``, ``last`` (the last prompt token) or ``mean`` pooled hidden state.
        cot: write the CoT of cot/progressive teachers and the explanation of a multitask one
            (False: verdicts only; a cot teacher still decodes to reach its verdict).
        max_new_tokens: CoT budget (default: the teacher's).
    """

    name: ClassVar[str] = "hf"

    def __init__(
        self,
        exported: ExportedTeacher,
        load: Callable[[], LoadedTeacher],
        store: PromptStore,
        scheme: LabelScheme,
        adapter_sha256: str,
        *,
        batch_size: int = 32,
        device: str = "auto",
        precision: str = "auto",
        hidden: str = "none",
        cot: bool = True,
        max_new_tokens: int | None = None,
    ) -> None:
        if hidden not in POOLINGS:
            raise ConfigError(f"--hidden {hidden!r}: choose one of {POOLINGS}")
        if batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        self.exported = exported
        self._load = load
        self.store = store
        self.scheme = scheme
        self.adapter_sha256 = adapter_sha256
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.hidden = hidden
        m = exported.manifest
        self.mode = str(m["mode"])
        self.max_new_tokens = int(max_new_tokens or m["max_new_tokens"])
        self.write_cot = bool(cot) and self.mode != "classifier"
        self.collate = PromptCollator(store, with_response=False)
        self.lengths = store.prompt_lengths()
        self.label_words = dict(m["label_words"])
        self.aggregation = m.get("aggregation", "verdict")
        self.aggregator = exported.aggregator
        self._net: CausalLMTeacher | None = None
        self._pool: _HiddenPool | None = None

    @property
    def net(self) -> CausalLMTeacher:
        """The teacher on its device, loaded on first use."""
        if self._net is None:
            net = self._load().net.to(self.device, dtype=self.dtype).eval()
            net.max_new_tokens = self.max_new_tokens
            if self.hidden != "none":
                self._pool = _HiddenPool(net.lm, self.hidden)
                net.share_prefix = False  # pooling reads every prompt's own pass in full
            self._net = net
        return self._net

    def load(self) -> None:
        _ = self.net

    def identity(self) -> dict[str, Any]:
        m = self.exported.manifest
        base = m["base"]
        inputs = self.store.manifest["inputs"]
        return {
            "base_model": {
                "id": base["pretrained"],
                "revision": base["revision"],
                "weights_sha256": base["weights_sha256"],
                "config_overrides": base["config_overrides"],
            },
            "adapter_sha256": self.adapter_sha256,
            "finetune": m["finetune"],
            "teacher_mode": m["mode"],
            "prompt_template_sha256": m["template"]["sha256"],
            "prompt_spec": {k: v for k, v in m["prompt_spec"].items() if k != "labelled_only"},
            "tokenizer": {
                "class": inputs["tokenizer_class"],
                "vocab_sha256": inputs["vocab_sha256"],
            },
            "labels": list(m["labels"]),
            "label_words": self.label_words,
            "aggregation": m.get("aggregation", "verdict"),
        }

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "decoding": "greedy",
            "write_cot": self.write_cot,
            "max_new_tokens": self.max_new_tokens if self.mode != "classifier" else 0,
            "precision": str(self.dtype).removeprefix("torch."),
            "hidden": self.hidden,
        }

    @torch.inference_mode()
    def annotate(self, rows: np.ndarray) -> Annotation:
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            raise ValueError("annotate: no rows")
        order = np.argsort(-self.lengths[rows], kind="stable")  # longest first: OOM shows early
        parts: list[Annotation] = []
        for start in range(0, len(order), self.batch_size):
            parts.append(self._batch(rows[order[start : start + self.batch_size]]))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return Annotation.concat(parts).take(inverse)

    def _batch(self, rows: np.ndarray) -> Annotation:
        net = self.net
        batch = self.collate(rows)
        dev = {
            k: v.to(self.device, non_blocking=True)
            for k, v in batch.items()
            if k in ("input_ids", "attention_mask", "slot_index")
        }
        if self._pool is not None:
            self._pool.reset()
        explain = self.write_cot and self.mode == "multitask"
        pred = net.predict(dev, explain=explain)
        logits = pred.logits.float().cpu().numpy()
        aspect_logits = (
            None if pred.aspect_logits is None else pred.aspect_logits.float().cpu().numpy()
        )
        probs, score = teacher_distribution(
            logits,
            aspect_logits,
            self.scheme,
            self.aggregation,
            self.aggregator,
        )
        n = len(rows)
        aspects = empty_aspects(n)
        verdict = np.full(n, -1, dtype=np.int8)
        cot_ok = np.zeros(n, dtype=bool)
        cot: list[str | None] | None = None
        if aspect_logits is not None:
            aspects[:] = aspect_logits.argmax(-1)
        if pred.generated is not None and self.write_cot:
            cot = [net.decode(self.exported.tokenizer, ids) for ids in pred.generated]
            labels = list(self.scheme.labels)
            for i, text in enumerate(cot):
                parsed = parse_cot(text, self.label_words, require_verdict=self.mode != "multitask")
                cot_ok[i] = parsed.ok
                if aspect_logits is None:
                    aspects[i] = parsed.aspect_codes()
                if parsed.verdict is not None:
                    verdict[i] = labels.index(parsed.verdict)
        hidden = None
        if self._pool is not None:
            assert self._pool.pooled is not None, "the backbone hook did not fire"
            hidden = self._pool.pooled.cpu().numpy().astype(np.float16)
        return Annotation(
            pair_id=np.asarray(batch["pair_id"].numpy(), dtype=np.int64),
            logits=logits.astype(np.float32),
            probs=probs,
            score=score,
            cot=cot,
            aspects=aspects,
            verdict=verdict,
            cot_ok=cot_ok,
            hidden=hidden,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.remove()
