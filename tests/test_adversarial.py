"""Contrastive adversarial training: the three loss terms against hand-written references, the
perturbation (norm, padding, direction, detached), and the student's training step (two passes
only when an adversarial term is on, none at evaluation, bf16 autocast), each test pinning one
failure mode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_modules.adversarial_pass import AdversarialPass
from lightning_modules.student_module import StudentModule
from relkd.config import compose
from relkd.data.label_scheme import ESCI
from relkd.losses.adv_ce import AdvCE
from relkd.losses.adv_contrastive import AdvContrastive
from relkd.losses.adv_kl import AdvKL
from relkd.losses.registry import build_loss
from relkd.nets.cross_encoder import CrossEncoder
from relkd.nets.two_tower import TwoTower
from relkd.train import run_training
from tests.conftest import QUICKSTART, tiny_overrides
from tests.test_students import tiny_encoder

ADV = ("adv_ce", "adv_kl", "adv_contrastive")


def loss_cfg(weights: dict[str, float], norm: float = 5.0, temperature: float = 0.05):
    return OmegaConf.create(
        {
            "weights": weights,
            "label_smoothing": 0.0,
            "temperature": 1.0,
            "soft_targets": {},
            "grades": {},
            "adversarial": {"norm": norm, "temperature": temperature},
        }
    )


def pair_batch(b: int = 6, length: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """A cross-encoder batch with padded rows of different lengths; row 4 unlabelled."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(4, length, (b,), generator=g)
    mask = (torch.arange(length)[None] < lens[:, None]).long()
    labels = torch.randint(0, 4, (b,), generator=g)
    labels[4] = -1
    return {
        "input_ids": torch.randint(1, 50, (b, length), generator=g) * mask,
        "attention_mask": mask,
        "token_type_ids": (torch.arange(length)[None] >= 3).long() * mask,
        "labels": labels,
    }


def student(weights: dict[str, float], norm: float = 5.0, freeze: bool = False) -> StudentModule:
    net = CrossEncoder(tiny_encoder(), num_labels=4, dropout=0.0)
    if freeze:
        net.encoder.get_input_embeddings().weight.requires_grad_(False)
    loss = build_loss(loss_cfg(weights, norm=norm), ESCI)
    module = StudentModule(net, loss, ESCI, {"lr": 1e-3, "weight_decay": 0.0})
    logged: dict[str, float] = {}

    def log(name: str, value: object, **kwargs: object) -> None:
        logged[name] = float(value)  # type: ignore[arg-type]

    module.log = log  # type: ignore[method-assign]  # self.log needs a trainer
    module.logged = logged  # type: ignore[attr-defined]
    return module


def count_forwards(module: StudentModule) -> list[int]:
    calls: list[int] = []
    module.net.register_forward_hook(lambda *args: calls.append(1))
    return calls


# -- the perturbation ---------------------------------------------------------------------


@pytest.mark.parametrize("norm", [0.5, 5.0, 12.0])
def test_perturbation_has_the_norm_per_example_no_padding_and_the_gradients_direction(
    norm: float,
) -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(4, 7, 5, generator=g, requires_grad=True)
    mask = (torch.arange(7)[None] < torch.tensor([7, 3, 5, 1])[:, None]).long()
    weight = torch.randn(4, 7, 5, generator=g)
    # the gradient is non-zero on padding too: only the mask keeps the perturbation off it
    loss = (emb * weight).sum() + (emb**2).sum()
    delta = AdversarialPass(norm).perturbation(loss, emb, mask)
    assert not delta.requires_grad and delta.grad_fn is None
    torch.testing.assert_close(delta.flatten(1).norm(dim=1), torch.full((4,), norm))
    assert torch.all(delta[mask == 0] == 0)
    masked_grad = (weight + 2 * emb.detach()) * mask[..., None]
    cos = torch.nn.functional.cosine_similarity(delta.flatten(1), masked_grad.flatten(1), dim=1)
    torch.testing.assert_close(cos, torch.ones(4))
    loss.backward()  # the clean graph is kept for the step's backward


