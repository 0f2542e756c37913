"""Writing a canonical dataset: atomic, never overwrites what it should not, clear errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from relkd.data import CanonicalDataset
from relkd.errors import DataError


def tables(title: str = "oak desk") -> dict[str, pa.Table]:
    return {
        "items": pa.table({"item_id": ["i1"], "title": [title]}),
        "queries": pa.table({"query_id": ["q1"], "text": ["desk"], "bucket": ["head"]}),
        "pairs": pa.table(
            {
                "pair_id": [7],
                "query_id": ["q1"],
                "item_id": ["i1"],
                "label": ["Exact"],
                "split": ["train"],
            }
        ),
    }


def write(root: Path, **kwargs: object) -> CanonicalDataset:
    return CanonicalDataset.write(
        root,
        kwargs.pop("tables", None) or tables(),
        name="t",
        label_scheme="esci",
        source={"kind": "test"},
        **kwargs,
    )


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    ds = write(tmp_path / "d")
    assert ds.table("pairs").column("pair_id").to_pylist() == [7]
    assert ds.manifest.tables["items"].rows == 1 and len(ds.manifest.tables["items"].sha256) == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_refuses_existing_dataset_without_overwrite_and_replaces_with_it(tmp_path: Path) -> None:
    write(tmp_path / "d")
    with pytest.raises(DataError, match="already exists"):
        write(tmp_path / "d", tables=tables("pine desk"))
    assert CanonicalDataset(tmp_path / "d").table("items").column("title").to_pylist() == [
        "oak desk"
    ]
    write(tmp_path / "d", tables=tables("pine desk"), overwrite=True)
    assert CanonicalDataset(tmp_path / "d").table("items").column("title").to_pylist() == [
        "pine desk"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # old copy cleaned up


def test_overwrite_never_deletes_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a relkd dataset"):
        write(folder, overwrite=True)
    assert (folder / "precious.txt").read_text() == "keep me"


def test_overwrite_refuses_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "d")
    monkeypatch.chdir(tmp_path / "d")
    with pytest.raises(DataError, match="working folder"):
        write(Path("."), overwrite=True)
    assert (tmp_path / "d" / "manifest.json").is_file()


def test_failed_write_keeps_the_old_dataset(tmp_path: Path) -> None:
    write(tmp_path / "d")
    bad = tables()
    bad["pairs"] = bad["pairs"].set_column(0, "pair_id", pa.array(["not-a-number"]))
    with pytest.raises(DataError, match=r"table pairs: column pair_id"):
        write(tmp_path / "d", tables=bad, overwrite=True)
    assert CanonicalDataset(tmp_path / "d").table("pairs").column("pair_id").to_pylist() == [7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_missing_required_table_and_column_are_named(tmp_path: Path) -> None:
    no_pairs = {k: v for k, v in tables().items() if k != "pairs"}
    with pytest.raises(DataError, match="table pairs is required"):
        write(tmp_path / "a", tables=no_pairs)
    no_title = tables()
    no_title["items"] = no_title["items"].drop_columns(["title"])
    with pytest.raises(DataError, match=r"table items: missing required column\(s\) \['title'\]"):
        write(tmp_path / "b", tables=no_title)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
