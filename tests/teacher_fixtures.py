"""A tiny teacher run (random 1-layer decoder, a few hundred pairs) shared by teacher tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relkd.cli import main
from tests.conftest import REPO

TEACHER = REPO / "experiments" / "teacher"


def tiny_teacher(tmp: Path, data_root: Path, **extra: object) -> list[str]:
    values: dict[str, object] = {
        "output_dir": tmp / "runs",
        "data.dataset_root": data_root / "datasets",
        "data.cache_dir": data_root / "tokenized",
        "data.synthetic.pairs": 1200,
        "data.synthetic.val_pairs": 0,
        "data.synthetic.test_pairs": 0,
        "data.batch_size": 16,
        "data.eval_batch_size": 64,
        "teacher.model": "tiny-causal",
        "teacher.tiny.hidden_size": 32,
        "teacher.tiny.layers": 1,
        "teacher.prompt.max_item_tokens": 32,
        "teacher.cot.max_new_tokens": 24,
        "optim.lr": 3e-3,
        "optim.head_lr": 3e-3,
        "trainer.max_epochs": 1,
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": False,
        "trainer.log_every_n_steps": 1,
        "trainer.limit_val_batches": "null",
        "eval.bm25_baseline": False,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def run_teacher(tmp: Path, data_root: Path, preset: str = "embedded", **extra: object) -> Path:
    assert (
        main(
            [
                "teacher",
                "train",
                str(TEACHER / f"{preset}.yaml"),
                *tiny_teacher(tmp, data_root, **extra),
            ]
        )
        == 0
    )
    runs = sorted((tmp / "runs").glob("*/version_*"))
    assert len(runs) == 1
    return runs[0]


# ChatML as SmolLM2 and Qwen2.5 write it (no system turn): what a chat-format prompt store wraps
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_qwen(out: Path, chat: bool = False) -> Path:
    """A Qwen2-architecture causal LM (rotary positions, no BOS, its own cache) built from a
    config, with a byte-level BPE tokenizer (leading-space tokens) trained on the template.
    ``chat`` adds ChatML's special tokens and chat template (an instruct model's shape)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset
    from relkd.prompts import PromptTemplate
    from relkd.prompts.cot_template import CotTemplate

    words = {
        "Exact": "exact",
        "Substitute": "substitute",
        "Complement": "complement",
        "Irrelevant": "irrelevant",
    }
    templates = [PromptTemplate("cot", CotTemplate(words), True, True, True)]
    if chat:
        templates += [
            PromptTemplate(m, CotTemplate(words), chat=True) for m in ("classifier", "cot")
        ]
    # the template's words often enough to become whole tokens, as in a real LLM vocabulary
    texts: list[str] = []
    for template in templates:
        texts += [template.text(), *(template.response({}, label)[0] for label in words)] * 200
    texts += ["not stated match mismatch brand model attributes category | color: type:"] * 200
    catalogue = generate_dataset(SynthConfig(pairs=400, seed=3), out / "corpus")
    for table, column in (("items", "title"), ("items", "attributes"), ("queries", "text")):
        texts += catalogue.table(table, [column]).column(column).to_pylist()
    specials = ["<|endoftext|>", *(["<|im_start|>", "<|im_end|>"] if chat else [])]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=3000, min_frequency=2, special_tokens=specials)
    end = "<|im_end|>" if chat else "<|endoftext|>"
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token=end, pad_token="<|endoftext|>"
    )
    if chat:  # SmolLM2's shape: its BOS is the chat template's turn start
        tok.bos_token = "<|im_start|>"
        tok.chat_template = CHATML
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def assert_batched_equals_one_example(net: Any, store: Any, picks: list[int], tokens: int) -> None:
    """The teacher's verdict logits for prompts of different lengths in one batch (right-padded
    forward, the left-padded KV decoder with position ids, and ``predict``, which runs the
    batch's shared prompt prefix once) equal each prompt's alone to 1e-4, and batched greedy
    decoding of ``tokens`` tokens equals decoding each alone, up to the row's end token (a batch
    decodes until every row has ended)."""
    import numpy as np
    import torch

    from datamodules.prompt_collator import PromptCollator
    from relkd.nets.kv_decoder import KVDecoder

    collate = PromptCollator(store, with_response=False)
    rows = np.argsort(store.prompt_lengths())[picks]
    assert len({int(n) for n in store.prompt_lengths()[rows]}) > 1  # padding is exercised
    end, pad = net.tokens.end_id, net.tokens.pad_id
    with torch.no_grad():
        batch = collate(rows)
        logits = net(batch["input_ids"], batch["attention_mask"], batch["slot_index"])["logits"]
        dec = KVDecoder(net.lm, batch["input_ids"], batch["attention_mask"], pad)
        left = dec.logits[:, net.verdict_ids]  # left-padded, explicit positions
        shared = net.predict(batch).logits  # the shared prefix once, then each remainder
        together = dec.generate(tokens, end).tokens
        for b, row in enumerate(rows):
            one = collate(np.array([row]))
            alone = net(one["input_ids"], one["attention_mask"], one["slot_index"])["logits"][0]
            torch.testing.assert_close(logits[b], alone, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(left[b], alone, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(shared[b], alone, atol=1e-4, rtol=1e-4)
            solo = KVDecoder(net.lm, one["input_ids"], one["attention_mask"], pad)
            ids = solo.generate(tokens, end).tokens[0].tolist()
            assert ids and together[b].tolist()[: len(ids)] == ids
