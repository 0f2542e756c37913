"""Loaders: ESCI, WANDS and custom tables into the canonical form, and the download helper.

Inputs are small files written in exactly the upstream formats (tests/fixtures_upstream.py);
no test touches the network.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from relkd.cli import main
from relkd.data import CanonicalDataset
from relkd.data.ids import stable_pair_id
from relkd.data.loaders import download as dl
from relkd.data.loaders import import_esci, import_table, import_wands
from relkd.data.loaders.wands_loader import parse_features
from relkd.data.manifest import sha256_file
from relkd.data.schema import BUCKETS, SPLITS, TABLES
from relkd.data.validator import validate_dataset
from relkd.errors import ConfigError, DataError
from tests.fixtures_upstream import (
    ESCI_EXAMPLES,
    ESCI_PRODUCTS,
    QUOTED_DESCRIPTION,
    QUOTED_QUERY,
    WANDS_PRODUCT_HEADER,
    esci_product,
    esci_rows,
    hash_tree,
    wands_rows,
    write_esci,
    write_wands,
)

# ----------------------------------------------------------------------------- helpers


def assert_canonical(ds: CanonicalDataset) -> None:
    """Read every table back and check it against relkd.data.schema and the shared contracts."""
    assert validate_dataset(ds.root) == []
    for name in ds.manifest.tables:
        table = ds.table(name)
        schema = TABLES[name]
        for col in schema.columns:
            if col.required:
                assert col.name in table.column_names, (name, col.name)
            if col.name in table.column_names:
                assert table.schema.field(col.name).type == col.type, (name, col.name)
                if col.required and not col.nullable:
                    assert table.column(col.name).null_count == 0, (name, col.name)
    items, queries, pairs = ds.table("items"), ds.table("queries"), ds.table("pairs")
    assert len(pc.unique(items["item_id"])) == items.num_rows
    assert len(pc.unique(queries["query_id"])) == queries.num_rows
    assert len(pc.unique(pairs["pair_id"])) == pairs.num_rows
    assert set(pairs["split"].to_pylist()) <= set(SPLITS)
    assert set(queries["bucket"].to_pylist()) <= set(BUCKETS)
    assert set(pairs["item_id"].to_pylist()) <= set(items["item_id"].to_pylist())
    assert set(pairs["query_id"].to_pylist()) <= set(queries["query_id"].to_pylist())
    labels = {x for x in pairs["label"].to_pylist() if x is not None}
    assert labels <= set(ds.scheme.labels)
    assert all(t.strip() for t in items["title"].to_pylist())
    assert all(t.strip() for t in queries["text"].to_pylist())
    query_split: dict[str, str] = {}
    for q, s in zip(pairs["query_id"].to_pylist(), pairs["split"].to_pylist(), strict=True):
        assert query_split.setdefault(q, s) == s, f"query {q} is in two splits"


def rows_by(table: pa.Table, key: str) -> dict:
    return {row[key]: row for row in table.to_pylist()}


def error_text(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# ----------------------------------------------------------------------------- ESCI


@pytest.fixture()
def esci_src(tmp_path: Path) -> Path:
    return write_esci(tmp_path / "esci")


def test_esci_cli_us_small(esci_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = hash_tree(esci_src)
    out = tmp_path / "esci-us"
    rc = main(["data", "import", "esci", str(esci_src), "--out", str(out), "--val-fraction", "0.3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "examples_dropped_locale: 30" in printed
    assert hash_tree(esci_src) == before

    ds = CanonicalDataset(out)
    assert_canonical(ds)
    assert ds.manifest.label_scheme == "esci"
    examples, _ = esci_rows()
    expected = {
        r["example_id"]: r
        for r in examples
        if r["product_locale"] == "us" and r["small_version"] == 1
    }
    pairs = ds.table("pairs")
    assert pairs.num_rows == len(expected) == 54
    letters = {"E": "Exact", "S": "Substitute", "C": "Complement", "I": "Irrelevant"}
    items = rows_by(ds.table("items"), "item_id")
    queries = rows_by(ds.table("queries"), "query_id")
    for row in pairs.to_pylist():
        up = expected[row["pair_id"]]  # pair_id = example_id
        assert row["label"] == letters[up["esci_label"]]
        assert row["item_id"] == up["product_id"]
        assert row["query_id"] == str(up["query_id"])
        # the us product, not the es/jp product with the same product_id
        assert items[row["item_id"]]["title"] == f"us title {up['product_id']}"
        assert queries[row["query_id"]]["text"] == up["query"]
        if up["split"] == "test":
            assert row["split"] == "test"
        else:
            assert row["split"] in ("train", "val")
    assert set(pairs["split"].to_pylist()) == {"train", "val", "test"}
    # items: attributes of the join, bullet points kept, null description allowed
    some = items["B0001"]
    assert some["bullet_point"] == "us bullet one\nus bullet two"
    assert some["description"] is None and some["color"] == "black"
    assert "UNUSED0001" not in items

    m = ds.manifest
    assert m.source["kind"] == "esci"
    assert m.source["params"]["locale"] == "us" and m.source["params"]["version"] == "small"
    assert m.source["inputs"] == {
        ESCI_EXAMPLES: sha256_file(esci_src / ESCI_EXAMPLES),
        ESCI_PRODUCTS: sha256_file(esci_src / ESCI_PRODUCTS),
    }
    imp = m.stats["import"]
    assert imp["examples_read"] == 102
    assert imp["examples_dropped_locale"] == 30
    assert imp["examples_dropped_version"] == 18
    assert imp["pairs_kept"] == 54
    assert m.stats["bucket_source"] == "judged_pairs_per_query"
    assert {q["frequency"] for q in queries.values()} == {3}


def test_esci_val_is_carved_by_query_from_train(esci_src: Path, tmp_path: Path) -> None:
    ds = import_esci(esci_src, tmp_path / "o", version="large", val_fraction=0.5, seed=3)
    pairs = ds.table("pairs")
    examples, _ = esci_rows()
    upstream = {str(r["query_id"]): r["split"] for r in examples if r["product_locale"] == "us"}
    split_of = dict(zip(pairs["query_id"].to_pylist(), pairs["split"].to_pylist(), strict=True))
    val_q = {q for q, s in split_of.items() if s == "val"}
    test_q = {q for q, s in split_of.items() if s == "test"}
    assert val_q and all(upstream[q] == "train" for q in val_q)
    assert test_q == {q for q, s in upstream.items() if s == "test"}
    # deterministic: the same seed gives the same pairs; another seed another val
    again = import_esci(esci_src, tmp_path / "o2", version="large", val_fraction=0.5, seed=3)
    assert again.table("pairs").equals(pairs)
    other = import_esci(esci_src, tmp_path / "o3", version="large", val_fraction=0.5, seed=4)
    assert other.table("pairs")["split"].to_pylist() != pairs["split"].to_pylist()


def test_esci_locale_all_and_large(esci_src: Path, tmp_path: Path) -> None:
    ds = import_esci(esci_src, tmp_path / "all", locale="all", version="large")
    assert_canonical(ds)
    pairs = ds.table("pairs")
    assert pairs.num_rows == 102
    items = rows_by(ds.table("items"), "item_id")
    # the same product id in two locales is two items with their own titles
    assert items["us:B0000"]["title"] == "us title B0000"
    assert items["es:B0000"]["title"] == "es title B0000"
    assert items["jp:B0000"]["locale"] == "jp"
    assert all(":" in q for q in pairs["query_id"].to_pylist())
    assert ds.manifest.stats["import"]["examples_dropped_version"] == 0


def test_esci_single_other_locale(esci_src: Path, tmp_path: Path) -> None:
    ds = import_esci(esci_src, tmp_path / "es", locale="es", version="small")
    pairs = ds.table("pairs")
    assert pairs.num_rows == 4 * 3  # 6 es queries, 3/4 of them in small
    items = rows_by(ds.table("items"), "item_id")
    assert {it["title"] for it in items.values()} == {f"es title {i}" for i in items}


def test_esci_missing_product(tmp_path: Path) -> None:
    examples, products = esci_rows()
    products = [
        p for p in products if not (p["product_locale"] == "us" and p["product_id"] == "B0011")
    ]
    src = write_esci(tmp_path / "esci", examples, products)
    with pytest.raises(DataError) as exc:
        import_esci(src, tmp_path / "o")
    msg = error_text(exc)
    assert ESCI_PRODUCTS in msg and "product_id" in msg and "1 product(s)" in msg
    assert "us:B0011" in msg
    assert not (tmp_path / "o").exists()


def test_esci_empty_title_policy(tmp_path: Path) -> None:
    examples, products = esci_rows()
    for p in products:
        if p["product_locale"] == "us" and p["product_id"] in ("B0000", "B0020"):
            p["product_title"] = "  " if p["product_id"] == "B0000" else None
    src = write_esci(tmp_path / "esci", examples, products)
    before = hash_tree(src)
    with pytest.raises(DataError) as exc:
        import_esci(src, tmp_path / "o")
    msg = error_text(exc)
    assert ESCI_PRODUCTS in msg and "product_title" in msg and "2 product(s)" in msg
    ds = import_esci(src, tmp_path / "o", on_empty="drop")
    assert_canonical(ds)
    imp = ds.manifest.stats["import"]
    assert imp["empty_title_items_dropped"] == 2 and imp["empty_title_pairs_dropped"] == 2
    assert ds.table("pairs").num_rows == 52
    assert "B0000" not in ds.table("items")["item_id"].to_pylist()
    rc = main(
        ["data", "import", "esci", str(src), "--out", str(tmp_path / "c"), "--on-empty", "drop"]
    )
    assert rc == 0
    assert hash_tree(src) == before


def test_esci_empty_query_text(tmp_path: Path) -> None:
    examples, products = esci_rows()
    for r in examples:
        if r["query_id"] == 1:
            r["query"] = ""
    src = write_esci(tmp_path / "esci", examples, products)
    with pytest.raises(DataError) as exc:
        import_esci(src, tmp_path / "o")
    assert ESCI_EXAMPLES in error_text(exc) and "'query'" in error_text(exc)
    ds = import_esci(src, tmp_path / "o", on_empty="drop")
    assert ds.manifest.stats["import"]["empty_query_pairs_dropped"] == 3
    assert "1" not in ds.table("queries")["query_id"].to_pylist()


@pytest.mark.parametrize(
    ("which", "column", "file"),
    [("examples", "esci_label", ESCI_EXAMPLES), ("products", "product_title", ESCI_PRODUCTS)],
)
def test_esci_missing_column(tmp_path: Path, which: str, column: str, file: str) -> None:
    src = write_esci(tmp_path / "esci", drop_columns={which: [column]})
    with pytest.raises(DataError) as exc:
        import_esci(src, tmp_path / "o")
    assert file in error_text(exc) and column in error_text(exc)


def test_esci_unknown_label_and_cli_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    examples, products = esci_rows()
    examples[0]["esci_label"] = "X"
    examples[1]["esci_label"] = "X"
    src = write_esci(tmp_path / "esci", examples, products)
    rc = main(["data", "import", "esci", str(src), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert ESCI_EXAMPLES in err and "esci_label" in err and "'X': 2" in err


def test_esci_duplicate_example_id(tmp_path: Path) -> None:
    examples, products = esci_rows()
    examples[1]["example_id"] = examples[0]["example_id"]
    src = write_esci(tmp_path / "esci", examples, products)
    with pytest.raises(DataError, match="example_id"):
        import_esci(src, tmp_path / "o")


def test_esci_missing_file_and_bad_options(tmp_path: Path, esci_src: Path) -> None:
    with pytest.raises(DataError, match=ESCI_EXAMPLES):
        import_esci(tmp_path / "nowhere", tmp_path / "o")
    with pytest.raises(ConfigError):
        import_esci(esci_src, tmp_path / "o", locale="fr")
    with pytest.raises(ConfigError):
        import_esci(esci_src, tmp_path / "o", val_fraction=1.0)
    with pytest.raises(ConfigError):  # output inside the inputs would overwrite them
        import_esci(esci_src, esci_src, overwrite=True)
    (esci_src / "junk.parquet").write_bytes(b"not parquet")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / ESCI_EXAMPLES).write_bytes(b"not parquet")
    (bad / ESCI_PRODUCTS).write_bytes(b"not parquet")
    with pytest.raises(DataError, match=ESCI_EXAMPLES):
        import_esci(bad, tmp_path / "o")


def test_esci_refuses_existing_output(esci_src: Path, tmp_path: Path) -> None:
    import_esci(esci_src, tmp_path / "o")
    with pytest.raises(DataError, match="overwrite"):
        import_esci(esci_src, tmp_path / "o")
    import_esci(esci_src, tmp_path / "o", overwrite=True, locale="jp")
    assert CanonicalDataset(tmp_path / "o").manifest.source["params"]["locale"] == "jp"


def test_esci_product_title_join_uses_locale(tmp_path: Path) -> None:
    examples = [r for r in esci_rows()[0] if r["query_id"] in (0, 100)]
    products = [
        esci_product("es", "B0000", "es only title"),
        esci_product("us", "B0000", "us only title"),
        esci_product("us", "B0001"),
        esci_product("us", "B0002"),
        esci_product("es", "B0001"),
        esci_product("es", "B0002"),
    ]
    src = write_esci(tmp_path / "esci", examples, products)
    ds = import_esci(src, tmp_path / "o", locale="all")
    items = rows_by(ds.table("items"), "item_id")
    assert items["us:B0000"]["title"] == "us only title"
    assert items["es:B0000"]["title"] == "es only title"


# ----------------------------------------------------------------------------- WANDS


@pytest.fixture()
def wands_src(tmp_path: Path) -> Path:
    return write_wands(tmp_path / "wands")


def test_wands_cli_import(wands_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = hash_tree(wands_src)
    out = tmp_path / "wands-out"
    rc = main(
        ["data", "import", "wands", str(wands_src), "--out", str(out), "--val-fraction", "0.25",
         "--test-fraction", "0.25", "--seed", "1"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "conflicting_groups: 2" in printed and "duplicate_rows_removed: 4" in printed
    assert hash_tree(wands_src) == before

    ds = CanonicalDataset(out)
    assert_canonical(ds)
    assert ds.manifest.label_scheme == "wands"
    pairs = ds.table("pairs")
    assert pairs.num_rows == 48
    imp = ds.manifest.stats["import"]
    assert imp["label_rows_read"] == 52
    assert imp["duplicate_groups"] == 3
    assert imp["duplicate_rows_removed"] == 4
    assert imp["conflicting_groups"] == 2
    by_pair = {(r["query_id"], r["item_id"]): r for r in pairs.to_pylist()}
    assert by_pair[("0", "1")]["label"] == "Exact"  # majority beats the lowest id's Partial
    assert by_pair[("0", "1")]["pair_id"] == 1000  # lowest id of the group
    assert by_pair[("1", "2")]["label"] == "Partial"  # tie -> lowest id row (9001)
    assert by_pair[("1", "2")]["pair_id"] == 9001
    assert by_pair[("2", "3")]["pair_id"] == 1003 and by_pair[("2", "3")]["label"] == "Exact"
    assert set(pairs["split"].to_pylist()) == {"train", "val", "test"}

    items = rows_by(ds.table("items"), "item_id")
    assert len(items) == 20  # the whole catalogue
    assert items["0"]["description"] == QUOTED_DESCRIPTION
    assert items["0"]["category"] == "Browse By Brand"
    assert items["1"]["category"] == "Furniture"
    assert items["0"]["product_type"] == "Teen Lounge Furniture|Accent Chairs"
    assert json.loads(items["0"]["attributes"]) == {
        "overallwidth-sidetoside": "64.7",
        "producttype": "slow cooker",
        "color": "red|blue",
        "_unparsed": ": gray wood|malformedentry",
    }
    assert items["0"]["features_raw"].startswith("overallwidth-sidetoside:64.7|")
    assert items["6"]["attributes"] is None and items["5"]["description"] is None
    assert items["3"]["rating_count"] == 30 and items["3"]["average_rating"] == 4.5
    assert items["7"]["rating_count"] is None
    item_schema = ds.table("items").schema
    assert item_schema.field("rating_count").type == pa.int64()
    assert item_schema.field("average_rating").type == pa.float64()
    queries = rows_by(ds.table("queries"), "query_id")
    assert queries["4"]["text"] == QUOTED_QUERY
    assert queries["5"]["query_class"] is None
    assert ds.manifest.stats["import"]["features_malformed_entries"] == 2
    assert ds.manifest.source["kind"] == "wands"
    assert set(ds.manifest.source["inputs"]) == {"product.csv", "query.csv", "label.csv"}
    assert ds.manifest.stats["bucket_source"] == "judged_pairs_per_query"


def test_wands_dedup_is_order_independent(tmp_path: Path) -> None:
    products, queries, labels = wands_rows()
    a = import_wands(write_wands(tmp_path / "a", products, queries, labels), tmp_path / "oa")
    b = import_wands(
        write_wands(tmp_path / "b", products, queries, list(reversed(labels))), tmp_path / "ob"
    )
    assert a.table("pairs").equals(b.table("pairs"))


@pytest.mark.parametrize("header", ["category hierarchy", "category_hierarchy"])
def test_wands_category_header_spellings(tmp_path: Path, header: str) -> None:
    names = [header if h == "category hierarchy" else h for h in WANDS_PRODUCT_HEADER]
    src = write_wands(tmp_path / "w", product_header=names)
    ds = import_wands(src, tmp_path / "o")
    items = rows_by(ds.table("items"), "item_id")
    assert items["1"]["category"] == "Furniture"
    assert items["1"]["category_hierarchy"] == "Furniture / Bedroom Furniture / Beds"


def test_wands_bare_quotes_and_commas(tmp_path: Path) -> None:
    """A quote in the middle of an unquoted field (and a comma) is read literally."""
    src = write_wands(tmp_path / "w")
    path = src / "product.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "\t".join(
        ["1", 'oak 24" desk, walnut', "Desks", "Furniture / Desks", 'a 24" wide, "tall" desk',
         "material:oak", "1.0", "5.0", "1.0"]
    )  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = import_wands(src, tmp_path / "o")
    item = rows_by(ds.table("items"), "item_id")["1"]
    assert item["title"] == 'oak 24" desk, walnut'
    assert item["description"] == 'a 24" wide, "tall" desk'


def test_wands_missing_column_names_file(tmp_path: Path) -> None:
    src = write_wands(tmp_path / "w", label_header=["id", "query_id", "product_id", "grade"])
    with pytest.raises(DataError) as exc:
        import_wands(src, tmp_path / "o")
    msg = error_text(exc)
    assert "label.csv" in msg and "'label'" in msg
    names = [h for h in WANDS_PRODUCT_HEADER if h != "category hierarchy"]
    products = [row[:3] + row[4:] for row in wands_rows()[0]]
    src = write_wands(tmp_path / "w2", products=products, product_header=names)
    with pytest.raises(DataError) as exc:
        import_wands(src, tmp_path / "o")
    msg = error_text(exc)
    assert "product.csv" in msg and "category_hierarchy" in msg and "category hierarchy" in msg


def test_wands_unknown_label(tmp_path: Path) -> None:
    products, queries, labels = wands_rows()
    labels[0][3] = "Relevant"
    labels[1][3] = "exact"
    src = write_wands(tmp_path / "w", products, queries, labels)
    with pytest.raises(DataError) as exc:
        import_wands(src, tmp_path / "o")
    msg = error_text(exc)
    assert (
        "label.csv" in msg and "'label'" in msg and "'Relevant': 1" in msg and "'exact': 1" in msg
    )


def test_wands_empty_texts(tmp_path: Path) -> None:
    products, queries, labels = wands_rows()
    queries[3][1] = ""
    products[2][1] = " "
    src = write_wands(tmp_path / "w", products, queries, labels)
    before = hash_tree(src)
    with pytest.raises(DataError) as exc:
        import_wands(src, tmp_path / "o")
    assert "product.csv" in error_text(exc) and "product_name" in error_text(exc)
    ds = import_wands(src, tmp_path / "o", on_empty="drop")
    assert_canonical(ds)
    imp = ds.manifest.stats["import"]
    assert imp["empty_title_items_dropped"] == 1 and imp["empty_query_queries_dropped"] == 1
    pairs = ds.table("pairs")
    assert "3" not in pairs["query_id"].to_pylist() and "2" not in pairs["item_id"].to_pylist()
    assert imp["empty_text_pairs_dropped"] == 52 - imp["duplicate_rows_removed"] - pairs.num_rows
    assert imp["duplicate_rows_removed"] == 3  # the (q1, p2) group went with product 2
    assert hash_tree(src) == before


def test_wands_dangling_and_duplicate_ids(tmp_path: Path) -> None:
    products, queries, labels = wands_rows()
    src = write_wands(tmp_path / "w", products, queries, [*labels, [77777, 0, 999, "Exact"]])
    with pytest.raises(DataError) as exc:
        import_wands(src, tmp_path / "o")
    assert "product.csv" in error_text(exc) and "product_id" in error_text(exc)
    assert "'999'" in error_text(exc)
    src = write_wands(tmp_path / "w2", [*products, products[0]], queries, labels)
    with pytest.raises(DataError, match="duplicate"):
        import_wands(src, tmp_path / "o")


def test_wands_ragged_file(tmp_path: Path) -> None:
    src = write_wands(tmp_path / "w")
    with open(src / "query.csv", "a", encoding="utf-8") as fh:
        fh.write("99\tno class column\textra\tfield\n")
    with pytest.raises(DataError, match=r"query\.csv"):
        import_wands(src, tmp_path / "o")


def test_parse_features() -> None:
    obj, malformed, repeated = parse_features("a:1|b : two words|c:x:y||nokey| : v|a:3")
    assert json.loads(obj) == {"a": "1|3", "b": "two words", "c": "x:y", "_unparsed": "nokey|: v"}
    assert (malformed, repeated) == (2, 1)
    assert parse_features("") == (None, 0, 0)
    assert parse_features(None) == (None, 0, 0)


# ----------------------------------------------------------------------------- tables


def _write_table_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = folder / "pairs.csv"
    pairs.write_text(
        "query_id,item_id,label,note\n"
        + "".join(
            f"q{q},i{(q + j) % 8},{['Exact', 'S', 'complement', 'I', ''][(q + j) % 5]},x\n"
            for q in range(20)
            for j in range(3)
        ),
        encoding="utf-8",
    )
    items = folder / "items.csv"
    items.write_text(
        "item_id,title,brand,attributes,extra\n"
        + "".join(
            f'i{i},"Lamp {i}, 24"" brass",{"Acme" if i % 2 else ""},'
            f'"{{""material"": ""oak"", ""n"": {i}}}",e{i}\n'
            for i in range(8)
        )
        + "i99,Unused item,,,\n",
        encoding="utf-8",
    )
    queries = folder / "queries.csv"
    queries.write_text(
        "query_id,text,frequency,locale\n"
        + "".join(f"q{q},query {q},{100 - q},us\n" for q in range(20)),
        encoding="utf-8",
    )
    behavior = folder / "behavior.csv"
    behavior.write_text(
        "query_id,item_id,impressions,clicks,user_id,timestamp,position,session\n"
        "q0,i0,10,2,u1,1700000000,1,s\n"
        "q1,i3,5,0,,2023-11-14T22:13:20,2,s\n",
        encoding="utf-8",
    )
    return {"pairs": pairs, "items": items, "queries": queries, "behavior": behavior}


def test_table_csv_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = _write_table_inputs(tmp_path / "in")
    before = hash_tree(tmp_path / "in")
    out = tmp_path / "out"
    rc = main(
        ["data", "import", "table", "--pairs", str(files["pairs"]), "--items", str(files["items"]),
         "--queries", str(files["queries"]), "--behavior", str(files["behavior"]),
         "--scheme", "esci", "--out", str(out), "--val-fraction", "0.2", "--test-fraction", "0.2"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert hash_tree(tmp_path / "in") == before
    ds = CanonicalDataset(out)
    assert_canonical(ds)
    pairs = ds.table("pairs")
    imp = ds.manifest.stats["import"]
    # an empty label = unlabelled; only train keeps unlabelled pairs (the rest are counted)
    n_unlabelled = pairs["label"].null_count
    assert n_unlabelled + imp["unlabelled_pairs_dropped_outside_train"] == 12
    assert n_unlabelled > 0 and imp["unlabelled_pairs_dropped_outside_train"] > 0
    assert pairs.num_rows == 60 - imp["unlabelled_pairs_dropped_outside_train"]
    rows = {(r["query_id"], r["item_id"]): r for r in pairs.to_pylist()}
    assert rows[("q0", "i0")]["pair_id"] == stable_pair_id("q0", "i0")
    assert rows[("q0", "i0")]["label"] == "Exact"
    assert rows[("q0", "i1")]["label"] == "Substitute"
    assert rows[("q0", "i2")]["label"] == "Complement"
    assert all(r["split"] == "train" for r in rows.values() if r["label"] is None)
    assert "note" not in pairs.column_names
    assert set(pairs["split"].to_pylist()) == {"train", "val", "test"}
    items = rows_by(ds.table("items"), "item_id")
    assert items["i1"]["title"] == 'Lamp 1, 24" brass'
    assert json.loads(items["i3"]["attributes"]) == {"material": "oak", "n": 3}
    assert items["i0"]["brand"] is None and items["i1"]["extra"] == "e1"
    assert "i99" in items
    queries = rows_by(ds.table("queries"), "query_id")
    assert queries["q0"]["frequency"] == 100 and queries["q0"]["bucket"] == "head"
    assert queries["q19"]["bucket"] == "tail" and queries["q0"]["locale"] == "us"
    beh = ds.table("behavior").to_pylist()
    assert beh[0]["timestamp"] == 1700000000 and beh[1]["timestamp"] == 1700000000
    assert beh[1]["user_id"] is None and beh[0]["position"] == 1
    m = ds.manifest
    assert m.stats["bucket_source"] == "queries.frequency"
    assert m.stats["import"]["pairs_columns_ignored"] == ["note"]
    assert m.stats["label_counts"]["unlabelled"] == n_unlabelled
    assert m.source["kind"] == "table" and m.source["params"]["scheme"] == "esci"
    assert set(m.source["inputs"]) == {"pairs.csv", "items.csv", "queries.csv", "behavior.csv"}


def test_table_jsonl_with_split_pair_id_and_query_text(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"pair_id": 10 + k, "query_id": k // 2, "item_id": f"i{k % 3}", "label": lab,
         "split": ["train", "validation", "test"][(k // 2) % 3], "query": f"text {k // 2}"}
        for k, lab in enumerate(["Exact", None, "Irrelevant", "Partial", "exact", "PARTIAL"])
    ]  # fmt: skip
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(
            json.dumps({"item_id": f"i{i}", "title": f"t{i}", "attributes": {"color": "red"}})
            + "\n"
            for i in range(3)
        ),
        encoding="utf-8",
    )
    ds = import_table(pairs, items, tmp_path / "o", scheme="wands")
    assert_canonical(ds)
    p = ds.table("pairs")
    assert p["pair_id"].to_pylist() == [10, 11, 12, 13, 14, 15]
    assert p["query_id"].to_pylist() == ["0", "0", "1", "1", "2", "2"]
    assert p["split"].to_pylist() == ["train", "train", "val", "val", "test", "test"]
    assert p["label"].to_pylist() == ["Exact", None, "Irrelevant", "Partial", "Exact", "Partial"]
    q = rows_by(ds.table("queries"), "query_id")
    assert q["1"]["text"] == "text 1"
    items_t = rows_by(ds.table("items"), "item_id")
    assert json.loads(items_t["i0"]["attributes"]) == {"color": "red"}
    assert ds.manifest.stats["import"]["split_source"] == "pairs.split"


def test_table_parquet(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(
        pa.table(
            {
                "query_id": pa.array([1, 1, 2, 2, 2, 2], pa.int64()),
                "item_id": ["a", "b", "a", "b", "b", "b"],
                "label": ["E", "I", "S", "C", "S", "S"],
            }
        ),
        pairs,
    )
    items = tmp_path / "items.parquet"
    pq.write_table(
        pa.table({"item_id": ["a", "b"], "title": ["A", "B"], "category": ["x", None]}), items
    )
    queries = tmp_path / "queries.parquet"
    pq.write_table(
        pa.table({"query_id": ["1", "2"], "query": ["one", "two"], "bucket": ["head", "tail"]}),
        queries,
    )
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", queries=queries, seed=5)
    assert_canonical(ds)
    p = ds.table("pairs")
    assert p.num_rows == 4  # ("2", "b") collapsed: C, S, S -> Substitute
    row = next(r for r in p.to_pylist() if (r["query_id"], r["item_id"]) == ("2", "b"))
    assert row["label"] == "Substitute"
    assert ds.manifest.stats["import"]["conflicting_groups"] == 1
    assert ds.manifest.stats["bucket_source"] == "queries.bucket"
    assert rows_by(ds.table("queries"), "query_id")["2"]["bucket"] == "tail"


def test_table_unknown_labels(tmp_path: Path) -> None:
    files = _write_table_inputs(tmp_path / "in")
    text = files["pairs"].read_text().replace(",Exact,", ",Relevant,").replace(",I,", ",2,")
    files["pairs"].write_text(text)
    with pytest.raises(DataError) as exc:
        import_table(
            files["pairs"], files["items"], tmp_path / "o", scheme="esci", queries=files["queries"]
        )
    msg = error_text(exc)
    assert "pairs.csv" in msg and "'label'" in msg and "'Relevant': 12" in msg and "'2': 12" in msg


def test_table_query_in_two_splits(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("query_id,item_id,label,split,query\nq1,a,E,train,x\nq1,b,I,test,x\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,A\nb,B\n")
    with pytest.raises(DataError) as exc:
        import_table(pairs, items, tmp_path / "o", scheme="esci")
    assert (
        "pairs.csv" in error_text(exc) and "'split'" in error_text(exc) and "q1" in error_text(exc)
    )


def test_table_reference_and_id_errors(tmp_path: Path) -> None:
    files = _write_table_inputs(tmp_path / "in")
    items_text = files["items"].read_text()
    files["items"].write_text(
        "\n".join(line for line in items_text.splitlines() if not line.startswith("i5,")) + "\n"
    )
    with pytest.raises(DataError) as exc:
        import_table(
            files["pairs"], files["items"], tmp_path / "o", scheme="esci", queries=files["queries"]
        )
    assert (
        "items.csv" in error_text(exc)
        and "item_id" in error_text(exc)
        and "'i5'" in error_text(exc)
    )
    files["items"].write_text(items_text + "i1,Dup,,,\n")
    with pytest.raises(DataError) as exc:
        import_table(
            files["pairs"], files["items"], tmp_path / "o", scheme="esci", queries=files["queries"]
        )
    assert "items.csv" in error_text(exc) and "duplicate" in error_text(exc)
    files["items"].write_text(items_text)
    with pytest.raises(DataError, match="no query text"):
        import_table(files["pairs"], files["items"], tmp_path / "o", scheme="esci")
    files["items"].write_text(items_text.replace("item_id,title", "item_id,name"))
    with pytest.raises(DataError) as exc:
        import_table(
            files["pairs"], files["items"], tmp_path / "o", scheme="esci", queries=files["queries"]
        )
    assert "items.csv" in error_text(exc) and "'title'" in error_text(exc)


def test_table_empty_title_policy_and_behavior(tmp_path: Path) -> None:
    files = _write_table_inputs(tmp_path / "in")
    files["items"].write_text(files["items"].read_text().replace('i0,"Lamp 0, 24"" brass"', "i0,"))
    kwargs = {"scheme": "esci", "queries": files["queries"], "behavior": files["behavior"]}
    with pytest.raises(DataError) as exc:
        import_table(files["pairs"], files["items"], tmp_path / "o", **kwargs)
    assert (
        "items.csv" in error_text(exc)
        and "'title'" in error_text(exc)
        and "'i0'" in error_text(exc)
    )
    ds = import_table(files["pairs"], files["items"], tmp_path / "o", on_empty="drop", **kwargs)
    assert_canonical(ds)
    imp = ds.manifest.stats["import"]
    assert imp["empty_title_items_dropped"] == 1
    kept = ds.table("pairs").num_rows
    assert imp["empty_text_pairs_dropped"] > 0
    assert (
        imp["empty_text_pairs_dropped"] + imp["unlabelled_pairs_dropped_outside_train"] == 60 - kept
    )
    assert "i0" not in ds.table("pairs")["item_id"].to_pylist()
    assert imp["behavior_rows_dropped_empty_text"] == 1 and ds.table("behavior").num_rows == 1
    files["behavior"].write_text("query_id,item_id,impressions,clicks\nq0,i1,1,3\n")
    with pytest.raises(DataError, match="clicks"):
        import_table(files["pairs"], files["items"], tmp_path / "o2", on_empty="drop", **kwargs)


def test_table_bad_file_type(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.xlsx"
    bad.write_bytes(b"x")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\na,A\n")
    with pytest.raises(DataError, match="unknown file type"):
        import_table(bad, items, tmp_path / "o", scheme="esci")


# ----------------------------------------------------------------------------- tables: bad values


def _small_pairs_items(folder: Path) -> tuple[Path, Path]:
    """Two labelled pairs with query text and their two items, as CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = folder / "pairs.csv"
    pairs.write_text("query_id,item_id,label,query\nq1,a,E,lamp\nq2,b,I,desk\n")
    items = folder / "items.csv"
    items.write_text("item_id,title\na,A\nb,B\n")
    return pairs, items


