"""Bad inputs a new user may feed the CLI: each must end in ONE line ``relkd: error: ...`` naming
the file and the field, exit code 2, no traceback, nothing left behind, and inputs unchanged.

One table (:data:`CASES`) drives one parametrised test; docs/robustness.md ("Bad inputs, tested")
lists the same cases. Every case writes its bad input under its own folder (also the working
directory), so a snapshot of that folder (and of the shared trained run) before and after proves
that nothing was rewritten, deleted or half-made.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from relkd.cli import main
from relkd.config import compose
from relkd.train import run_training
from tests.conftest import QUICKSTART, tiny_overrides
from tests.datamodule_fixtures import make_dataset, write_teacher
from tests.fixtures_upstream import ESCI_PRODUCTS, write_esci, write_wands


@dataclass(frozen=True)
class Env:
    """What a case may use: its own folder, a trained tiny run and shared datasets."""

    tmp: Path
    run: Path  # a trained quickstart student run (esci labels)
    data_root: Path  # its datasets and tokenized caches
    wands: Path  # a small canonical dataset with the wands label scheme

    @property
    def best(self) -> Path:
        return self.run / "checkpoints" / "best.ckpt"

    def tiny(self, *extra: str) -> list[str]:
        return ["train", "quickstart", *tiny_overrides(self.tmp / "runs", self.data_root), *extra]


Setup = Callable[[Env], tuple[list[str], list[str]]]  # -> (argv, expected substrings)


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # what is wrong, for docs/robustness.md
    setup: Setup
    marks: tuple = ()


class _Planted:
    """Unpickling this runs ``os.makedirs(marker)``: proof that a file's pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.makedirs, (str(self.marker),))


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _ckpt(env: Env, name: str, write: Callable[[Path], object]) -> Path:
    path = env.tmp / name
    write(path)
    return path


def _eval(env: Env, ckpt: Path) -> list[str]:
    return ["eval", str(env.run), "--ckpt", str(ckpt)]


# ---- checkpoints ----------------------------------------------------------------------------


def ckpt_truncated(env: Env):
    path = _ckpt(env, "trunc.ckpt", lambda p: p.write_bytes(env.best.read_bytes()))
    _truncate(path)
    return _eval(env, path), [str(path), "--ckpt", "not a PyTorch checkpoint archive"]


def ckpt_empty(env: Env):
    path = _ckpt(env, "empty.ckpt", lambda p: p.write_bytes(b""))
    return _eval(env, path), [str(path), "--ckpt", "empty file"]


def ckpt_foreign(env: Env):
    path = _ckpt(env, "other.ckpt", lambda p: torch.save({"weight": torch.zeros(2)}, p))
    return _eval(env, path), [str(path), "--ckpt", "pytorch-lightning_version"]


def ckpt_bare_pickle(env: Env):
    marker = env.tmp / "PICKLE_RAN"
    path = _ckpt(env, "bare.ckpt", lambda p: p.write_bytes(pickle.dumps(_Planted(marker))))
    return _eval(env, path), [str(path), "--ckpt", "refused without reading it"]


def ckpt_pickle_with_code(env: Env):
    marker = env.tmp / "PICKLE_RAN"
    path = _ckpt(env, "code.ckpt", lambda p: torch.save(_Planted(marker), p))
    return _eval(env, path), [str(path), "--ckpt", "makedirs", "nothing in it was run"]


def ckpt_no_net_weights(env: Env):
    fake = {"pytorch-lightning_version": "2.6.0", "state_dict": {"w": torch.zeros(2)}}
    path = _ckpt(env, "nonet.ckpt", lambda p: torch.save(fake, p))
    return _eval(env, path), [str(path), "state_dict has no net.* weights"]


def ckpt_other_shape(env: Env):
    ckpt = torch.load(env.best, map_location="cpu", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if k.startswith("net.") and v.ndim == 2)
    ckpt["state_dict"][key] = torch.zeros(3, 5)
    path = _ckpt(env, "shape.ckpt", lambda p: torch.save(ckpt, p))
    return _eval(env, path), [str(path), f"field state_dict.{key} has shape (3, 5)"]


def eval_other_scheme(env: Env):
    argv = ["eval", str(env.run), "--data", str(env.wands)]
    return argv, [str(env.wands / "manifest.json"), "label_scheme is wands", "esci"]


