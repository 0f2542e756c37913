"""A dataset table edited after its manifest was written is refused by every reader (cheaply:
size + mtime first, the full hash only when they differ), and the shared atomic-file helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from relkd.artifacts import FingerprintedArtifact
from relkd.artifacts import atomic_files as af
from relkd.baselines.bm25_baseline import run_bm25_baseline
from relkd.cli import main
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.manifest import MANIFEST_NAME, Manifest
from relkd.errors import DataError, StaleArtifactError
from relkd.train import run_training
from tests.conftest import QUICKSTART, tiny_overrides
from tests.datamodule_factory import make_datamodule
from tests.datamodule_fixtures import make_dataset, minilm_path


def edit_pairs_in_place(root: Path) -> None:
    """Change one label in pairs.parquet and leave manifest.json as it was."""
    path = root / "pairs.parquet"
    pairs = pq.read_table(path)
    labels = pairs.column("label").to_pylist()
    labels[0] = "Irrelevant" if labels[0] != "Irrelevant" else "Exact"
    idx = pairs.column_names.index("label")
    pq.write_table(pairs.set_column(idx, "label", pa.array(labels)), path)


def manifest_hashes(root: Path) -> dict[str, str]:
    return {t: e.sha256 for t, e in Manifest.load(root).tables.items()}


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files fully hashed by check_file_record from now on."""
    calls: list[str] = []
    real = af.sha256_file

    def counting(path: str | Path, chunk: int = 1 << 22) -> str:
        calls.append(Path(path).name)
        return real(path, chunk)

    monkeypatch.setattr(af, "sha256_file", counting)
    return calls


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    make_dataset(root, n_queries=6, items_per_query=4)
    return root


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def train_overrides(tmp_path: Path, data: Path) -> list[str]:
    return [
        *tiny_overrides(tmp_path / "runs", tmp_path / "data"),
        "data.kind=path",
        f"data.path={data}",
    ]


# -- the manifest records size and mtime ---------------------------------------------------


