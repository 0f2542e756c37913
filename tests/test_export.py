"""``relkd export RUN_DIR --format onnx``: trained tiny students exported to ONNX.

Each test pins one failure mode: graphs traced at one shape that break at another (dynamic
batch and sequence), onnxruntime drifting from PyTorch, an item table that is not the item
tower's output, a teacher run or a missing checkpoint exported anyway, and an existing export
(or any other folder) silently overwritten.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from relkd.artifacts.atomic_files import sha256_file
from relkd.cli import main
from relkd.config import compose
from relkd.errors import ConfigError, DataError, StaleArtifactError
from relkd.serving import OnnxStudent, export_onnx, load_student
from relkd.serving.onnx_export import ExportParityError
from relkd.train import run_training
from tests.conftest import QUICKSTART, tiny_overrides

TOL = 1e-4


def train(root: Path, data_root: Path, **extra: object) -> Path:
    values = {"trainer.limit_train_batches": 3, **extra}
    return run_training(compose(QUICKSTART, tiny_overrides(root, data_root, **values)))


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    return train(tmp_path_factory.mktemp("export_ce"), shared_data_root)


@pytest.fixture(scope="module")
def tt_run(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    return train(
        tmp_path_factory.mktemp("export_tt"),
        shared_data_root,
        **{"model.student": "two_tower", "model.pooling": "mean", "data.max_length": 24},
    )


@pytest.fixture(scope="module")
def ce_export(ce_run: Path) -> tuple[Path, str]:
    """The cross-encoder exported through the CLI (default folder); its printed summary."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", str(ce_run), "--format", "onnx"]) == 0
    return ce_run / "export" / "onnx", out.getvalue()


@pytest.fixture(scope="module")
def tt_export(tt_run: Path) -> Path:
    return export_onnx(tt_run).out


def other_shape(batch: dict, keys: tuple[str, ...], extra: int = 5) -> dict[str, np.ndarray]:
    """The batch's model inputs widened by ``extra`` padding columns (mask 0)."""
    return {k: torch.nn.functional.pad(batch[k], (0, extra)).numpy() for k in keys if k in batch}


def files_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_mtime_ns, f.stat().st_size) for f in folder.iterdir()}