def explain_truncated(env: Env):
    path = _ckpt(env, "trunc.ckpt", lambda p: p.write_bytes(env.best.read_bytes()))
    _truncate(path)
    argv = ["explain", "red mug", "a red mug", "--run", str(env.run), "--ckpt", str(path)]
    return argv, [str(path), "--ckpt", "not a PyTorch checkpoint archive"]


def export_pickle_with_code(env: Env):
    marker = env.tmp / "PICKLE_RAN"
    path = _ckpt(env, "code.ckpt", lambda p: torch.save(_Planted(marker), p))
    argv = ["export", str(env.run), "--ckpt", str(path), "--out", str(env.tmp / "export")]
    return argv, [str(path), "--ckpt", "not weights"]


# ---- experiment configs ---------------------------------------------------------------------


def train_path_without_kind(env: Env):
    return env.tiny(f"data.path={env.wands}"), ["command line", "data.path", "data.kind"]


def train_negative_batch_size(env: Env):
    return env.tiny("data.batch_size=-4"), ["command line", "data.batch_size", "> 0"]


def train_negative_lr(env: Env):
    return env.tiny("optim.lr=-1"), ["command line", "optim.lr"]


def train_negative_epochs(env: Env):
    return env.tiny("trainer.max_epochs=-1"), ["command line", "trainer.max_epochs"]


def train_unknown_key(env: Env):
    return env.tiny("data.bogus=1"), ["command line", "data.bogus"]


def train_unknown_loss_term(env: Env):
    return env.tiny("loss.weights.bogus=1"), ["command line", "loss.weights", "bogus"]


def train_yaml_not_mapping(env: Env):
    path = env.tmp / "exp.yaml"
    path.write_text("- data.batch_size=8\n- optim.lr=0.1\n")
    return ["train", str(path)], [str(path), "top level must be a mapping"]


def train_yaml_syntax(env: Env):
    path = env.tmp / "exp.yaml"
    path.write_text("data: {batch_size: 8\noptim: [\n")
    return ["train", str(path)], [str(path), "not valid YAML", "line"]


def train_yaml_wrong_type(env: Env):
    path = env.tmp / "exp.yaml"
    path.write_text("extends: quickstart\ndata:\n  batch_size: many\n")
    return ["train", str(path)], [str(path), "data.batch_size"]


def train_teacher_cache_other_dataset(env: Env):
    a, b = make_dataset(env.tmp / "data_a", seed=1), make_dataset(env.tmp / "data_b", seed=2)
    write_teacher(env.tmp / "cache_a", a)
    argv = env.tiny(
        "data.kind=path",
        f"data.path={b.root}",
        f"data.teacher_cache={env.tmp / 'cache_a'}",
        "loss.weights.soft_kl=0.5",
    )
    return argv, [str(env.tmp / "cache_a" / "manifest.json"), "dataset.tables"]


def train_store_other_tokenizer(env: Env):
    cache = env.tmp / "tokenized"
    shutil.copytree(env.data_root / "tokenized", cache)
    for manifest in cache.glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        data["inputs"]["tokenizer_name"] = "bert-base-uncased"
        data["inputs"]["vocab_sha256"] = "0" * 64
        manifest.write_text(json.dumps(data))
    return env.tiny(f"data.cache_dir={cache}"), ["manifest.json", "tokenizer_name"]


def teacher_train_bad_mode(env: Env):
    argv = ["teacher", "train", "teacher/embedded", f"output_dir={env.tmp / 'runs'}"]
    return [*argv, "teacher.mode=oracle"], ["command line", "teacher.mode", "oracle"]


def annotate_student_run(env: Env):
    return ["teacher", "annotate", str(env.run)], [str(env.run), "relkd_teacher.json"]


def annotate_zero_batch(env: Env):
    argv = ["teacher", "annotate", str(env.run), "--batch-size", "0"]
    return argv, ["relkd teacher annotate", "--batch-size", ">= 1"]


def finalize_not_a_cache(env: Env):
    folder = env.tmp / "not_a_cache"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return ["teacher", "cache", "finalize", str(folder)], [str(folder), "manifest.json"]


# ---- data import, validate, synth, bm25 ----------------------------------------------------


def import_esci_truncated_parquet(env: Env):
    src = write_esci(env.tmp / "esci")
    _truncate(src / ESCI_PRODUCTS)
    argv = ["data", "import", "esci", str(src), "--out", str(env.tmp / "out")]
    return argv, [str(src / ESCI_PRODUCTS), "Parquet"]


