"""A trained teacher as a portable folder: the adapter, and a manifest naming its base model.

Layout of ``<run>/adapter/``::

    adapter_config.json, adapter_model.safetensors   the peft LoRA adapter (finetune: lora)
    model/                                           the whole model instead (finetune: full)
    new_weights.safetensors                          base weights the checkpoint lacked (e.g.
                                                     MiniLM's LM-head transform), when any
    tokenizer/                                       the tokenizer the prompts were made with
    relkd_teacher.json                               the manifest (below), written last

The manifest records the base model (id or path, revision, SHA-256 of its weight files), the
mode, the prompt template (version, hash and text) and prompt settings, the label words and
their token ids, the LoRA settings, parameter counts and, for a progressive teacher with
``aggregation: fitted``, the fitted aggregator. ``load_teacher`` rebuilds the teacher from it and
refuses a base model whose weights differ from the ones the adapter was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from relkd import __version__
from relkd.artifacts.atomic_files import atomic_write_json, move_into_place, staged_folder
from relkd.artifacts.identity import sha256_hex
from relkd.artifacts.manifest_file import read_manifest_file
from relkd.errors import DataError, StaleArtifactError
from relkd.nets.causal_lm_presets import CausalLMSpec, base_param_name
from relkd.nets.causal_lm_teacher import CausalLMTeacher, TeacherTokens
from relkd.teacher_cache.aspect_aggregator import AspectAggregator

MANIFEST = "relkd_teacher.json"
KIND = "teacher_adapter"
VERSION = 1
NEW_WEIGHTS = "new_weights.safetensors"


def export_teacher(
    module: Any,
    out: str | Path,
    *,
    spec: CausalLMSpec,
    base_sha256: str | None,
    prompt_spec: Any,
    finetune: str,
    lora: dict[str, Any],
    tokenizer: Any,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``module``'s teacher to ``out`` (staged, then renamed into place; an existing
    export is replaced only once the new one is complete)."""
    from safetensors.torch import save_file

    from relkd.nets.kv_decoder import base_model

    out = Path(out)
    with staged_folder(out) as staging:
        lm = module.net.lm
        if finetune == "lora":
            lm.save_pretrained(staging)
        else:
            base_model(lm).save_pretrained(staging / "model")
        new_names: list[str] = []
        if finetune == "lora" and module.new_weights:
            tensors = {}
            for name, param in module.new_parameters():
                tensors[base_param_name(name)] = (
                    param.detach().to("cpu", torch.float32).contiguous()
                )
            save_file(tensors, str(staging / NEW_WEIGHTS))
            new_names = sorted(tensors)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging / "tokenizer")
        template = prompt_spec.template()
        manifest = {
            "kind": KIND,
            "version": VERSION,
            "relkd_version": __version__,
            "base": {
                "name": spec.name,
                "pretrained": spec.pretrained,
                "tokenizer": spec.tokenizer,
                "revision": spec.revision,
                "trust_remote_code": spec.trust_remote_code,
                "config_overrides": spec.config_overrides,
                "weights_sha256": base_sha256,
                "gguf_sha256": spec.gguf_sha256,
            },
            "finetune": finetune,
            "lora": lora if finetune == "lora" else None,
            "new_weights": {"file": NEW_WEIGHTS, "names": new_names} if new_names else None,
            "mode": template.mode,
            "template": {
                "version": template.version,
                "sha256": template.sha256,
                "text": template.text(),
            },
            "prompt_spec": prompt_spec.to_dict(),
            "labels": list(module.scheme.labels),
            "label_words": dict(module.label_words),
            "verdict_token_ids": list(module.net.tokens.verdict_ids),
            "max_new_tokens": module.net.max_new_tokens,
            "aggregation": module.aggregation,
            "aggregator": None if module.aggregator is None else module.aggregator.to_dict(),
            "parameters": module.trainable_counts(),
            **(extra or {}),
        }
        atomic_write_json(staging / MANIFEST, manifest)
        move_into_place(staging, out, replace=True)  # the run's own export: replaced whole
    return out