def test_a_relative_norm_is_a_share_of_each_examples_embedding_norm() -> None:
    g = torch.Generator().manual_seed(1)
    scale = torch.tensor([0.2, 1.0, 7.0])[:, None, None]  # embeddings of very different sizes
    emb = (torch.randn(3, 6, 4, generator=g) * scale).requires_grad_(True)
    mask = (torch.arange(6)[None] < torch.tensor([6, 2, 4])[:, None]).long()
    loss = (emb * torch.randn(3, 6, 4, generator=g)).sum()
    delta = AdversarialPass(0.1, relative=True).perturbation(loss, emb, mask)
    own = (emb.detach() * mask[..., None]).flatten(1).norm(dim=1)  # padding never counts
    torch.testing.assert_close(delta.flatten(1).norm(dim=1), 0.1 * own)
    assert torch.all(delta[mask == 0] == 0)
    absolute = AdversarialPass(0.1).perturbation(loss, emb, mask)
    torch.testing.assert_close(absolute.flatten(1).norm(dim=1), torch.full((3,), 0.1))


def test_the_relative_setting_reaches_the_adversarial_pass() -> None:
    cfg = compose(
        QUICKSTART,
        ["loss.weights.adv_ce=1", "loss.adversarial.norm=0.05", "loss.adversarial.relative=true"],
    )
    loss = build_loss(cfg.loss, ESCI)
    assert loss.adversarial_norm == 0.05 and loss.adversarial_relative


def test_an_example_without_gradient_gets_no_perturbation_and_no_nan() -> None:
    emb = torch.randn(3, 4, 2, requires_grad=True)
    loss = (emb[:2] ** 2).sum()  # row 2 does not reach the loss
    delta = AdversarialPass(5.0).perturbation(loss, emb, torch.ones(3, 4))
    assert torch.isfinite(delta).all() and torch.all(delta[2] == 0)
    torch.testing.assert_close(delta[:2].flatten(1).norm(dim=1), torch.full((2,), 5.0))


def test_the_perturbation_follows_the_clean_loss_of_the_real_net_at_its_weights() -> None:
    """delta ∝ ∂(1·hard_ce + 3·graded_bce)/∂embeddings, masked: not one term's, not the total's."""
    weights = {"hard_ce": 1.0, "graded_bce": 3.0, "adv_ce": 1.0, "adv_kl": 1.0}
    module = student(weights, norm=2.0)
    b = pair_batch()
    seen: list[torch.Tensor] = []

    def forward(**kw):
        if "embeddings" in kw:
            seen.append(kw["embeddings"].detach())
        out = module(b, **kw)
        if "embeddings" not in kw:
            seen.append(out["embeddings"].detach())
        return out

    module.adversarial(forward, module.loss, b)
    clean, perturbed = seen
    delta = perturbed - clean
    mask = b["attention_mask"]
    # row 4 is unlabelled: no clean term reads it, so it has no gradient and no perturbation
    want = torch.full((6,), 2.0).masked_fill(b["labels"] < 0, 0.0)
    torch.testing.assert_close(delta.flatten(1).norm(dim=1), want)
    assert torch.all(delta[mask == 0] == 0)
    out = module(b, return_embeddings=True)
    values = module.loss.compute(out, b, ["hard_ce", "graded_bce"])
    (grad,) = torch.autograd.grad(
        values["hard_ce"] + 3 * values["graded_bce"], out["embeddings"], retain_graph=True
    )
    cos = torch.nn.functional.cosine_similarity(
        delta.flatten(1), (grad * mask[..., None]).flatten(1), dim=1
    )
    labelled = b["labels"] >= 0
    torch.testing.assert_close(cos[labelled], torch.ones(5), atol=1e-4, rtol=0)
    (ce_only,) = torch.autograd.grad(values["hard_ce"], out["embeddings"])
    cos_ce = torch.nn.functional.cosine_similarity(delta.flatten(1), ce_only.flatten(1), dim=1)
    assert float(cos_ce[labelled].min()) < 0.999


# -- the loss terms -------------------------------------------------------------------------


