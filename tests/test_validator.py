"""``relkd data validate``: a valid folder passes; each broken input gives one named problem."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from relkd.cli import main
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.manifest import MANIFEST_NAME, Manifest, sha256_file
from relkd.data.validator import validate_dataset


def _tables() -> dict[str, pa.Table]:
    """Three queries (one per split and bucket), four items, seven pairs, a few behaviour rows."""
    items = pa.table(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "title": ["red running shoe", "blue denim jacket", "oak desk", "wool scarf"],
            "brand": ["Acme", None, "Oakly", None],
            "attributes": ['{"color": "red"}', None, '{"material": "oak"}', "{}"],
        }
    )
    queries = pa.table(
        {
            "query_id": ["q1", "q2", "q3"],
            "text": ["red shoes", "denim jacket", "oak desk"],
            "bucket": ["head", "torso", "tail"],
            "frequency": [100, 10, 1],
        }
    )
    pairs = pa.table(
        {
            "pair_id": [1, 2, 3, 4, 5, 6, 7],
            "query_id": ["q1", "q1", "q1", "q2", "q2", "q3", "q3"],
            "item_id": ["i1", "i2", "i4", "i2", "i3", "i3", "i1"],
            "label": ["Exact", "Irrelevant", None, "Exact", "Complement", "Exact", "Substitute"],
            "split": ["train", "train", "train", "val", "val", "test", "test"],
            "aspect_brand": ["match", "mismatch", None, "not_stated", "match", "match", None],
        }
    )
    behavior = pa.table(
        {
            "query_id": ["q1", "q1", "q2"],
            "item_id": ["i1", "i2", "i2"],
            "impressions": [10, 5, 3],
            "clicks": [4, 0, 3],
        }
    )
    return {"items": items, "queries": queries, "pairs": pairs, "behavior": behavior}


def _write(root: Path, **changes: pa.Table) -> Path:
    tables = _tables()
    tables.update(changes)
    CanonicalDataset.write(root, tables, name="tiny", label_scheme="esci", source={"kind": "test"})
    return root


def _replace(root: Path, name: str, table: pa.Table) -> None:
    """Rewrite one table file as-is (no conforming) and re-record its hash and rows, so that
    only the content defect under test remains."""
    manifest = Manifest.load(root)
    path = root / manifest.tables[name].file
    pq.write_table(table, path)
    manifest.tables[name].sha256 = sha256_file(path)
    manifest.tables[name].rows = table.num_rows
    manifest.save(root)


def _set(table: pa.Table, column: str, values: list) -> pa.Table:
    idx = table.column_names.index(column)
    return table.set_column(idx, column, pa.array(values, table.schema.field(column).type))


def _one_problem(root: Path, *needles: str) -> str:
    problems = validate_dataset(root)
    assert len(problems) == 1, problems
    for needle in needles:
        assert needle in problems[0], problems[0]
    return problems[0]


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return _write(tmp_path / "ds")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))}


def test_valid_dataset_has_no_problems(ds: Path) -> None:
    assert validate_dataset(ds) == []


def test_valid_without_behavior_table(tmp_path: Path) -> None:
    tables = _tables()
    del tables["behavior"]
    root = tmp_path / "nb"
    CanonicalDataset.write(root, tables, name="nb", label_scheme="esci", source={"kind": "test"})
    assert validate_dataset(root) == []


# -- manifest and files --------------------------------------------------------------------


def test_missing_manifest(ds: Path) -> None:
    (ds / MANIFEST_NAME).unlink()
    _one_problem(ds, MANIFEST_NAME, "no manifest")


def test_corrupt_manifest_json(ds: Path) -> None:
    (ds / MANIFEST_NAME).write_text("{not json")
    _one_problem(ds, MANIFEST_NAME, "corrupt manifest")


def test_manifest_not_an_object(ds: Path) -> None:
    (ds / MANIFEST_NAME).write_text("42")
    _one_problem(ds, MANIFEST_NAME, "corrupt manifest")


def test_manifest_unknown_scheme(ds: Path) -> None:
    raw = json.loads((ds / MANIFEST_NAME).read_text())
    raw["label_scheme"] = "stars"
    (ds / MANIFEST_NAME).write_text(json.dumps(raw))
    _one_problem(ds, MANIFEST_NAME, "label_scheme", "stars")


def test_missing_table_file(ds: Path) -> None:
    (ds / "behavior.parquet").unlink()
    _one_problem(ds, "behavior.parquet", "missing")


def test_required_table_not_listed(ds: Path) -> None:
    manifest = Manifest.load(ds)
    del manifest.tables["queries"]
    manifest.save(ds)
    _one_problem(ds, MANIFEST_NAME, "tables", "queries")


def test_tampered_table_hash_mismatch(ds: Path) -> None:
    pairs = pq.read_table(ds / "pairs.parquet")
    labels = pairs.column("label").to_pylist()
    labels[0] = "Substitute"  # still a valid label: only the hash gives it away
    pq.write_table(_set(pairs, "label", labels), ds / "pairs.parquet")
    _one_problem(ds, "pairs.parquet", "sha256 mismatch")


def test_row_count_mismatch(ds: Path) -> None:
    manifest = Manifest.load(ds)
    manifest.tables["items"].rows = 5
    manifest.save(ds)
    _one_problem(ds, "items.parquet", "row count 4", "(5)")


def test_corrupt_parquet_bytes(ds: Path) -> None:
    path = ds / "pairs.parquet"
    data = bytearray(path.read_bytes())
    data[-12:] = b"\x00" * 12  # smash the footer length and magic
    path.write_bytes(bytes(data))
    problems = validate_dataset(ds)
    assert any("pairs.parquet" in p and "sha256 mismatch" in p for p in problems), problems
    assert any("pairs.parquet" in p and "unreadable or corrupt parquet" in p for p in problems)
    assert len(problems) == 2, problems


def test_garbage_file_instead_of_parquet(ds: Path) -> None:
    (ds / "items.parquet").write_bytes(b"definitely not parquet")
    problems = validate_dataset(ds)
    assert any("items.parquet" in p and "unreadable or corrupt parquet" in p for p in problems)


# -- columns and types ---------------------------------------------------------------------


def test_missing_required_column(ds: Path) -> None:
    _replace(ds, "items", _tables()["items"].drop_columns(["title"]))
    _one_problem(ds, "items.parquet", "column title", "missing required column")


def test_incompatible_column_type(ds: Path) -> None:
    pairs = _tables()["pairs"]
    pairs = pairs.set_column(0, "pair_id", pa.array([str(i) for i in range(1, 8)]))
    _replace(ds, "pairs", pairs)
    _one_problem(ds, "pairs.parquet", "column pair_id", "type string, expected int64")


def test_compatible_types_pass(ds: Path) -> None:
    pairs = _tables()["pairs"]
    pairs = pairs.set_column(0, "pair_id", pairs.column("pair_id").cast(pa.int32()))
    pairs = pairs.set_column(3, "label", pairs.column("label").dictionary_encode())
    _replace(ds, "pairs", pairs)
    assert validate_dataset(ds) == []


# -- values --------------------------------------------------------------------------------


def test_unknown_label(ds: Path) -> None:
    pairs = _tables()["pairs"]
    labels = pairs.column("label").to_pylist()
    labels[0] = labels[1] = labels[3] = "Foo"
    _replace(ds, "pairs", _set(pairs, "label", labels))
    _one_problem(
        ds, "pairs.parquet: column label: 3 row(s) have unknown label(s) ['Foo'] for scheme esci"
    )


def test_alias_label_is_rejected(ds: Path) -> None:
    pairs = _tables()["pairs"]
    labels = pairs.column("label").to_pylist()
    labels[0] = "E"
    _replace(ds, "pairs", _set(pairs, "label", labels))
    _one_problem(ds, "pairs.parquet", "column label", "['E']", "alias of 'Exact'")


def test_bad_clean_label(ds: Path) -> None:
    pairs = _tables()["pairs"].append_column("clean_label", pa.array(["Exact"] * 6 + ["Meh"]))
    _replace(ds, "pairs", pairs)
    _one_problem(ds, "pairs.parquet", "column clean_label", "['Meh']")


@pytest.mark.parametrize("title", ["", "   \t", None])
def test_empty_title(ds: Path, title: str | None) -> None:
    items = _tables()["items"]
    _replace(ds, "items", _set(items, "title", [title, *items.column("title").to_pylist()[1:]]))
    _one_problem(ds, "items.parquet", "column title", "1 row(s)", "empty")


def test_empty_query_text(ds: Path) -> None:
    queries = _tables()["queries"]
    _replace(ds, "queries", _set(queries, "text", ["red shoes", " ", "oak desk"]))
    _one_problem(ds, "queries.parquet", "column text", "1 row(s)", "whitespace-only")


def test_null_id(ds: Path) -> None:
    behavior = _tables()["behavior"]
    _replace(ds, "behavior", _set(behavior, "item_id", ["i1", None, "i2"]))
    _one_problem(ds, "behavior.parquet", "column item_id", "1 row(s)", "null")


def test_duplicate_pair_id(ds: Path) -> None:
    pairs = _tables()["pairs"]
    _replace(ds, "pairs", _set(pairs, "pair_id", [1, 2, 3, 4, 5, 6, 1]))
    _one_problem(ds, "pairs.parquet", "column pair_id", "1 duplicate value(s)", "[1]")


def test_duplicate_item_id(ds: Path) -> None:
    items = _tables()["items"]
    items = pa.concat_tables([items, items.slice(3, 1)])
    _replace(ds, "items", items)
    _one_problem(ds, "items.parquet", "column item_id", "['i4']")


def test_duplicate_query_item_pair(ds: Path) -> None:
    pairs = _tables()["pairs"]
    _replace(ds, "pairs", _set(pairs, "item_id", ["i1", "i1", "i4", "i2", "i3", "i3", "i1"]))
    _one_problem(ds, "pairs.parquet", "column query_id, item_id", "('q1', 'i1')")


def test_dangling_query_id(ds: Path) -> None:
    pairs = _tables()["pairs"]
    query_ids = pairs.column("query_id").to_pylist()
    query_ids[-1] = "q404"  # its own single-pair query in test: no leakage, just dangling
    _replace(ds, "pairs", _set(pairs, "query_id", query_ids))
    _one_problem(ds, "pairs.parquet", "column query_id", "queries.parquet", "['q404']")


def test_dangling_item_id(ds: Path) -> None:
    pairs = _tables()["pairs"]
    item_ids = pairs.column("item_id").to_pylist()
    item_ids[0] = "i404"
    _replace(ds, "pairs", _set(pairs, "item_id", item_ids))
    _one_problem(ds, "pairs.parquet", "column item_id", "items.parquet", "['i404']")


def test_dangling_behavior_query(ds: Path) -> None:
    behavior = _tables()["behavior"]
    _replace(ds, "behavior", _set(behavior, "query_id", ["q1", "q9", "q2"]))
    _one_problem(ds, "behavior.parquet", "column query_id", "queries.parquet", "['q9']")


def test_split_leakage(ds: Path) -> None:
    pairs = _tables()["pairs"]
    _replace(
        ds,
        "pairs",
        _set(pairs, "split", ["train", "train", "train", "val", "test", "test", "test"]),
    )
    _one_problem(ds, "pairs.parquet", "column split", "1 query(ies)", "leakage", "['q2']")


def test_unknown_split(ds: Path) -> None:
    pairs = _tables()["pairs"]
    _replace(
        ds, "pairs", _set(pairs, "split", ["train", "train", "train", "dev", "dev", "test", "test"])
    )
    _one_problem(ds, "pairs.parquet", "column split", "2 row(s)", "['dev']")


def test_unlabelled_pair_in_test(ds: Path) -> None:
    pairs = _tables()["pairs"]
    labels = pairs.column("label").to_pylist()
    labels[5] = None
    _replace(ds, "pairs", _set(pairs, "label", labels))
    _one_problem(ds, "pairs.parquet", "column label", "1 row(s)", "unlabelled", "['test']")


def test_bad_bucket(ds: Path) -> None:
    queries = _tables()["queries"]
    _replace(ds, "queries", _set(queries, "bucket", ["head", "torso", "long-tail"]))
    _one_problem(ds, "queries.parquet", "column bucket", "['long-tail']")


def test_bad_aspect_value(ds: Path) -> None:
    pairs = _tables()["pairs"]
    values = pairs.column("aspect_brand").to_pylist()
    values[0] = "yes"
    _replace(ds, "pairs", _set(pairs, "aspect_brand", values))
    _one_problem(ds, "pairs.parquet", "column aspect_brand", "['yes']")


def test_clicks_exceed_impressions(ds: Path) -> None:
    behavior = _tables()["behavior"]
    _replace(ds, "behavior", _set(behavior, "clicks", [4, 6, 3]))
    _one_problem(ds, "behavior.parquet", "column clicks", "1 row(s)", "clicks > impressions")


def test_negative_clicks(ds: Path) -> None:
    behavior = _tables()["behavior"]
    _replace(ds, "behavior", _set(behavior, "clicks", [4, -1, 3]))
    _one_problem(ds, "behavior.parquet", "column clicks", "1 row(s)", "negative")


def test_reports_every_problem_not_just_the_first(ds: Path) -> None:
    pairs = _tables()["pairs"]
    labels = pairs.column("label").to_pylist()
    labels[0] = "Foo"
    pairs = _set(pairs, "label", labels)
    pairs = _set(pairs, "pair_id", [1, 2, 3, 4, 5, 6, 1])
    _replace(ds, "pairs", pairs)
    (ds / "behavior.parquet").unlink()
    problems = validate_dataset(ds)
    assert len(problems) == 3, problems
    assert any("column label" in p for p in problems)
    assert any("column pair_id" in p for p in problems)
    assert any("behavior.parquet" in p for p in problems)


# -- CLI and read-only ---------------------------------------------------------------------


def test_cli_valid_returns_0(ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", str(ds)]) == 0
    assert "OK" in capsys.readouterr().out


def test_cli_invalid_returns_1_and_prints_problem(
    ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = _tables()["queries"]
    _replace(ds, "queries", _set(queries, "bucket", ["head", "torso", "long-tail"]))
    assert main(["data", "validate", str(ds)]) == 1
    err = capsys.readouterr().err
    assert "ERROR queries.parquet: column bucket" in err
    assert "1 problem(s)" in err


@pytest.mark.parametrize("broken", [False, True])
def test_validate_never_writes(ds: Path, broken: bool) -> None:
    if broken:
        (ds / "pairs.parquet").write_bytes(b"junk")
    before = _snapshot(ds)
    validate_dataset(ds)
    main(["data", "validate", str(ds)])
    assert _snapshot(ds) == before
