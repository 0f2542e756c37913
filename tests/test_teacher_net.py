"""The teacher net: the verbalizer reads label tokens only, decoding matches unbatched runs,
LoRA leaves the base untouched, checkpoints and adapters hold what training changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptStore, special_ids
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import StaleArtifactError
from relkd.nets.causal_lm_teacher import TeacherTokens
from relkd.nets.kv_decoder import KVDecoder, call_lm
from relkd.runs.teacher_factory import build_teacher, prompt_spec, teacher_spec
from relkd.teacher.teacher_adapter import export_teacher, load_teacher
from tests.conftest import REPO
from tests.datamodule_fixtures import make_dataset

EMBEDDED = REPO / "experiments" / "teacher" / "embedded.yaml"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("teacher_net") / "ds"
    make_dataset(root, n_queries=12, items_per_query=6)
    return root


def teacher_cfg(tmp: Path, **extra: object):
    values = {
        "data.cache_dir": tmp / "cache",
        "teacher.model": "tiny-causal",
        "teacher.tiny.hidden_size": 32,
        "teacher.tiny.layers": 1,
        "teacher.finetune": "lora",
        "teacher.lora.train_new_weights": False,
        "teacher.lora.dropout": 0.0,
        **extra,
    }
    return compose(EMBEDDED, [f"{k}={v}" for k, v in values.items()])


def build(tmp: Path, data_dir: Path, **extra: object):
    cfg = teacher_cfg(tmp, **extra)
    scheme = CanonicalDataset(data_dir).scheme
    spec = teacher_spec(cfg, data_dir)
    pspec = prompt_spec(cfg, scheme, spec)
    parts = build_teacher(cfg, spec, scheme, pspec, ("val", "test"))
    store = PromptStore.open_or_build(data_dir, parts.tokenizer, pspec, cache_dir=tmp / "prompts")
    return cfg, spec, pspec, parts, store


def test_verbalizer_reads_only_label_tokens(tmp_path, data_dir) -> None:
    _, _, _, parts, store = build(tmp_path, data_dir)
    net = parts.module.net.eval()
    batch = PromptCollator(store, with_response=False)(np.arange(6))
    with torch.no_grad():
        logits = net(batch["input_ids"], batch["attention_mask"], batch["slot_index"])["logits"]
        full = net.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    last = batch["prompt_len"] - 1
    expected = full[torch.arange(6), last][:, net.verdict_ids]
    torch.testing.assert_close(logits, expected)
    probs, _ = parts.module.scores_from_logits(logits)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    # raising a non-label token's output bias changes the LM's distribution, not the verbalizer's
    bias = net.lm.get_base_model().cls.predictions.bias
    other = next(i for i in range(100, 200) if i not in net.tokens.verdict_ids)
    with torch.no_grad():
        bias[other] += 50.0
        again = net(batch["input_ids"], batch["attention_mask"], batch["slot_index"])["logits"]
    torch.testing.assert_close(again, logits)


def test_right_padding_does_not_move_the_answer(tmp_path, data_dir) -> None:
    _, _, _, parts, store = build(tmp_path, data_dir)
    net = parts.module.net.eval()
    lengths = store.prompt_lengths()
    short, long = int(np.argmin(lengths)), int(np.argmax(lengths))
    collate = PromptCollator(store, with_response=False)
    with torch.no_grad():
        alone = collate(np.array([short]))
        padded = collate(np.array([short, long]))
        a = net(alone["input_ids"], alone["attention_mask"], alone["slot_index"])["logits"][0]
        b = net(padded["input_ids"], padded["attention_mask"], padded["slot_index"])["logits"][0]
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_kv_decoding_in_a_batch_equals_decoding_alone(tmp_path, data_dir) -> None:
    _, _, _, parts, store = build(tmp_path, data_dir)
    lm = parts.module.net.lm.eval()
    collate = PromptCollator(store, with_response=False)
    rows = np.argsort(store.prompt_lengths())[[0, -1, 3]]  # different lengths: left re-padding
    with torch.no_grad():
        batch = collate(rows)
        together = (
            KVDecoder(lm, batch["input_ids"], batch["attention_mask"], 0).generate(6, -1).tokens
        )
        for b, row in enumerate(rows):
            one = collate(np.array([row]))
            alone = KVDecoder(lm, one["input_ids"], one["attention_mask"], 0).generate(6, -1).tokens
            assert together[b].tolist() == alone[0].tolist()
            # and greedy decoding equals re-running the whole sequence each step
            ids = one["input_ids"]
            for token in alone[0].tolist():
                logits, _ = call_lm(lm, ids, torch.ones_like(ids))
                assert int(logits[0, -1].argmax()) == token
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)


def _train_steps(module, store, steps: int = 3) -> None:
    collate = PromptCollator(store, with_response=True)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    module.train()
    for step in range(steps):
        batch = collate(np.arange(step * 8, step * 8 + 8) % store.num_pairs)
        out = module.net(**{k: batch[k] for k in module.net.input_keys})
        module.loss(out, batch).total.backward()
        opt.step()
        opt.zero_grad()


def test_lora_changes_the_adapter_and_never_the_base(tmp_path, data_dir) -> None:
    _, _, _, parts, store = build(tmp_path, data_dir)
    module = parts.module
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    _train_steps(module, store)
    for name, param in module.named_parameters():
        if name in trainable:
            continue
        assert torch.equal(param, before[name]), f"base weight {name} changed"
    changed = [
        n
        for n in trainable
        if "lora_B" in n and not torch.equal(module.get_parameter(n), before[n])
    ]
    assert changed, "no adapter weight changed"


def test_checkpoint_keeps_trainable_and_new_weights_only(tmp_path, data_dir) -> None:
    _, _, _, parts, _ = build(tmp_path, data_dir)
    module = parts.module
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    kept = set(checkpoint["state_dict"])
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    new = {n for n, _ in module.new_parameters()}
    assert trainable <= kept and new <= kept
    frozen_pretrained = {n for n, p in module.named_parameters() if not p.requires_grad} - new
    assert not kept & frozen_pretrained


def test_adapter_round_trip_and_base_check(tmp_path, data_dir) -> None:
    cfg, spec, pspec, parts, store = build(
        tmp_path, data_dir, **{"teacher.lora.train_new_weights": True}
    )
    module = parts.module
    _train_steps(module, store)
    out = export_teacher(
        module,
        tmp_path / "adapter",
        spec=spec,
        base_sha256=spec.weights_sha256(),
        prompt_spec=pspec,
        finetune="lora",
        lora=dict(OmegaConf.to_container(cfg.teacher.lora)),
        tokenizer=parts.tokenizer,
    )
    assert (out / "adapter_model.safetensors").is_file() and (
        out / "new_weights.safetensors"
    ).is_file()
    loaded = load_teacher(out)
    batch = PromptCollator(store, with_response=False)(np.arange(5))
    module.eval()
    with torch.no_grad():
        want = module.net.predict(batch).logits
        got = loaded.net.predict(batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert loaded.manifest["template"]["sha256"] == pspec.template().sha256
    # a base model whose weights changed is refused
    manifest = out / "relkd_teacher.json"
    import json

    data = json.loads(manifest.read_text())
    data["base"]["weights_sha256"] = "0" * 64
    data["base"]["pretrained"] = str(tmp_path)  # a folder with a weight file that differs
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    manifest.write_text(json.dumps(data))
    with pytest.raises(StaleArtifactError, match="weights sha256"):
        load_teacher(out)


def test_teacher_tokens_check_the_cot_scaffold(tmp_path, data_dir) -> None:
    _, _, pspec, parts, _ = build(
        tmp_path, data_dir, **{"teacher.mode": "progressive", "loss.weights.aspect_ce": 1.0}
    )
    ids = special_ids(parts.tokenizer)
    tokens = TeacherTokens.of(parts.tokenizer, pspec.template(), ids["end_id"], ids["pad_id"])
    decoded = parts.tokenizer.decode(
        tokens.scaffolds[0] + tokens.option_seqs[1] + tokens.scaffolds[1]
    )
    assert decoded == "category : mismatch. brand :"
    assert parts.tokenizer.decode(tokens.verdict_cue) == "verdict :"


def test_progressive_decoding_writes_a_parsable_cot(tmp_path, data_dir) -> None:
    _, _, _, parts, store = build(
        tmp_path, data_dir, **{"teacher.mode": "progressive", "loss.weights.aspect_ce": 1.0}
    )
    module = parts.module.eval()
    batch = PromptCollator(store, with_response=False)(np.arange(4))
    out = module.eval_outputs(batch)
    assert out["cot_ok"].all()
    assert out["aspect_logits"].shape == (4, 4, 3)
    # the generated aspects are the argmax of each step's options
    np.testing.assert_array_equal(out["aspect_pred"], out["aspect_logits"].argmax(-1))


def test_full_finetuning_with_frozen_layers(tmp_path, data_dir) -> None:
    freeze = "[embeddings,predictions.transform.LayerNorm]"  # regexes, searched in the names
    _, _, _, parts, store = build(
        tmp_path, data_dir, **{"teacher.finetune": "full", "teacher.freeze": freeze}
    )
    module = parts.module
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    assert frozen and all("embeddings." in n or "transform.LayerNorm" in n for n in frozen)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    _train_steps(module, store)
    for name, param in module.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved != (name in frozen) or "bias" in name, name  # frozen never move, others do


def test_freeze_that_matches_nothing_is_an_error(tmp_path, data_dir) -> None:
    from relkd.errors import ConfigError

    with pytest.raises(ConfigError, match="match no parameter"):
        build(
            tmp_path,
            data_dir,
            **{"teacher.finetune": "full", "teacher.freeze": "[nothing_like_this]"},
        )


def _grads(module, store, autocast: bool = False) -> dict[str, torch.Tensor]:
    collate = PromptCollator(store, with_response=True)
    batch = collate(np.arange(8))
    module.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = module.net(**{k: batch[k] for k in module.net.input_keys})
        loss = module.loss(out, batch).total
    loss.backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, data_dir, finetune) -> None:
    """Checkpointing trades compute for memory; it must not change what is learnt."""
    grads = {}
    for on in (False, True):
        _, _, _, parts, store = build(
            tmp_path / str(on),
            data_dir,
            **{"teacher.finetune": finetune, "teacher.gradient_checkpointing": on},
        )
        lm = parts.module.net.lm
        flag = getattr(lm, "is_activation_checkpointing", None)
        assert (lm.is_gradient_checkpointing if flag is None else flag) == on
        grads[on] = _grads(parts.module, store)
    assert grads[True].keys() == grads[False].keys() and grads[True]
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_step_trains_the_adapter(tmp_path, data_dir) -> None:
    """trainer.precision=bf16-mixed: the step runs under bf16 autocast with finite fp32 grads."""
    _, _, _, parts, store = build(tmp_path, data_dir)
    grads = _grads(parts.module, store, autocast=True)
    lora_b = [g for n, g in grads.items() if "lora_B" in n]
    assert lora_b and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in lora_b)
    assert any(g.abs().sum() > 0 for g in lora_b)