def test_cross_encoder_onnx_matches_pytorch_at_other_shapes(ce_run: Path, ce_export) -> None:
    folder, _ = ce_export
    manifest = json.loads((folder / "export.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "model.onnx"]
    assert manifest["student"] == "cross_encoder" and manifest["exporter"] == "dynamo"
    assert manifest["labels"] == ["Exact", "Substitute", "Complement", "Irrelevant"]
    assert manifest["gains"] == [1.0, 0.1, 0.01, 0.0]
    assert manifest["parity"]["passed"] and manifest["parity"]["max"] <= TOL
    traced = manifest["parity"]["example_shapes"]["model.onnx"]["input_ids"]

    student = load_student(ce_run)
    dm = student.datamodule()
    rows = dm.rows("val")[:7]
    batch = dm.eval_collator(rows)
    feed = other_shape(batch, ("input_ids", "attention_mask", "token_type_ids"))
    assert feed["input_ids"].shape[0] != traced[0] and feed["input_ids"].shape[1] != traced[1]
    onnx = OnnxStudent(folder)
    assert all(isinstance(d, str) for d in onnx.sessions["model.onnx"].get_inputs()[0].shape)
    got = onnx.logits(**feed)
    with torch.inference_mode():
        want = student.net(**{k: torch.from_numpy(v) for k, v in feed.items()})["logits"]
    np.testing.assert_allclose(got, want.numpy(), atol=TOL, rtol=0)
    # one pair at a time: the serving batch of 1
    one = {k: v[:1] for k, v in feed.items()}
    np.testing.assert_allclose(onnx.logits(**one), want.numpy()[:1], atol=TOL, rtol=0)


def test_two_tower_item_table_is_the_item_tower_and_serves_logits(
    tt_run: Path, tt_export: Path
) -> None:
    manifest = json.loads((tt_export / "export.json").read_text())
    assert set(manifest["graphs"]) == {"query_tower.onnx", "item_tower.onnx", "scorer.onnx"}
    student = load_student(tt_run)
    dm = student.datamodule()
    table = np.load(tt_export / "item_embeddings.npy")
    ids = json.loads((tt_export / "item_ids.json").read_text())
    items = student.dataset.table("items", ["item_id"]).column("item_id").to_pylist()
    assert table.dtype == np.float32 and table.shape == (len(items), student.net.hidden_size)
    assert ids == items

    batch = dm.eval_collator(dm.rows("val")[:6])
    rows = batch["item_index"].numpy()
    net = student.net
    with torch.inference_mode():
        v = net.encode_item(batch["item_input_ids"], batch["item_attention_mask"])
        u = net.encode_query(batch["query_input_ids"], batch["query_attention_mask"])
        want = net(
            batch["query_input_ids"],
            batch["query_attention_mask"],
            batch["item_input_ids"],
            batch["item_attention_mask"],
        )["logits"].numpy()
    np.testing.assert_allclose(table[rows], v.numpy(), atol=1e-5, rtol=0)

    onnx = OnnxStudent(tt_export)
    q = other_shape(batch, ("query_input_ids", "query_attention_mask"), extra=3)
    u_ort = onnx.query_embedding(q["query_input_ids"], q["query_attention_mask"])
    np.testing.assert_allclose(u_ort, u.numpy(), atol=TOL, rtol=0)
    i = other_shape(batch, ("item_input_ids", "item_attention_mask"), extra=2)
    v_ort = onnx.item_embedding(i["item_input_ids"], i["item_attention_mask"])
    np.testing.assert_allclose(v_ort, v.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(onnx.compare(u_ort, table[rows]), want, atol=TOL, rtol=0)
    # one query against its cached candidates: one query-tower pass + the scorer
    first = onnx.score_items(q["query_input_ids"][:1], q["query_attention_mask"][:1], rows)
    with torch.inference_mode():
        ref = net.compare(u[:1].expand(len(rows), -1), v)["logits"].numpy()
    np.testing.assert_allclose(first, ref, atol=TOL, rtol=0)


def test_cli_prints_the_summary_and_reuses_an_export_of_the_same_checkpoint(
    ce_run: Path, ce_export, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, summary = ce_export
    assert summary.startswith(f"{folder}: cross-encoder exported (dynamo exporter, opset 18")
    assert "parity vs PyTorch on 32 test pairs" in summary and "model.onnx" in summary
    before = files_state(folder)
    assert main(["export", str(ce_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{folder}: already holds the ONNX export of this checkpoint")
    assert files_state(folder) == before  # nothing rewritten


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("relkd: error: ") and err.count("\n") == 1, err
    return err


def test_teacher_run_and_missing_checkpoint_are_refused(
    ce_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = tmp_path / "teacher_run"
    shutil.copytree(ce_run / "checkpoints", teacher / "checkpoints")
    config = teacher / "config.yaml"
    text = (ce_run / "config.yaml").read_text()
    assert "\ntask: student\n" in text
    config.write_text(text.replace("\ntask: student\n", "\ntask: teacher\n"))
    err = one_line_error(capsys, ["export", str(teacher)])
    assert f"{config}: task is 'teacher'; relkd export serves students" in err
    with pytest.raises(ConfigError, match="task is 'teacher'"):
        export_onnx(teacher, out=tmp_path / "t_out")
    assert not (teacher / "export").exists() and not (tmp_path / "t_out").exists()

    err = one_line_error(capsys, ["export", str(ce_run), "--ckpt", str(tmp_path / "nope.ckpt")])
    assert f"--ckpt: {tmp_path / 'nope.ckpt'} not found" in err
    bare = tmp_path / "bare_run"
    bare.mkdir()
    shutil.copy(ce_run / "config.yaml", bare / "config.yaml")
    err = one_line_error(capsys, ["export", str(bare)])
    assert f"{bare / 'checkpoints' / 'best.ckpt'} not found" in err
    err = one_line_error(capsys, ["export", str(tmp_path / "not_a_run")])
    assert "config.yaml: not found" in err


def test_existing_folders_are_never_silently_overwritten(
    ce_run: Path, ce_export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = ce_export
    # a folder that is not an export: refused, even with overwrite
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    err = one_line_error(capsys, ["export", str(ce_run), "--out", str(other)])
    assert "is not a relkd ONNX export" in err
    with pytest.raises(DataError, match="not a relkd ONNX export"):
        export_onnx(ce_run, out=other, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]

    # an export of another checkpoint: refused, files untouched
    ckpt = torch.load(ce_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["state_dict"]["net.head.bias"] = ckpt["state_dict"]["net.head.bias"] + 1.0
    changed = tmp_path / "changed.ckpt"
    torch.save(ckpt, changed)
    before = files_state(folder)
    err = one_line_error(capsys, ["export", str(ce_run), "--ckpt", str(changed)])
    assert f"{folder}: holds another export (checkpoint_sha256" in err
    assert files_state(folder) == before

    # the same checkpoint, but a file of the export edited since: refused, not reused
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with open(copy / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(StaleArtifactError, match=r"model\.onnx: sha256"):
        export_onnx(ce_run, out=copy)


def test_parity_failure_writes_nothing_fallback_and_overwrite(
    ce_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exports" / "onnx"
    with pytest.raises(ExportParityError, match=r"differs from PyTorch by .* > tolerance -1"):
        export_onnx(ce_run, out=out, exporter="torchscript", tolerance=-1.0)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no staging left behind

    # the dynamo exporter failing: TorchScript with dynamic_axes, and the reason recorded
    real = torch.onnx.export

    def broken_dynamo(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("dynamo says no")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", broken_dynamo)
    res = export_onnx(ce_run, out=out)
    m = res.manifest
    assert (
        m["exporter"] == "torchscript" and "dynamo says no" in m["exporter_fallback"]["model.onnx"]
    )
    assert m["parity"]["passed"] and m["parity"]["max"] <= TOL
    assert "torchscript exporter" in res.summary()

    # overwrite=True (library only) replaces an earlier export of another checkpoint
    ckpt = torch.load(ce_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["state_dict"]["net.head.bias"] = ckpt["state_dict"]["net.head.bias"] - 1.0
    changed = tmp_path / "changed.ckpt"
    torch.save(ckpt, changed)
    with pytest.raises(DataError, match="holds another export"):
        export_onnx(ce_run, out=out, ckpt=changed)
    res = export_onnx(ce_run, out=out, ckpt=changed, overwrite=True)
    on_disk = json.loads((out / "export.json").read_text())
    assert not res.reused and on_disk["checkpoint_sha256"] == sha256_file(changed)
    assert sorted(p.name for p in out.parent.iterdir()) == ["onnx"]  # no backup left behind