def adapter_sha256(adapter_dir: str | Path) -> str:
    """SHA-256 over every file of an exported teacher (relative path and content hash), so a
    cache records exactly which weights, tokenizer and manifest judged its pairs."""
    from relkd.artifacts.atomic_files import sha256_file

    root = Path(adapter_dir)
    lines = [
        f"{p.relative_to(root).as_posix()} {sha256_file(p)}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    return sha256_hex("\n".join(lines))


def read_manifest(adapter_dir: str | Path) -> dict[str, Any]:
    path = Path(adapter_dir) / MANIFEST
    manifest = read_manifest_file(
        path, f"missing; is {adapter_dir} a relkd teacher adapter folder?"
    )
    if manifest.get("kind") != KIND or manifest.get("version") != VERSION:
        raise DataError(
            f"{path}: kind {manifest.get('kind')!r} version {manifest.get('version')!r} is not a "
            f"{KIND} v{VERSION}"
        )
    return manifest


@dataclass
class ExportedTeacher:
    """What an exported teacher says about itself without loading its weights: the manifest,
    the tokenizer and the prompt settings (the template checked against this relkd's)."""

    root: Path
    manifest: dict[str, Any]
    tokenizer: Any
    prompt_spec: Any

    @property
    def aggregator(self) -> AspectAggregator | None:
        agg = self.manifest.get("aggregator")
        return None if agg is None else AspectAggregator.from_dict(agg)


@dataclass
class LoadedTeacher:
    net: CausalLMTeacher
    tokenizer: Any
    manifest: dict[str, Any]
    prompt_spec: Any
    aggregator: AspectAggregator | None


def read_teacher(adapter_dir: str | Path) -> ExportedTeacher:
    """The manifest, tokenizer and prompt settings of an exported teacher (cheap: no weights).
    Raises StaleArtifactError when this relkd renders another prompt template."""
    from transformers import AutoTokenizer

    from datamodules.prompt_store import PromptSpec

    adapter_dir = Path(adapter_dir)
    manifest = read_manifest(adapter_dir)
    tok_dir = adapter_dir / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(
        tok_dir if tok_dir.is_dir() else manifest["base"]["tokenizer"]
    )
    saved = manifest["prompt_spec"]
    prompt_spec = PromptSpec(
        **{
            **saved,
            "item_fields": tuple(saved["item_fields"]),
            # JSON sorted the keys; label order is the scheme's (it orders the verdict tokens)
            "label_words": {label: saved["label_words"][label] for label in manifest["labels"]},
        }
    )
    template = prompt_spec.template()
    if template.sha256 != manifest["template"]["sha256"]:
        raise StaleArtifactError(
            f"{adapter_dir / MANIFEST}: prompt template {manifest['template']['sha256'][:12]} was "
            f"used in training, this relkd renders {template.sha256[:12]}"
        )
    return ExportedTeacher(adapter_dir, manifest, tokenizer, prompt_spec)


def load_teacher(adapter_dir: str | Path, verify_base: bool = True) -> LoadedTeacher:
    """Rebuild an exported teacher (eval mode, CPU). Raises StaleArtifactError when the base
    model's weight files no longer hash to the recorded SHA-256."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from datamodules.prompt_store import special_ids

    exported = read_teacher(adapter_dir)
    adapter_dir, manifest, tokenizer = exported.root, exported.manifest, exported.tokenizer
    b = manifest["base"]
    spec = CausalLMSpec(
        name=b["name"],
        tokenizer=b["tokenizer"],
        pretrained=b["pretrained"],
        config_overrides=dict(b["config_overrides"]),
        trust_remote_code=bool(b["trust_remote_code"]),
        revision=b["revision"],
        gguf_sha256=b.get("gguf_sha256"),
    )
    if verify_base and b["weights_sha256"] is not None:
        have = spec.weights_sha256()
        if have != b["weights_sha256"]:
            raise StaleArtifactError(
                f"{adapter_dir / MANIFEST}: base model {b['pretrained']!r} weights sha256 "
                f"{str(have)[:12]} != {b['weights_sha256'][:12]} recorded when the adapter was "
                "trained; point at the original base model"
            )
    if manifest["finetune"] == "full":
        lm = AutoModelForCausalLM.from_pretrained(
            adapter_dir / "model", trust_remote_code=spec.trust_remote_code
        )
    else:
        from peft import PeftModel

        base, _ = spec.build()
        new = manifest.get("new_weights")
        if new:
            tensors = load_file(str(adapter_dir / new["file"]))
            _, unexpected = base.load_state_dict(tensors, strict=False)
            if unexpected:
                raise DataError(f"{adapter_dir / new['file']}: unknown weights {unexpected[:3]}")
        lm = PeftModel.from_pretrained(base, adapter_dir)
    ids = special_ids(tokenizer)
    template = exported.prompt_spec.template()
    tokens = TeacherTokens.of(tokenizer, template, ids["end_id"], ids["pad_id"])
    net = CausalLMTeacher(lm, tokens, manifest["mode"], manifest["max_new_tokens"]).eval()
    return LoadedTeacher(
        net=net,
        tokenizer=tokenizer,
        manifest=manifest,
        prompt_spec=exported.prompt_spec,
        aggregator=exported.aggregator,
    )