def test_manifest_records_bytes_and_mtime_of_each_table(ds: Path) -> None:
    manifest = json.loads((ds / MANIFEST_NAME).read_text())
    for entry in manifest["tables"].values():
        st = (ds / entry["file"]).stat()
        assert entry["bytes"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns
        assert entry["sha256"] == af.sha256_file(ds / entry["file"])


def test_untouched_dataset_verifies_without_hashing_and_caches(ds: Path, hashed: list) -> None:
    hashed.clear()
    dataset = CanonicalDataset(ds)
    assert dataset.verify() == manifest_hashes(ds)
    assert hashed == []  # size and mtime match: nothing read
    os.utime(ds / "pairs.parquet", ns=(0, 1))  # even a later change is not re-checked
    assert dataset.verify() == manifest_hashes(ds) and hashed == []


# -- an edited table is refused ------------------------------------------------------------


def test_verify_refuses_edited_table_in_one_line(ds: Path) -> None:
    edit_pairs_in_place(ds)
    with pytest.raises(StaleArtifactError) as err:
        CanonicalDataset(ds).verify()
    message = str(err.value)
    assert "pairs.parquet" in message and MANIFEST_NAME in message and "\n" not in message
    with pytest.raises(StaleArtifactError, match=r"pairs\.parquet"):
        CanonicalDataset(ds).table("items")  # reading any table verifies first


def test_missing_table_is_a_data_error(ds: Path) -> None:
    (ds / "items.parquet").unlink()
    with pytest.raises(DataError, match=r"items\.parquet: missing \(listed in"):
        CanonicalDataset(ds).verify()


def test_datamodule_refuses_edited_table_even_with_a_store_built(
    ds: Path, tmp_path: Path, tokenizer
) -> None:
    """The original hole: the tokenized store is keyed by the manifest's hashes, so an edited
    table would silently be served from the store tokenized from the original."""
    cache = tmp_path / "cache"
    dm = make_datamodule(ds, tokenizer, cache_dir=cache, batch_size=4)
    dm.setup()
    assert list(cache.iterdir())  # a store for the original tables exists
    edit_pairs_in_place(ds)
    dm = make_datamodule(ds, tokenizer, cache_dir=cache, batch_size=4)
    with pytest.raises(StaleArtifactError, match=r"pairs\.parquet"):
        dm.setup()


def test_train_cli_exits_2_with_one_line_and_trains_nothing(
    ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_pairs_in_place(ds)
    assert main(["train", str(QUICKSTART), *train_overrides(tmp_path, ds)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("relkd: error:")]
    assert len(errors) == 1 and "pairs.parquet" in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # no run folder claimed
    assert not (tmp_path / "data" / "tokenized").exists()  # no store built


def test_bm25_refuses_edited_table(ds: Path, tmp_path: Path) -> None:
    edit_pairs_in_place(ds)
    out = tmp_path / "bm25" / "metrics.json"
    with pytest.raises(StaleArtifactError, match=r"pairs\.parquet"):
        run_bm25_baseline(ds, out=out, verbose=False)
    assert not out.exists()


def test_bm25_records_tables_read(ds: Path, tmp_path: Path) -> None:
    payload = run_bm25_baseline(ds, out=tmp_path / "m.json", verbose=False)
    expected = {t: h for t, h in manifest_hashes(ds).items() if t != "behavior"}
    assert payload["dataset"]["tables_read"] == expected


# -- the cheap check's fallbacks -----------------------------------------------------------


def test_touched_but_unchanged_file_is_hashed_and_accepted(ds: Path, hashed: list) -> None:
    path = ds / "pairs.parquet"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    hashed.clear()
    assert CanonicalDataset(ds).verify() == manifest_hashes(ds)
    assert hashed == ["pairs.parquet"]  # only the touched file was read
    assert CanonicalDataset(ds).verify() == manifest_hashes(ds)
    assert hashed == ["pairs.parquet"]  # a second open in this process reuses the result


def test_old_manifest_without_size_and_mtime_loads_and_verifies_by_hash(
    ds: Path, hashed: list
) -> None:
    raw = json.loads((ds / MANIFEST_NAME).read_text())
    for entry in raw["tables"].values():
        del entry["bytes"], entry["mtime_ns"]
    old_text = json.dumps(raw, indent=2, sort_keys=True) + "\n"
    (ds / MANIFEST_NAME).write_text(old_text)
    hashed.clear()
    manifest = Manifest.load(ds)
    assert manifest.tables["pairs"].bytes is None
    assert manifest.to_json() + "\n" == old_text  # saving it again changes nothing
    assert CanonicalDataset(ds).verify() == manifest_hashes(ds)
    assert sorted(hashed) == ["items.parquet", "pairs.parquet", "queries.parquet"]
    edit_pairs_in_place(ds)
    with pytest.raises(StaleArtifactError, match=r"pairs\.parquet"):
        CanonicalDataset(ds).verify()


# -- runs record what they read ------------------------------------------------------------


def test_run_info_records_tables_read_and_eval_refuses_edited_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "tiny"
    make_dataset(data, n_queries=12, items_per_query=4)
    run_dir = run_training(compose(QUICKSTART, train_overrides(tmp_path, data)))
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["dataset"] == {
        "root": str(data),
        "name": "tiny",
        "tables_read": manifest_hashes(data),
    }
    assert "dataset_tables" not in info  # one record, not two

    edited = tmp_path / "edited"
    make_dataset(edited, n_queries=12, items_per_query=4)
    edit_pairs_in_place(edited)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", str(edited)]) == 2
    err = capsys.readouterr().err
    assert "relkd: error:" in err and "pairs.parquet" in err and "Traceback" not in err
    assert not (run_dir / "eval").exists()


# -- relkd/artifacts/atomic_files.py -------------------------------------------------------


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    af.atomic_write_json(path, {"v": 1})

    def failing(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        af.atomic_write(path, failing)
    assert json.loads(path.read_text()) == {"v": 1}
    assert no_temp_files(tmp_path)


def test_atomic_write_gives_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        af.atomic_write_bytes(tmp_path / "f", b"x")
        af.create_exclusive(tmp_path / "g", b"x")
        with af.staged_folder(tmp_path / "d") as staging:
            assert staging.stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(umask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "g").stat().st_mode & 0o777 == 0o644


def test_create_exclusive_only_the_first_wins(tmp_path: Path) -> None:
    path = tmp_path / "claim"
    assert af.create_exclusive(path, b"first") is True
    assert af.create_exclusive(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert no_temp_files(tmp_path)


def test_move_into_place_without_replace_keeps_the_existing_folder(tmp_path: Path) -> None:
    root = tmp_path / "art"
    root.mkdir()
    (root / "a").write_text("existing")
    with af.staged_folder(root) as staging:
        (staging / "a").write_text("new")
        assert af.move_into_place(staging, root) is False
    assert (root / "a").read_text() == "existing"
    with af.staged_folder(root) as staging:
        (staging / "a").write_text("new")
        assert af.move_into_place(staging, root, replace=True) is True
    assert (root / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no staging or backup left


def test_staged_folder_is_removed_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), af.staged_folder(tmp_path / "x") as staging:
        (staging / "f").write_text("partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_check_file_record_size_or_mtime_change_with_new_content(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    path.write_bytes(b"abcdef")
    record = af.file_record(path)
    assert af.check_file_record(path, record, "m.json") == record["sha256"]
    path.write_bytes(b"abcdefg")  # size changed
    with pytest.raises(StaleArtifactError, match=r"t\.bin: sha256 .* recorded in m\.json"):
        af.check_file_record(path, record, "m.json")
    path.write_bytes(b"abcdeX")  # same size, new content, new mtime
    os.utime(path, ns=(record["mtime_ns"], record["mtime_ns"] + 1_000_000_000))
    with pytest.raises(StaleArtifactError, match=r"t\.bin"):
        af.check_file_record(path, record, "m.json")
    path.write_bytes(b"abcdef")  # original content back, mtime differs: accepted by hash
    assert af.check_file_record(path, record, "m.json") == record["sha256"]


class _Toy(FingerprintedArtifact):
    KIND = "toy"
    LABEL = "toy artifact"


def test_build_atomically_refuses_existing_root_and_lets_a_concurrent_winner_keep_its_copy(
    tmp_path: Path,
) -> None:
    root = tmp_path / "toy"

    def write(staging: Path) -> dict:
        np.save(staging / "x.npy", np.arange(3))
        return {"who": "us"}

    manifest = _Toy.build_atomically(root, {"a": 1}, write)
    assert manifest["files"] == {"x.npy": (root / "x.npy").stat().st_size}
    assert _Toy.read_manifest(root, {"a": 1})["who"] == "us"
    with pytest.raises(DataError, match="already exists"):
        _Toy.build_atomically(root, {"a": 1}, write)

    other = tmp_path / "toy2"

    def write_while_another_finishes(staging: Path) -> dict:
        other.mkdir()
        (other / "manifest.json").write_text('{"kind": "toy", "version": 1, "who": "them"}')
        return write(staging)

    _Toy.build_atomically(other, {"a": 1}, write_while_another_finishes)
    assert _Toy.read_manifest(other, None)["who"] == "them"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy", "toy2"]
