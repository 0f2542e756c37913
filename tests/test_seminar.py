"""SEMINAR: user histories never hold a future event or the target pair; the student's search
units and PSU outputs; pretraining, saving and restoring its weights, PQ attention in training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from relkd.behavior.user_sequences import TIME_BITS, UserSequences
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import ConfigError, DataError
from relkd.nets.seminar import Seminar
from relkd.train import run_training
from tests.conftest import REPO, tiny_overrides
from tests.datamodule_fixtures import make_dataset

SEMINAR = REPO / "experiments" / "seminar"


# ---- user sequences ------------------------------------------------------------------------


def _with_behavior(tmp_path: Path, rows: list[tuple], drop: str | None = None) -> CanonicalDataset:
    """make_dataset's tables plus a behaviour log of (query, item, clicks, user, time) rows."""
    base = make_dataset(tmp_path / "base", n_queries=6, items_per_query=4)
    log = {
        "query_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "impressions": [1] * len(rows),
        "clicks": [r[2] for r in rows],
        "user_id": [r[3] for r in rows],
        "timestamp": [r[4] for r in rows],
    }
    if drop:
        log.pop(drop)
    tables = {t: base.table(t) for t in ("items", "queries", "pairs")}
    tables["behavior"] = pa.table(log)
    return CanonicalDataset.write(
        tmp_path / "ds", tables, name="tiny", label_scheme="esci", source={"kind": "test"}
    )


# q0's items are i0..i3, q1's i4..i7, q2's i8..i11 (make_dataset: 4 items per query)
LOG = [
    ("q0", "i0", 1, "u1", 1000),
    ("q1", "i4", 1, "u1", 2000),
    ("q2", "i8", 0, "u1", 2500),  # an impression without a click: never in a history
    ("q0", "i1", 1, "u1", 3000),
    ("q1", "i5", 1, "u2", 1500),
    ("q0", "i2", 1, "u2", 4000),  # q0's last search
]


def _rows(ds: CanonicalDataset) -> tuple[dict[str, int], dict[str, int]]:
    q = ds.table("queries", ["query_id"])["query_id"].to_pylist()
    i = ds.table("items", ["item_id"])["item_id"].to_pylist()
    return {k: n for n, k in enumerate(q)}, {k: n for n, k in enumerate(i)}


