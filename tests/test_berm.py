"""BERM: the net is the cross-encoder plus a zero-initialised k-order residual; it trains from a
YAML on the synthetic default and reports clicked/cold slices; slices in the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from relkd.config import compose
from relkd.errors import ConfigError
from relkd.metrics import compute_relevance_metrics
from relkd.nets.berm import Berm
from relkd.nets.cross_encoder import CrossEncoder
from relkd.train import run_training
from tests.conftest import REPO, tiny_overrides
from tests.test_students import tiny_encoder

B, L, K, T = 3, 10, 4, 5


def _batch(groups: list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (B, L), generator=g)
    ids[:, 0] = 2
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones(B, L, dtype=torch.long),
        "token_type_ids": (torch.arange(L) >= 4).long().expand(B, L).clone(),
    }
    for name in groups:
        mask = torch.ones(B, K, T, dtype=torch.long)
        mask[0, 2:] = 0  # row 0 has two neighbours
        mask[2] = 0  # row 2 has none (a cold node)
        batch[f"{name}_ids"] = torch.randint(5, 49, (B, K, T), generator=g) * mask
        batch[f"{name}_mask"] = mask
        batch[f"{name}_weight"] = torch.rand(B, K, generator=g) * mask[..., 0]
    return batch


def _berm(metapaths: tuple[str, ...], order: int = 1) -> Berm:
    torch.manual_seed(0)
    cross = CrossEncoder(tiny_encoder(), num_labels=4, dropout=0.0)
    return Berm(cross, metapaths=metapaths, order=order).eval()


def _call(net: Berm, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return net(**{k: v for k, v in batch.items() if k in net.input_keys})


def test_zero_order_berm_is_exactly_the_cross_encoder() -> None:
    net = _berm(())
    batch = _batch([])
    cross = net.cross(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    torch.testing.assert_close(_call(net, batch)["logits"], cross["logits"])
    assert net.input_keys == net.cross.input_keys


def test_graph_term_starts_at_zero_then_reads_the_neighbours() -> None:
    net = _berm(("qiq", "iqi"), order=2)
    assert net.groups == ["qiq1", "qiq2", "iqi1", "iqi2"]
    batch = _batch(net.groups)
    out = _call(net, batch)
    torch.testing.assert_close(out["graph_logits"], torch.zeros_like(out["graph_logits"]))
    with torch.no_grad():
        net.graph_head.weight.normal_()
    out = _call(net, batch)
    assert out["graph_logits"].abs().sum() > 0
    # the attention is order-free: permuting a row's neighbours changes nothing
    perm = dict(batch)
    for f in ("ids", "mask", "weight"):
        key = f"qiq1_{f}"
        perm[key] = batch[key].clone()
        perm[key][1] = batch[key][1].flip(0)
    torch.testing.assert_close(_call(net, perm)["logits"], out["logits"])
    # other neighbour texts change the k-order relevance of the rows that have neighbours
    other = dict(batch)
    other["qiq1_ids"] = (batch["qiq1_ids"] + 1) * batch["qiq1_mask"]
    diff = (_call(net, other)["logits"] - out["logits"]).abs().sum(-1)
    assert diff[0] > 0 and diff[1] > 0 and diff[2] == 0  # row 2 has no qiq neighbours


def test_gradients_reach_the_graph_layers_and_the_word_table() -> None:
    net = _berm(("qiq",)).train()
    with torch.no_grad():
        net.graph_head.weight.normal_()
    out = _call(net, _batch(net.groups))
    out["logits"].sum().backward()
    assert net.combine["qiq1"].weight.grad.abs().sum() > 0
    assert net.key.weight.grad.abs().sum() > 0
    assert net.cross.encoder.get_input_embeddings().weight.grad.abs().sum() > 0


def test_metrics_slices_are_the_metrics_of_their_pairs() -> None:
    rng = np.random.default_rng(0)
    n = 60
    labels = rng.integers(0, 4, n)
    scores = rng.random(n)
    queries = np.repeat(np.arange(6), 10)
    buckets = np.zeros(n, np.int64)
    warm = rng.random(n) < 0.5
    full = compute_relevance_metrics(
        "esci",
        labels,
        scores,
        queries,
        buckets,
        threshold=0.5,
        slices={"clicked": warm, "cold": ~warm},
    )
    alone = compute_relevance_metrics(
        "esci", labels[warm], scores[warm], queries[warm], buckets[warm], threshold=0.5
    )
    assert full["slices"]["clicked"] == alone["overall"]
    assert full["slices"]["cold"]["num_pairs"] == int((~warm).sum())
    empty = compute_relevance_metrics(
        "esci", labels, scores, queries, buckets, slices={"clicked": np.zeros(n, bool)}
    )
    assert empty["slices"]["clicked"]["num_pairs"] == 0


def test_compose_refuses_bad_berm_settings(tmp_path: Path) -> None:
    base = REPO / "experiments" / "berm" / "qiq_iqi_k1.yaml"
    with pytest.raises(ConfigError, match=r"model\.berm\.metapaths"):
        compose(base, ["model.berm.metapaths=[qiq,qq]"])
    with pytest.raises(ConfigError, match=r"model\.berm\.order"):
        compose(base, ["model.berm.order=3"])
    with pytest.raises(ConfigError, match=r"data\.click_graph\.eval_queries"):
        compose(base, ["data.click_graph.eval_queries=future"])


def test_berm_trains_from_its_yaml_with_slices(tmp_path: Path, shared_data_root: Path) -> None:
    cfg = compose(
        REPO / "experiments" / "berm" / "qiq_iqi_k2.yaml",
        tiny_overrides(
            tmp_path / "runs",
            shared_data_root,
            **{"data.max_length": 32, "data.teacher_cache": "null", "loss.weights.soft_kl": 0},
        ),
    )
    run = run_training(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test["slices"]) == {"clicked", "cold"}
    assert (
        test["slices"]["clicked"]["num_pairs"] + test["slices"]["cold"]["num_pairs"]
        == test["num_pairs"]
    )
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert {"net.graph_head.weight", "net.combine.qiq2.weight"} <= set(ckpt["state_dict"])
    # the checkpoint's graph head has moved off its zero start
    assert ckpt["state_dict"]["net.graph_head.weight"].abs().sum() > 0
    from relkd.serving.onnx_export import export_onnx

    with pytest.raises(
        ConfigError,
        match="berm reads the click-graph neighbours of a catalogue pair at serving time",
    ):
        export_onnx(run)