def reference_sym_kl(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    total = 0.0
    for c, a in zip(clean.tolist(), adv.tolist(), strict=True):
        p = [math.exp(x) / sum(math.exp(y) for y in c) for x in c]
        q = [math.exp(x) / sum(math.exp(y) for y in a) for x in a]
        kl_pq = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
        kl_qp = sum(qi * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
        total += 0.5 * (kl_pq + kl_qp)
    return torch.tensor(total / len(clean))


def test_adv_kl_matches_the_symmetric_kl_of_probabilities_and_is_symmetric() -> None:
    g = torch.Generator().manual_seed(0)
    clean, adv = torch.randn(9, 4, generator=g) * 2, torch.randn(9, 4, generator=g) * 2
    got = AdvKL()({"logits": clean, "adv_logits": adv}, {})
    torch.testing.assert_close(got, reference_sym_kl(clean, adv), rtol=1e-5, atol=1e-6)
    swapped = AdvKL()({"logits": adv, "adv_logits": clean}, {})
    torch.testing.assert_close(got, swapped)
    assert float(AdvKL()({"logits": clean, "adv_logits": clean.clone()}, {})) == 0.0


def test_adv_kl_is_on_probabilities_not_raw_logits() -> None:
    """Shifting a row's logits changes nothing a softmax sees; a KL on raw logits would move."""
    g = torch.Generator().manual_seed(1)
    clean, adv = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    shift = torch.randn(6, 1, generator=g) * 5
    base = AdvKL()({"logits": clean, "adv_logits": adv}, {})
    torch.testing.assert_close(AdvKL()({"logits": clean + shift, "adv_logits": adv}, {}), base)
    same = AdvKL()({"logits": clean, "adv_logits": clean + shift}, {})
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_adv_kl_sends_gradients_to_both_passes() -> None:
    clean = torch.randn(5, 4, requires_grad=True)
    adv = torch.randn(5, 4, requires_grad=True)
    AdvKL()({"logits": clean, "adv_logits": adv}, {}).backward()
    assert clean.grad.abs().sum() > 0 and adv.grad.abs().sum() > 0


def reference_info_nce(clean: torch.Tensor, adv: torch.Tensor, tau: float) -> torch.Tensor:
    c = [v / v.norm() for v in clean]
    a = [v / v.norm() for v in adv]
    n = len(c)

    def one_way(x: list[torch.Tensor], y: list[torch.Tensor]) -> float:
        total = 0.0
        for i in range(n):
            logits = [float(x[i] @ y[j]) / tau for j in range(n)]
            total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
        return total / n

    return torch.tensor(0.5 * (one_way(c, a) + one_way(a, c)))


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_adv_contrastive_matches_a_reference_info_nce(tau: float) -> None:
    g = torch.Generator().manual_seed(2)
    clean, adv = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g) * 3
    got = AdvContrastive(tau)({"pooled": clean, "adv_pooled": adv}, {})
    torch.testing.assert_close(got, reference_info_nce(clean, adv, tau), rtol=1e-4, atol=1e-4)


def test_adv_contrastive_is_lower_for_matching_pairs_than_for_shuffled_ones() -> None:
    g = torch.Generator().manual_seed(3)
    clean = torch.randn(8, 5, generator=g)
    term = AdvContrastive(0.1)
    matched = term({"pooled": clean, "adv_pooled": clean.clone()}, {})
    shuffled = term({"pooled": clean, "adv_pooled": clean[torch.randperm(8, generator=g)]}, {})
    assert float(matched) < float(shuffled)


def test_adv_ce_ignores_unlabelled_rows_and_is_zero_without_labels() -> None:
    g = torch.Generator().manual_seed(4)
    adv = torch.randn(8, 4, generator=g, requires_grad=True)
    labels = torch.tensor([0, -1, 2, 3, -1, 1, 0, -1])
    got = AdvCE()({"logits": torch.zeros(8, 4), "adv_logits": adv}, {"labels": labels})
    keep = labels >= 0
    want = -adv[keep].log_softmax(-1)[torch.arange(int(keep.sum())), labels[keep]].mean()
    torch.testing.assert_close(got, want)
    moved = adv.detach().clone()
    moved[~keep] += 10 * torch.randn(int((~keep).sum()), 4, generator=g)
    torch.testing.assert_close(AdvCE()({"adv_logits": moved}, {"labels": labels}), want.detach())
    none = AdvCE()({"adv_logits": adv}, {"labels": torch.full((8,), -1)})
    none.backward()
    assert float(none.detach()) == 0.0 and adv.grad is not None and torch.all(adv.grad == 0)


def test_registry_builds_the_terms_and_carries_the_norm_only_when_one_is_on() -> None:
    loss = build_loss(loss_cfg({"hard_ce": 1.0, **dict.fromkeys(ADV, 0.5)}, 3.0, 0.2), ESCI)
    assert set(loss.terms) == {"hard_ce", *ADV} and loss.adversarial_norm == 3.0
    assert loss.terms["adv_contrastive"].temperature == 0.2
    off = build_loss(loss_cfg({"hard_ce": 1.0, **dict.fromkeys(ADV, 0.0)}), ESCI)
    assert set(off.terms) == {"hard_ce"} and off.adversarial_norm is None


# -- the training step ----------------------------------------------------------------------


def test_a_step_with_every_term_logs_them_and_trains_every_parameter() -> None:
    module = student({"hard_ce": 1.0, "adv_ce": 1.0, "adv_kl": 1.0, "adv_contrastive": 0.5})
    flags = {n: p.requires_grad for n, p in module.named_parameters()}
    calls = count_forwards(module)
    total = module.training_step(pair_batch(), 0)
    assert len(calls) == 2
    total.backward()
    for name in ("hard_ce", *ADV):
        value = module.logged[f"train/loss/{name}"]
        assert math.isfinite(value) and value != 0.0, name
    terms = {n: module.logged[f"train/loss/{n}"] for n in ("hard_ce", *ADV)}
    weighted = terms["hard_ce"] + terms["adv_ce"] + terms["adv_kl"] + 0.5 * terms["adv_contrastive"]
    assert module.logged["train/loss"] == pytest.approx(weighted, rel=1e-5)
    for name, p in module.net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert {n: p.requires_grad for n, p in module.named_parameters()} == flags


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_the_second_pass_runs_only_when_an_adversarial_term_is_on(weight: float) -> None:
    module = student({"hard_ce": 1.0, **dict.fromkeys(ADV, weight)})
    calls = count_forwards(module)
    module.training_step(pair_batch(), 0).backward()
    assert (module.adversarial is None) is (weight == 0.0)
    assert len(calls) == (2 if weight else 1)
    assert ("train/loss/adv_kl" in module.logged) is bool(weight)


def test_a_frozen_word_table_stays_frozen_and_is_still_perturbed() -> None:
    module = student({"hard_ce": 1.0, "adv_kl": 1.0}, freeze=True)
    table = module.net.encoder.get_input_embeddings().weight
    module.training_step(pair_batch(), 0).backward()
    assert not table.requires_grad and table.grad is None
    assert module.logged["train/loss/adv_kl"] > 0


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_a_step_in_bf16_runs_and_backpropagates(precision: str) -> None:
    module = student({"hard_ce": 1.0, **dict.fromkeys(ADV, 1.0)})
    if precision == "bf16-true":
        module.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        total = module.training_step(pair_batch(), 0)
    total.backward()
    assert torch.isfinite(total) and module.net.head.weight.grad is not None
    assert all(math.isfinite(module.logged[f"train/loss/{n}"]) for n in ADV)


def test_evaluation_never_perturbs() -> None:
    module = student({"hard_ce": 1.0, **dict.fromkeys(ADV, 1.0)}).eval()
    b = pair_batch()
    calls = count_forwards(module)
    with torch.no_grad():
        got = module.eval_outputs(b)
        plain = module.net(**{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    assert len(calls) == 2  # eval_outputs' one forward, then the plain one above
    torch.testing.assert_close(torch.from_numpy(got["probs"]), plain["logits"].softmax(-1))


def test_adversarial_terms_need_an_embedding_net_and_a_clean_term() -> None:
    loss = build_loss(loss_cfg({"hard_ce": 1.0, "adv_kl": 1.0}), ESCI)
    tower = TwoTower(tiny_encoder(), None, num_labels=4)
    with pytest.raises(ValueError, match="embeddings"):
        StudentModule(tower, loss, ESCI, {"lr": 1e-3, "weight_decay": 0.0})
    only_adv = build_loss(loss_cfg({"adv_kl": 1.0}), ESCI)
    net = CrossEncoder(tiny_encoder(), num_labels=4)
    with pytest.raises(ValueError, match="clean term"):
        StudentModule(net, only_adv, ESCI, {"lr": 1e-3, "weight_decay": 0.0})


def test_training_end_to_end_in_bf16_logs_every_adversarial_term(
    tmp_path: Path, shared_data_root: Path
) -> None:
    overrides = {f"loss.weights.{n}": 0.5 for n in ADV}
    cfg = compose(
        QUICKSTART,
        tiny_overrides(
            tmp_path / "runs",
            shared_data_root,
            **overrides,
            **{
                "loss.adversarial.norm": 2.5,
                "trainer.max_steps": 3,
                "trainer.precision": "bf16-mixed",
                "data.max_length": 24,
            },
        ),
    )
    assert build_loss(cfg.loss, ESCI).adversarial_norm == 2.5
    run = run_training(cfg)
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    for name in ADV:
        values = [s.value for s in acc.Scalars(f"train/loss/{name}")]
        assert values and all(math.isfinite(v) and v != 0.0 for v in values), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and 0.0 <= metrics["test"]["overall"]["ndcg@10"] <= 1.0