def _behavior_timestamps(tmp_path: Path, values: list[str]) -> list[int | None]:
    pairs, items = _small_pairs_items(tmp_path / "in")
    behavior = tmp_path / "in" / "behavior.csv"
    behavior.write_text(
        "query_id,item_id,impressions,clicks,timestamp\n"
        + "".join(f"q1,a,1,0,{v}\n" for v in values)
    )
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", behavior=behavior)
    return ds.table("behavior")["timestamp"].to_pylist()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2024-01-01T00:00:00Z", 1704067200),
        ("2024-01-01T00:00:00+02:00", 1704067200 - 7200),
        ("2024-01-01T00:00:00-02:30", 1704067200 + 9000),
        ("2024-01-01T00:00:00.5", 1704067200),  # sub-second precision is floored
        ("2024-01-01T00:00:00.999+01:00", 1704067200 - 3600),
        ("1969-12-31T23:59:59.5", -1),  # floored, not truncated towards zero
        ("2024-01-01", 1704067200),
        ("1700000000", 1700000000),
    ],
)
def test_table_timestamp_iso_8601_text(tmp_path: Path, text: str, seconds: int) -> None:
    assert _behavior_timestamps(tmp_path, [text]) == [seconds]


def test_table_timestamp_mixed_text_forms_keep_row_order(tmp_path: Path) -> None:
    values = ["2024-01-01T00:00:00Z", "", "1700000000", "2024-01-01T00:00:00.25"]
    assert _behavior_timestamps(tmp_path, values) == [1704067200, None, 1700000000, 1704067200]