def import_esci_val_fraction(env: Env):
    src = write_esci(env.tmp / "esci")
    argv = ["data", "import", "esci", str(src), "--out", str(env.tmp / "out")]
    return [*argv, "--val-fraction", "1.5"], ["--val-fraction", "1.5"]


def import_wands_missing_column(env: Env):
    src = write_wands(env.tmp / "wands", label_header=["id", "query_id", "product_id", "grade"])
    argv = ["data", "import", "wands", str(src), "--out", str(env.tmp / "out")]
    return argv, [str(src / "label.csv"), "label"]


def import_wands_fractions(env: Env):
    src = write_wands(env.tmp / "wands")
    argv = ["data", "import", "wands", str(src), "--out", str(env.tmp / "out")]
    return [*argv, "--val-fraction", "0.6", "--test-fraction", "0.6"], ["val_fraction"]


def _table_files(env: Env, label: str = "Exact") -> tuple[Path, Path]:
    pairs, items = env.tmp / "pairs.parquet", env.tmp / "items.csv"
    rows = {"query_id": ["q1", "q1"], "item_id": ["i1", "i2"], "label": [label, "Irrelevant"]}
    rows["query"] = ["red mug", "red mug"]
    pq.write_table(pa.table(rows), pairs)
    items.write_text("item_id,title\ni1,a red mug\ni2,a blue chair\n")
    return pairs, items


def _import_table(env: Env, pairs: Path, items: Path) -> list[str]:
    argv = ["data", "import", "table", "--pairs", str(pairs), "--items", str(items)]
    return [*argv, "--scheme", "wands", "--out", str(env.tmp / "out")]


def import_table_truncated_parquet(env: Env):
    pairs, items = _table_files(env)
    _truncate(pairs)
    return _import_table(env, pairs, items), [str(pairs), "Parquet"]


def import_table_unknown_label(env: Env):
    pairs, items = _table_files(env, label="Maybe")
    return _import_table(env, pairs, items), [str(pairs), "label", "Maybe"]


def import_table_missing_items(env: Env):
    pairs, _ = _table_files(env)
    missing = env.tmp / "nope.csv"
    return _import_table(env, pairs, missing), [str(missing), "not found"]


def synth_zero_pairs(env: Env):
    argv = ["data", "synth", "--out", str(env.tmp / "out"), "--pairs", "0"]
    return argv, ["relkd data synth", "--pairs", ">= 1"]


def synth_noise_out_of_range(env: Env):
    argv = ["data", "synth", "--out", str(env.tmp / "out"), "--noise", "2"]
    return argv, ["relkd data synth", "--noise", "<= 1.0"]


def synth_over_user_folder(env: Env):
    out = env.tmp / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    return ["data", "synth", "--out", str(out), "--pairs", "50"], [str(out)]


def bm25_negative_k1(env: Env):
    return ["baseline", "bm25", "--data", str(env.wands), "--k1", "-3"], ["--k1", ">= 0"]


def bm25_b_out_of_range(env: Env):
    return ["baseline", "bm25", "--data", str(env.wands), "--b", "1.5"], ["--b", "<= 1.0"]


def bm25_edited_table(env: Env):
    data = env.tmp / "ds"
    shutil.copytree(env.wands, data)
    _truncate(data / "pairs.parquet")
    argv = ["baseline", "bm25", "--data", str(data), "--out", str(env.tmp / "m.json")]
    return argv, [str(data / "pairs.parquet"), "sha256"]


def synth_out_is_a_file(env: Env):
    out = env.tmp / "afile.txt"
    out.write_text("keep me")
    return ["data", "synth", "--out", str(out), "--pairs", "50"], [str(out), "is a file"]


def synth_too_many_pairs(env: Env):
    argv = ["data", "synth", "--out", str(env.tmp / "out"), "--pairs", "1" + "0" * 20]
    return argv, ["synth config", "pairs", "at most 50,000,000"]


def bm25_edited_manifest_hash(env: Env):
    """The table untouched (same size and mtime), its recorded sha256 edited in the manifest."""
    data = env.tmp / "ds"
    shutil.copytree(env.wands, data)  # copy2 keeps the mtimes, so the cheap check would pass
    manifest = json.loads((data / "manifest.json").read_text())
    entry = manifest["tables"]["pairs"]
    entry["sha256"] = "0" * 64
    (data / "manifest.json").write_text(json.dumps(manifest))
    argv = ["baseline", "bm25", "--data", str(data), "--out", str(env.tmp / "m.json")]
    return argv, [str(data / "pairs.parquet"), "record (sha256) was edited"]