def _events(seq: UserSequences, idx: np.ndarray, mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(query row, item row, time) of one history row."""
    out = []
    for j, m in zip(idx, mask, strict=True):
        if m:
            t = int(seq.cl_key[j] & ((1 << TIME_BITS) - 1)) + seq.t0
            out.append((int(seq.cl_query[j]), int(seq.cl_item[j]), t))
    return out


def test_history_holds_only_clicks_strictly_before_the_moment(tmp_path: Path) -> None:
    ds = _with_behavior(tmp_path, LOG)
    seq = UserSequences.from_dataset(ds)
    qr, ir = _rows(ds)
    u1 = 0  # users sorted by id: u1, u2
    idx, mask = seq.history(np.array([u1, u1, u1, -1]), np.array([3000, 3001, 999, 5000]), 8)
    # at 3000 the click at 3000 is not yet history (strictly before); the impression is never
    assert _events(seq, idx[0], mask[0]) == [(qr["q0"], ir["i0"], 1000), (qr["q1"], ir["i4"], 2000)]
    assert [e[2] for e in _events(seq, idx[1], mask[1])] == [1000, 2000, 3000]
    assert mask[2].sum() == 0  # before the user's first click
    assert mask[3].sum() == 0  # no user
    # the most recent max_length, oldest first
    idx, mask = seq.history(np.array([u1]), np.array([3001]), 2)
    assert [e[2] for e in _events(seq, idx[0], mask[0])] == [2000, 3000]


def test_history_never_holds_the_target_pair(tmp_path: Path) -> None:
    ds = _with_behavior(tmp_path, LOG)
    seq = UserSequences.from_dataset(ds)
    qr, ir = _rows(ds)
    exclude = (np.array([qr["q1"]]), np.array([ir["i4"]]))
    idx, mask = seq.history(np.array([0]), np.array([3001]), 2, exclude=exclude)
    # (q1, i4) is dropped and the window still fills up to max_length with older clicks
    assert _events(seq, idx[0], mask[0]) == [(qr["q0"], ir["i0"], 1000), (qr["q0"], ir["i1"], 3000)]


def test_pair_context_is_its_query_last_search(tmp_path: Path) -> None:
    ds = _with_behavior(tmp_path, LOG)
    seq = UserSequences.from_dataset(ds)
    pairs = ds.table("pairs", ["query_id", "item_id"]).to_pylist()
    for row, p in enumerate(pairs):
        if p["query_id"] == "q0":  # last searched by u2 at 4000
            assert seq.ctx_user[row] == 1 and seq.ctx_time[row] < 4000
            assert seq.ctx_clicked[row] == (p["item_id"] == "i2")
        elif p["query_id"] in ("q3", "q4", "q5"):  # never searched: no context
            assert seq.ctx_user[row] == -1
    # u2's history at q0's context holds its earlier click, not the q0 click itself
    row = next(r for r, p in enumerate(pairs) if p["item_id"] == "i2")
    qr, ir = _rows(ds)
    idx, mask = seq.history(seq.ctx_user[[row]], seq.ctx_time[[row]], 8)
    assert _events(seq, idx[0], mask[0]) == [(qr["q1"], ir["i5"], 1500)]


@pytest.mark.parametrize("column", ["user_id", "timestamp"])
def test_a_log_without_users_or_times_is_a_one_line_error(tmp_path: Path, column: str) -> None:
    ds = _with_behavior(tmp_path, LOG, drop=column)
    with pytest.raises(DataError, match=rf"behavior\.parquet: column {column} missing"):
        UserSequences.from_dataset(ds)


# ---- the net -------------------------------------------------------------------------------

B, L, N, TQ, TI, V, ITEMS = 4, 6, 3, 5, 7, 40, 30


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def ids(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (torch.rand(*shape, generator=g) < 0.8).long()
        mask[..., 0] = 1
        return torch.randint(5, V, shape, generator=g) * mask, mask

    hist_mask = torch.ones(B, L, dtype=torch.long)
    hist_mask[1, 3:] = 0
    hist_mask[2] = 0  # a cold row: no history
    b: dict[str, torch.Tensor] = {"hist_mask": hist_mask}
    for prefix, shape in (("seq", (B,)), ("hist", (B, L)), ("neg", (B, N))):
        b[f"{prefix}_item_ids"], b[f"{prefix}_item_mask"] = ids(*shape, TI)
        # item texts are a function of the item row, as in a real catalogue
        b[f"{prefix}_item_row"] = torch.randint(0, ITEMS, shape, generator=g)
    table = torch.randint(5, V, (ITEMS, TI), generator=g)
    attrs = torch.randint(0, 3, (ITEMS, 3), generator=g)
    for prefix in ("seq", "hist", "neg"):
        b[f"{prefix}_item_ids"] = table[b[f"{prefix}_item_row"]]
        b[f"{prefix}_item_attr"] = attrs[b[f"{prefix}_item_row"]]
        b[f"{prefix}_item_mask"] = torch.ones_like(b[f"{prefix}_item_ids"])
    qtable = torch.randint(5, V, (10, TQ), generator=g)
    b["seq_query_row"] = torch.randint(0, 10, (B,), generator=g)
    b["hist_query_row"] = torch.randint(0, 10, (B, L), generator=g)
    for prefix in ("seq", "hist"):
        b[f"{prefix}_query_ids"] = qtable[b[f"{prefix}_query_row"]]
        b[f"{prefix}_query_mask"] = torch.ones_like(b[f"{prefix}_query_ids"])
    return b


def _net(**kw: object) -> Seminar:
    torch.manual_seed(0)
    args = dict(
        vocab_size=V,
        num_items=ITEMS,
        attr_sizes=[3, 3, 3],
        num_labels=4,
        gains=[1.0, 0.1, 0.01, 0.0],
        hidden=16,
        heads=2,
        top_k=3,
        dropout=0.0,
        catalogue="test",
    )
    args.update(kw)
    return Seminar(**args).eval()  # type: ignore[arg-type]


def test_unique_evaluates_once_per_key_and_spreads_back() -> None:
    keys = torch.tensor([5, -1, 5, 2, -1, 2, 7])
    calls: list[int] = []

    def fn(at: torch.Tensor) -> torch.Tensor:
        calls.append(len(at))
        return keys[at].float().unsqueeze(-1) * 10

    out = Seminar._unique(keys, fn)
    assert calls == [4]
    torch.testing.assert_close(out.squeeze(-1), keys.float() * 10)


def test_dedup_forward_equals_a_direct_computation() -> None:
    net, b = _net(), _batch()
    out = net(**b)
    query = net._text(b["seq_query_ids"], b["seq_query_mask"])
    views = net.item_views(
        b["seq_item_ids"], b["seq_item_mask"], b["seq_item_row"], b["seq_item_attr"]
    )
    item = net.fuse_item(views)
    torch.testing.assert_close(out["seq_query"], query)
    torch.testing.assert_close(out["seq_views"], views)
    torch.testing.assert_close(out["seq_pair"], net.fuse_pair(query, item))
    n_views = net.item_views(
        b["neg_item_ids"], b["neg_item_mask"], b["neg_item_row"], b["neg_item_attr"]
    )
    neg = net.fuse_pair(query.unsqueeze(1).expand(-1, N, -1), net.fuse_item(n_views))
    torch.testing.assert_close(out["seq_neg_pair"], neg)
    assert out["logits"].shape == (B, 4)


def test_before_fine_tuning_the_ranking_is_the_psu_similarity() -> None:
    net, b = _net(), _batch()
    out = net(**b)
    sim = torch.nn.functional.cosine_similarity(out["seq_query"], out["seq_item"], dim=-1)
    torch.testing.assert_close(out["logits"], sim.unsqueeze(-1) * net.sim_weight)


def test_a_row_without_history_has_no_user_state_or_interest() -> None:
    net, b = _net(), _batch()
    out = net(**b)
    assert torch.all(out["seq_user"][2] == 0)
    assert torch.all(out["features"][2, 48:] == 0)  # interest and interest * item
    assert torch.isfinite(out["logits"]).all()


def test_without_history_every_row_is_cold() -> None:
    net, b = _net(use_history=False), _batch()
    out = net(**b)
    assert torch.all(out["seq_user"] == 0)
    assert torch.all(out["features"][:, 48:] == 0)
    b2 = dict(b, hist_item_row=(b["hist_item_row"] + 1) % ITEMS)
    torch.testing.assert_close(net(**b2)["logits"], out["logits"])


def test_history_changes_the_interest_only_through_real_events() -> None:
    net, b = _net(), _batch()
    base = net(**b)["features"]
    b2 = dict(b)
    b2["hist_item_row"] = b["hist_item_row"].clone()
    b2["hist_item_row"][1, 4] = (b["hist_item_row"][1, 4] + 1) % ITEMS  # a padded event
    torch.testing.assert_close(net(**b2)["features"], base)
    b2["hist_item_row"][1, 0] = (b["hist_item_row"][1, 0] + 1) % ITEMS  # a real one
    assert not torch.allclose(net(**b2)["features"][1], base[1])


def test_pq_selection_with_exact_codebooks_equals_exact_selection() -> None:
    exact, pq = _net(top_k=3), _net(top_k=3, attention="pq", pq_subquantizers=4, pq_bits=8)
    pq.load_state_dict(exact.state_dict(), strict=False)
    b = _batch()
    # codebooks with more centroids than history vectors reproduce them exactly
    pq.prepare_fit([b])
    assert pq.pq.fitted
    torch.testing.assert_close(pq(**b)["logits"], exact(**b)["logits"])


# ---- config, training, save / load --------------------------------------------------------


def test_compose_refuses_bad_seminar_settings(tmp_path: Path) -> None:
    quick = REPO / "experiments" / "quickstart.yaml"
    with pytest.raises(ConfigError, match=r"loss\.weights"):
        compose(quick, ["loss.weights.next_pair=1"])
    with pytest.raises(ConfigError, match=r"data\.sequences\.train_on"):
        compose(quick, ["data.sequences.train_on=events"])
    with pytest.raises(ConfigError, match=r"model\.seminar\.heads"):
        compose(SEMINAR / "finetune_scratch.yaml", ["model.seminar.heads=3"])
    with pytest.raises(ConfigError, match=r"model\.seminar\.pq_subquantizers"):
        compose(SEMINAR / "finetune_scratch.yaml", ["model.seminar.pq_subquantizers=5"])


def _tiny(tmp_path: Path, data_root: Path, **extra: object) -> list[str]:
    values: dict[str, object] = {
        "data.teacher_cache": "null",
        "loss.weights.soft_kl": 0,
        "model.seminar.hidden": 16,
        "model.seminar.heads": 2,
        "model.seminar.pq_subquantizers": 4,
        "model.seminar.pq_bits": 4,
        "model.seminar.text": "learned",
        "data.batch_size": 32,
        "data.sequences.max_length": 16,
    }
    values.update(extra)
    return tiny_overrides(tmp_path / "runs", data_root, **values)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    tmp = tmp_path_factory.mktemp("seminar_pretrain")
    cfg = compose(SEMINAR / "pretrain.yaml", _tiny(tmp, shared_data_root))
    return run_training(cfg)


def test_pretraining_trains_on_log_events_with_its_three_terms(pretrained: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in sorted(pretrained.glob("events.out.tfevents*")):  # fit, then test
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"train/loss/next_pair", "train/loss/seq_relevance", "train/loss/view_align"} <= tags
    assert "train/loss/hard_ce" not in tags
    metrics = json.loads((pretrained / "metrics.json").read_text())
    assert metrics["test"]["num_pairs"] > 0


def test_fine_tuning_restores_the_pretrained_weights(
    tmp_path: Path, shared_data_root: Path, pretrained: Path
) -> None:
    from relkd.nets.seminar_build import build_seminar
    from relkd.runs.dataset_resolver import resolve_dataset
    from relkd.runs.student_factory import encoder_spec

    cfg = compose(
        SEMINAR / "finetune_pretrained.yaml",
        _tiny(tmp_path, shared_data_root, **{"model.seminar.init_from": pretrained}),
    )
    data_dir = resolve_dataset(cfg.data)
    net = build_seminar(cfg, encoder_spec(cfg, data_dir), data_dir)
    ckpt = torch.load(pretrained / "checkpoints" / "best.ckpt", weights_only=True)
    saved = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, saved[name], msg=name)
    # another shape, or another catalogue, is refused in one line
    wide = compose(
        SEMINAR / "finetune_pretrained.yaml",
        _tiny(
            tmp_path,
            shared_data_root,
            **{"model.seminar.init_from": pretrained, "model.seminar.hidden": 32},
        ),
    )
    with pytest.raises(ConfigError, match="has shape"):
        build_seminar(wide, encoder_spec(wide, data_dir), data_dir)
    ckpt["state_dict"]["net.catalogue_digest"] = torch.zeros(32, dtype=torch.uint8)
    torch.save(ckpt, tmp_path / "other.ckpt")
    other = compose(
        SEMINAR / "finetune_pretrained.yaml",
        _tiny(tmp_path, shared_data_root, **{"model.seminar.init_from": tmp_path / "other.ckpt"}),
    )
    with pytest.raises(ConfigError, match="another catalogue"):
        build_seminar(other, encoder_spec(other, data_dir), data_dir)


def test_pq_fine_tuning_fits_codebooks_on_the_pretrained_embeddings(
    tmp_path: Path, shared_data_root: Path, pretrained: Path
) -> None:
    cfg = compose(
        SEMINAR / "finetune_pretrained_pq.yaml",
        _tiny(tmp_path, shared_data_root, **{"model.seminar.init_from": pretrained}),
    )
    run = run_training(cfg)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    state = ckpt["state_dict"]
    books = [k for k in state if k.startswith("net.pq.") and k.endswith("codebooks")]
    assert len(books) == 4  # one quantiser per view
    assert all(bool(v) for k, v in state.items() if k.endswith("fitted"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["slices"]) == {"clicked", "cold"}


def test_sequences_build_command_builds_then_reuses(
    tmp_path: Path, shared_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from relkd.cli import main

    overrides = tiny_overrides(tmp_path / "runs", shared_data_root)
    overrides = [o for o in overrides if not o.startswith("data.cache_dir")]
    overrides.append(f"data.cache_dir={tmp_path / 'cache' / 'tokenized'}")
    assert main(["sequences", "build", str(REPO / "experiments/quickstart.yaml"), *overrides]) == 0
    built = list((tmp_path / "cache" / "sequences").iterdir())
    assert len(built) == 1 and (built[0] / "manifest.json").is_file()
    stamp = (built[0] / "manifest.json").stat().st_mtime_ns
    assert main(["sequences", "build", str(REPO / "experiments/quickstart.yaml"), *overrides]) == 0
    assert (built[0] / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert "history length" in capsys.readouterr().out


def test_a_pipeline_step_can_only_start_from_an_earlier_student(tmp_path: Path) -> None:
    from relkd.pipeline.pipeline_config import load_pipeline

    good = load_pipeline(REPO / "experiments/pipeline/seminar.yaml")
    assert good.students[2].pretrained == good.students[0].name
    bad = tmp_path / "p.yaml"
    bad.write_text(
        "students:\n"
        "  - {name: a, experiment: experiments/seminar/finetune_pretrained.yaml, pretrained: b}\n"
        "  - {name: b, experiment: experiments/seminar/pretrain.yaml}\n"
    )
    with pytest.raises(ConfigError, match=r"students\[0\]\.pretrained: 'b' is not an earlier"):
        load_pipeline(bad)