def test_table_timestamp_bad_text_names_file_column_and_values(tmp_path: Path) -> None:
    # '2024-13-01' has the ISO shape but no such month; 'yesterday' has no ISO shape at all
    with pytest.raises(DataError) as exc:
        _behavior_timestamps(tmp_path, ["2024-01-01T00:00:00Z", "2024-13-01", "yesterday"])
    msg = error_text(exc)
    assert "behavior.csv" in msg and "'timestamp'" in msg
    assert "2 value(s)" in msg and "'2024-13-01'" in msg and "'yesterday'" in msg


@pytest.mark.parametrize(
    ("array", "seconds"),
    [
        (pa.array([1500, -1500, None], pa.timestamp("ms")), [1, -2, None]),
        (pa.array([1_999_999, 0, None], pa.timestamp("us", "Europe/Berlin")), [1, 0, None]),
        (pa.array([2_500_000_000, 1, None], pa.timestamp("ns", "UTC")), [2, 0, None]),
        (pa.array([1, -1, None], pa.date32()), [86400, -86400, None]),
    ],
)
def test_table_timestamp_parquet_sub_second_is_floored(
    tmp_path: Path, array: pa.Array, seconds: list[int | None]
) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    behavior = tmp_path / "in" / "behavior.parquet"
    pq.write_table(
        pa.table(
            {
                "query_id": ["q1"] * 3,
                "item_id": ["a"] * 3,
                "impressions": [1] * 3,
                "clicks": [0] * 3,
                "timestamp": array,
            }
        ),
        behavior,
    )
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", behavior=behavior)
    assert ds.table("behavior")["timestamp"].to_pylist() == seconds


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("items", "title", {"en": "Lamp"}),
        ("items", "brand", ["Acme"]),
        ("items", "category", {"top": "lighting"}),
        ("items", "description", ["a", "b"]),
        ("items", "product_type", [1]),
        ("pairs", "aspect_brand", ["match"]),
        ("pairs", "query", ["lamp"]),
        ("pairs", "label", ["E"]),
        ("pairs", "split", ["train"]),
    ],
)
def test_table_nested_values_in_text_columns(
    tmp_path: Path, table: str, column: str, value: object
) -> None:
    rows = {
        "pairs": [
            {"query_id": "q1", "item_id": "a", "label": "E", "query": "lamp", "split": "train"},
            {"query_id": "q2", "item_id": "b", "label": "I", "query": "desk", "split": "train"},
        ],
        "items": [{"item_id": "a", "title": "A"}, {"item_id": "b", "title": "B"}],
    }
    for row in rows[table]:
        row[column] = value
    paths = {}
    for name, content in rows.items():
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in content))
    with pytest.raises(DataError) as exc:
        import_table(paths["pairs"], paths["items"], tmp_path / "o", scheme="esci")
    msg = error_text(exc)
    assert f"{table}.jsonl" in msg and f"column {column!r}" in msg and "nested" in msg