def synth_negative_unlabeled(env: Env):
    argv = ["data", "synth", "--out", str(env.tmp / "out"), "--unlabeled-ratio", "-1"]
    return argv, ["relkd data synth", "--unlabeled-ratio", ">= 0"]


# ---- studies and ablations ------------------------------------------------------------------


def _study(env: Env, space: str) -> Path:
    path = env.tmp / "study.yaml"
    path.write_text(f"name: s\nexperiment: quickstart\nspace:\n{space}")
    return path


def study_unknown_param(env: Env):
    path = _study(env, "  params:\n    optim.lrr: {low: 0.001, high: 0.1}\n")
    return ["tune", str(path), "--trials", "1"], [str(path), "space.params.optim.lrr"]


def study_unknown_weight(env: Env):
    path = _study(env, "  weights: [hard_ce, bogus]\n")
    return ["tune", str(path), "--trials", "1"], [str(path), "space.weights", "bogus"]


def study_bad_range(env: Env):
    path = _study(env, "  params:\n    optim.lr: {low: 0.1, high: 0.001}\n")
    return ["tune", str(path), "--trials", "1"], [str(path), "space.params.optim.lr", "low < high"]


def study_not_mapping(env: Env):
    path = env.tmp / "study.yaml"
    path.write_text("just some text\n")
    return ["tune", str(path)], [str(path), "top level must be a mapping"]


def tune_negative_trials(env: Env):
    path = _study(env, "  params:\n    optim.lr: {low: 0.001, high: 0.1}\n")
    return ["tune", str(path), "--trials", "-1"], ["relkd tune", "--trials", ">= 0"]


def ablation_not_mapping(env: Env):
    path = env.tmp / "ablation.yaml"
    path.write_text("- a\n- b\n")
    return ["ablate", str(path)], [str(path), "top level must be a mapping"]