def test_table_nested_parquet_text_column(tmp_path: Path) -> None:
    pairs, _ = _small_pairs_items(tmp_path / "in")
    pq_items = tmp_path / "in" / "items.parquet"
    pq.write_table(
        pa.table({"item_id": ["a", "b"], "title": ["A", "B"], "color": [["red"], ["blue"]]}),
        pq_items,
    )
    with pytest.raises(DataError) as exc:
        import_table(pairs, pq_items, tmp_path / "o", scheme="esci")
    assert "items.parquet" in error_text(exc) and "'color'" in error_text(exc)


def test_table_nested_behavior_user_id(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    behavior = tmp_path / "in" / "behavior.jsonl"
    behavior.write_text(
        json.dumps({"query_id": "q1", "item_id": "a", "impressions": 1, "clicks": 0,
                    "user_id": {"id": 7}}) + "\n"
    )  # fmt: skip
    with pytest.raises(DataError) as exc:
        import_table(pairs, items, tmp_path / "o", scheme="esci", behavior=behavior)
    assert "behavior.jsonl" in error_text(exc) and "'user_id'" in error_text(exc)


@pytest.mark.parametrize("column", ["query_id", "item_id"])
def test_table_parquet_nan_id_is_a_blank_id(tmp_path: Path, column: str) -> None:
    _, items = _small_pairs_items(tmp_path / "in")
    cols = {"query_id": ["q1", "q2"], "item_id": ["a", "b"], "label": ["E", "I"]}
    cols[column] = pa.array([1.0, float("nan")])
    pq_pairs = tmp_path / "in" / "pairs.parquet"
    pq.write_table(pa.table({**cols, "query": ["lamp", "desk"]}), pq_pairs)
    with pytest.raises(DataError) as exc:
        import_table(pq_pairs, items, tmp_path / "o", scheme="esci")
    msg = error_text(exc)
    assert "pairs.parquet" in msg and f"column {column!r} is empty in 1 row(s)" in msg
    assert "data rows [2]" in msg


def test_table_parquet_nan_pair_id_is_empty(tmp_path: Path) -> None:
    _, items = _small_pairs_items(tmp_path / "in")
    pq_pairs = tmp_path / "in" / "pairs.parquet"
    pq.write_table(
        pa.table(
            {"pair_id": [1.0, float("nan")], "query_id": ["q1", "q2"], "item_id": ["a", "b"],
             "label": ["E", "I"], "query": ["lamp", "desk"]}
        ),
        pq_pairs,
    )  # fmt: skip
    with pytest.raises(DataError, match=r"pairs\.parquet: column 'pair_id' is empty in 1 row"):
        import_table(pq_pairs, items, tmp_path / "o", scheme="esci")


def test_table_parquet_nan_position_is_null(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    behavior = tmp_path / "in" / "behavior.parquet"
    pq.write_table(
        pa.table({"query_id": ["q1", "q1"], "item_id": ["a", "a"], "impressions": [1, 1],
                  "clicks": [0, 0], "position": [2.0, float("nan")]}),
        behavior,
    )  # fmt: skip
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", behavior=behavior)
    assert ds.table("behavior")["position"].to_pylist() == [2, None]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("1e20", "outside the int64 range"),
        ("100000000000000000000", "outside the int64 range"),
        ("-9223372036854775809", "outside the int64 range"),
        ("9007199254740993.0", "too large to read exactly"),
    ],
)
def test_table_pair_id_out_of_range(tmp_path: Path, value: str, why: str) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    pairs.write_text(f"pair_id,query_id,item_id,label,query\n{value},q1,a,E,lamp\n2,q2,b,I,desk\n")
    with pytest.raises(DataError) as exc:
        import_table(pairs, items, tmp_path / "o", scheme="esci")
    msg = error_text(exc)
    assert "pairs.csv" in msg and "'pair_id'" in msg and why in msg and repr(value) in msg


def test_table_large_pair_id_digits_are_exact(tmp_path: Path) -> None:
    # digits are read as integers, not via float, even when another row needs the float path
    pairs, items = _small_pairs_items(tmp_path / "in")
    pairs.write_text(
        "pair_id,query_id,item_id,label,query\n9007199254740993,q1,a,E,lamp\n2.0,q2,b,I,desk\n"
    )
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci")
    assert ds.table("pairs")["pair_id"].to_pylist() == [2, 9007199254740993]


@pytest.mark.parametrize(
    ("attributes", "rows"),
    [
        (pa.array([{"raw": b"\x00\xff"}, None], pa.struct([("raw", pa.binary())])), "[1]"),
        (pa.array([{"w": 1.0}, {"w": float("nan")}], pa.struct([("w", pa.float64())])), "[2]"),
    ],
)
def test_table_attributes_not_json_serialisable(
    tmp_path: Path, attributes: pa.Array, rows: str
) -> None:
    pairs, _ = _small_pairs_items(tmp_path / "in")
    items = tmp_path / "in" / "items.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"], "title": ["A", "B"], "attributes": attributes}),
                   items)  # fmt: skip
    with pytest.raises(DataError) as exc:
        import_table(pairs, items, tmp_path / "o", scheme="esci")
    msg = error_text(exc)
    assert "items.parquet" in msg and "'attributes'" in msg and f"data rows {rows}" in msg