CASES = [
    Case("ckpt-truncated", "eval: checkpoint cut in half", ckpt_truncated),
    Case("ckpt-empty", "eval: empty checkpoint file", ckpt_empty),
    Case("ckpt-foreign", "eval: a torch.save of a plain dict", ckpt_foreign),
    Case("ckpt-bare-pickle", "eval: a bare pickle whose reduce runs code", ckpt_bare_pickle),
    Case("ckpt-pickle-code", "eval: torch.save of an object that runs code", ckpt_pickle_with_code),
    Case("ckpt-no-net", "eval: Lightning-like dict without net.* weights", ckpt_no_net_weights),
    Case("ckpt-shape", "eval: a weight of another shape", ckpt_other_shape),
    Case("eval-other-scheme", "eval: esci run on a wands dataset", eval_other_scheme),
    Case("explain-truncated", "explain: truncated checkpoint", explain_truncated),
    Case("export-pickle-code", "export: checkpoint that runs code", export_pickle_with_code),
    Case("train-path-no-kind", "train: data.path without data.kind=path", train_path_without_kind),
    Case("train-batch-size", "train: data.batch_size=-4", train_negative_batch_size),
    Case("train-lr", "train: optim.lr=-1", train_negative_lr),
    Case("train-epochs", "train: trainer.max_epochs=-1", train_negative_epochs),
    Case("train-unknown-key", "train: data.bogus=1", train_unknown_key),
    Case("train-unknown-loss", "train: loss.weights.bogus=1", train_unknown_loss_term),
    Case("yaml-not-mapping", "train: experiment YAML that is a list", train_yaml_not_mapping),
    Case("yaml-syntax", "train: experiment YAML with a syntax error", train_yaml_syntax),
    Case("yaml-wrong-type", "train: data.batch_size: many", train_yaml_wrong_type),
    Case(
        "cache-other-dataset",
        "train: teacher cache written for another dataset",
        train_teacher_cache_other_dataset,
    ),
    Case(
        "store-other-tokenizer",
        "train: tokenized store of another tokenizer",
        train_store_other_tokenizer,
    ),
    Case("teacher-train-mode", "teacher train: teacher.mode=oracle", teacher_train_bad_mode),
    Case("annotate-student-run", "annotate: a student run folder", annotate_student_run),
    Case("annotate-batch-size", "annotate: --batch-size 0", annotate_zero_batch),
    Case("finalize-not-cache", "cache finalize: a folder that is no cache", finalize_not_a_cache),
    Case(
        "esci-truncated-parquet",
        "import esci: truncated products parquet",
        import_esci_truncated_parquet,
    ),
    Case("esci-val-fraction", "import esci: --val-fraction 1.5", import_esci_val_fraction),
    Case(
        "wands-missing-column", "import wands: label.csv without label", import_wands_missing_column
    ),
    Case("wands-fractions", "import wands: val + test fractions >= 1", import_wands_fractions),
    Case(
        "table-truncated-parquet",
        "import table: truncated pairs parquet",
        import_table_truncated_parquet,
    ),
    Case("table-unknown-label", "import table: label Maybe", import_table_unknown_label),
    Case("table-missing-items", "import table: --items file missing", import_table_missing_items),
    Case("synth-pairs", "synth: --pairs 0", synth_zero_pairs),
    Case("synth-noise", "synth: --noise 2", synth_noise_out_of_range),
    Case("synth-user-folder", "synth: --out is a folder of one's own", synth_over_user_folder),
    Case("bm25-k1", "bm25: --k1 -3", bm25_negative_k1),
    Case("bm25-b", "bm25: --b 1.5", bm25_b_out_of_range),
    Case("bm25-edited-table", "bm25: dataset table edited after import", bm25_edited_table),
    Case("synth-unlabeled", "synth: --unlabeled-ratio -1", synth_negative_unlabeled),
    Case("synth-out-file", "synth: --out names a file", synth_out_is_a_file),
    Case("synth-too-big", "synth: --pairs 1e20", synth_too_many_pairs),
    Case(
        "manifest-hash-edited",
        "bm25: a manifest's recorded sha256 edited, the table untouched",
        bm25_edited_manifest_hash,
    ),
    Case("study-unknown-param", "tune: space.params names optim.lrr", study_unknown_param),
    Case("study-unknown-weight", "tune: space.weights names bogus", study_unknown_weight),
    Case("study-bad-range", "tune: low > high", study_bad_range),
    Case("study-not-mapping", "tune: study YAML that is a string", study_not_mapping),
    Case("tune-trials", "tune: --trials -1", tune_negative_trials),
    Case("ablation-not-mapping", "ablate: ablation YAML that is a list", ablation_not_mapping),
]


def snapshot(*folders: Path) -> dict[str, str]:
    """path -> sha256 of every file (and every folder, as ``dir``) under ``folders``."""
    out: dict[str, str] = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def env_base(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Env:
    """The tiny quickstart trained once, and a small wands dataset."""
    work = tmp_path_factory.mktemp("bad_inputs")
    cfg = compose(QUICKSTART, tiny_overrides(work / "runs", shared_data_root))
    run = run_training(cfg)
    wands = work / "wands"
    assert main(["data", "synth", "--out", str(wands), "--pairs", "200", "--scheme", "wands"]) == 0
    return Env(work, run, shared_data_root, wands)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_one_line_and_leaves_everything_alone(
    case: Case,
    env_base: Env,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written to a default folder shows in the snapshot
    env = Env(tmp_path, env_base.run, env_base.data_root, env_base.wands)
    argv, expected = case.setup(env)
    capsys.readouterr()
    before = snapshot(tmp_path, env.run, env.wands)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("relkd: error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert snapshot(tmp_path, env.run, env.wands) == before
    assert not (tmp_path / "PICKLE_RAN").exists()  # a planted pickle never ran


def test_cases_are_distinct_and_enough() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 30


def test_eval_without_best_checkpoint_uses_last_and_says_so(
    env_base: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose training stopped before any validation has only last.ckpt: eval uses it."""
    run = tmp_path / "run"
    shutil.copytree(env_base.run, run)
    (run / "checkpoints" / "best.ckpt").unlink()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test"]) == 0
    err = capsys.readouterr().err
    assert "best.ckpt not found" in err and str(run / "checkpoints" / "last.ckpt") in err
    (written,) = (run / "eval").glob("*-test/metrics.json")
    assert json.loads(written.read_text())["test"]["overall"]["num_pairs"] > 0
    # with neither checkpoint it is still a one-line error naming best.ckpt
    (run / "checkpoints" / "last.ckpt").unlink()
    assert main(["eval", str(run)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "best.ckpt not found" in lines[0]