def test_table_attributes_empty_list_is_not_an_object(tmp_path: Path) -> None:
    pairs, _ = _small_pairs_items(tmp_path / "in")
    items = tmp_path / "in" / "items.jsonl"
    items.write_text(
        json.dumps({"item_id": "a", "title": "A", "attributes": []}) + "\n"
        + json.dumps({"item_id": "b", "title": "B", "attributes": []}) + "\n"
    )  # fmt: skip
    with pytest.raises(DataError, match=r"items\.jsonl: column 'attributes' must hold JSON obj"):
        import_table(pairs, items, tmp_path / "o", scheme="esci")


def test_table_parquet_map_attributes(tmp_path: Path) -> None:
    pairs, _ = _small_pairs_items(tmp_path / "in")
    items = tmp_path / "in" / "items.parquet"
    attrs = pa.array([[("material", "oak")], []], pa.map_(pa.string(), pa.string()))
    pq.write_table(pa.table({"item_id": ["a", "b"], "title": ["A", "B"], "attributes": attrs}),
                   items)  # fmt: skip
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci")
    assert ds.table("items")["attributes"].to_pylist() == ['{"material": "oak"}', None]


def test_unparseable_numbers_are_all_counted_and_shown_in_row_order() -> None:
    """Every bad value of a large column is counted and the first ones are shown in row order.
    (Speed is a benchmark matter; tests hold no timing thresholds.)"""
    from relkd.data.loaders.column_checks import float_column, int_column

    n = 100_000
    values = [f"{i}.0" for i in range(n)]
    values[7], values[n // 2], values[-1] = "x", "1,5", "x"
    table = pa.table({"rating": values})
    for reader, what in ((float_column, "numbers"), (int_column, "integers")):
        with pytest.raises(DataError) as exc:
            reader(table, "rating", "ratings.csv")
        assert error_text(exc) == (
            f"ratings.csv: column 'rating' must hold {what}; 3 value(s) do not parse, "
            "e.g. ['x', '1,5', 'x']"
        )


def test_cast_failures_agree_with_arrow() -> None:
    """The regex pre-check never reports a value the Arrow cast would accept, nor misses one."""
    from relkd.data.loaders.column_checks import FLOAT_TEXT, cast_failures

    texts = ["1", "1.5", "-1", "+1", ".5", "1.", "1e5", "1E-5", "inf", "-Infinity", "NaN",
             "nan(1)", "00012", "1e400", "+.5", " 1", "1 ", "1,5", "0x10", "1_000", "1e", "e5",
             "--1", "1.5.", "1d", "١", ".e5", ".", "-", "infin", None]  # fmt: skip
    arr = pa.array(texts, pa.string())
    expected = []
    for t in texts:
        try:
            pa.array([t], pa.string()).cast(pa.float64())
            expected.append(False)
        except pa.ArrowInvalid:
            expected.append(True)
    assert cast_failures(arr, pa.float64(), FLOAT_TEXT).tolist() == expected


def test_table_frequency_partly_empty_is_an_error(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    queries = tmp_path / "in" / "queries.csv"
    queries.write_text("query_id,text,frequency\nq1,lamp,5\nq2,desk,\n")
    with pytest.raises(DataError) as exc:
        import_table(pairs, items, tmp_path / "o", scheme="esci", queries=queries)
    msg = error_text(exc)
    assert "queries.csv" in msg and "column 'frequency' is empty for 1 of 2" in msg
    assert "'q2'" in msg and "every query" in msg


def test_table_frequency_empty_for_all_uses_the_proxy(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    queries = tmp_path / "in" / "queries.csv"
    queries.write_text("query_id,text,frequency\nq1,lamp,\nq2,desk,\n")
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", queries=queries)
    assert ds.manifest.stats["bucket_source"] == "judged_pairs_per_query"
    assert ds.manifest.stats["import"]["queries_empty_columns_ignored"] == ["frequency"]
    assert ds.table("queries")["frequency"].to_pylist() == [1, 1]  # judged pairs per query


def test_table_parquet_frequency_all_nan_uses_the_proxy(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    queries = tmp_path / "in" / "queries.parquet"
    pq.write_table(
        pa.table({"query_id": ["q1", "q2"], "text": ["lamp", "desk"],
                  "frequency": [float("nan"), None]}),
        queries,
    )  # fmt: skip
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", queries=queries)
    assert ds.manifest.stats["bucket_source"] == "judged_pairs_per_query"
    assert ds.manifest.stats["import"]["queries_empty_columns_ignored"] == ["frequency"]


def test_table_bucket_partly_empty_is_an_error(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    queries = tmp_path / "in" / "queries.csv"
    queries.write_text("query_id,text,bucket,frequency\nq1,lamp,head,5\nq2,desk,,3\n")
    with pytest.raises(DataError) as exc:
        import_table(pairs, items, tmp_path / "o", scheme="esci", queries=queries)
    msg = error_text(exc)
    assert "queries.csv" in msg and "column 'bucket' is empty for 1 of 2" in msg
    assert "'q2'" in msg and "['']" not in msg


def test_table_bucket_empty_for_all_uses_frequency(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    queries = tmp_path / "in" / "queries.csv"
    queries.write_text("query_id,text,bucket,frequency\nq1,lamp,,5\nq2,desk,,3\n")
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", queries=queries)
    assert ds.manifest.stats["bucket_source"] == "queries.frequency"
    assert ds.manifest.stats["import"]["queries_empty_columns_ignored"] == ["bucket"]
    assert ds.table("queries")["frequency"].to_pylist() == [5, 3]


def test_table_frequency_beside_bucket_may_be_partly_empty(tmp_path: Path) -> None:
    pairs, items = _small_pairs_items(tmp_path / "in")
    queries = tmp_path / "in" / "queries.csv"
    queries.write_text("query_id,text,bucket,frequency\nq1,lamp,head,5\nq2,desk,tail,\n")
    ds = import_table(pairs, items, tmp_path / "o", scheme="esci", queries=queries)
    assert ds.manifest.stats["bucket_source"] == "queries.bucket"
    q = ds.table("queries")
    assert q["frequency"].to_pylist() == [5, None] and q["bucket"].to_pylist() == ["head", "tail"]


# ----------------------------------------------------------------------------- download


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise urllib.error.URLError("connection reset")
        return super().read(min(n, 4) if n and n > 0 else n)


def test_download_wands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    seen: list[str] = []

    def fake_urlopen(request, timeout=None):
        url = request.full_url
        seen.append(url)
        if url.endswith("product.csv") and "raw.githubusercontent" in url:
            return _FakeResponse(b"version https://git-lfs.github.com/spec/v1\noid sha256:x\n")
        return _FakeResponse(f"content of {url.rsplit('/', 1)[1]}\n".encode())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    rc = main(["data", "download", "wands", "--to", str(tmp_path / "wands")])
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "wands").iterdir())
    assert files == ["label.csv", "product.csv", "query.csv"]  # no .part left behind
    assert (tmp_path / "wands" / "product.csv").read_text() == "content of product.csv\n"
    assert any("media.githubusercontent.com/media/wayfair/WANDS" in u for u in seen)
    printed = capsys.readouterr().out
    assert "relkd data import wands" in printed and "fetched" in printed
    # a second run keeps the files
    seen.clear()
    dl.download("wands", tmp_path / "wands")
    assert seen == []


def test_download_esci_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_urlopen(request, timeout=None):
        seen.append(request.full_url)
        fail = 8 if "products" in request.full_url else None
        return _FakeResponse(b"PAR1" + b"x" * 32, fail_after=fail)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(dl.DownloadError) as exc:
        dl.download("esci", tmp_path / "esci", out=io.StringIO())
    assert ESCI_PRODUCTS in str(exc.value)
    names = sorted(p.name for p in (tmp_path / "esci").iterdir())
    assert names == [ESCI_EXAMPLES]  # the failed file left neither a .part nor a partial file
    assert all(
        u.startswith("https://media.githubusercontent.com/media/amazon-science/esci-data/")
        for u in seen
    )
    assert all("/shopping_queries_dataset/" in u for u in seen)


def test_download_into_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_urlopen(request, timeout=None):
        return _FakeResponse(f"content of {request.full_url.rsplit('/', 1)[1]}\n".encode())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    folder = tmp_path / "raw"
    folder.mkdir()
    monkeypatch.chdir(folder)
    out = io.StringIO()
    done = dl.download("wands", ".", out=out)
    assert sorted(p.name for p in done) == ["label.csv", "product.csv", "query.csv"]
    assert (folder / "query.csv").read_text() == "content of query.csv\n"
    assert f"--out {tmp_path / 'raw-canonical'}" in out.getvalue()


def test_download_is_pinned_and_refuses_a_file_of_another_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    seen: list[str] = []

    def fake_urlopen(request, timeout=None):
        seen.append(request.full_url)
        return _FakeResponse(f"content of {request.full_url.rsplit('/', 1)[1]}\n".encode())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    good = {
        n: hashlib.sha256(f"content of {n}\n".encode()).hexdigest()
        for n in ("product.csv", "query.csv")
    }
    pins = {**good, "label.csv": "0" * 64}  # upstream's label.csv is not what was served
    folder = tmp_path / "wands"
    with pytest.raises(dl.DownloadError, match=r"label\.csv.*sha256 .* != pinned 0{64}"):
        dl.download("wands", folder, out=io.StringIO(), sha256=pins)
    assert all(f"/{dl.COMMITS['wands']}/" in u for u in seen)  # a commit, never a branch
    # the verified files are in place; the refused one is neither there nor left as .part
    assert sorted(p.name for p in folder.iterdir()) == ["product.csv", "query.csv"]
    # a file already in place whose digest differs from the pin is refused, and kept as it was
    (folder / "label.csv").write_text("edited\n")
    with pytest.raises(dl.DownloadError, match=r"label\.csv: sha256 .* != 0{64}"):
        dl.download("wands", folder, out=io.StringIO(), sha256=pins)
    assert (folder / "label.csv").read_text() == "edited\n"
    out = io.StringIO()
    dl.download("wands", folder, out=out, sha256={**good, "label.csv": None}, overwrite=True)
    assert "(verified)" in out.getvalue() and "not pinned" in out.getvalue()
