"""The shared manifest reader: one-line errors naming the file, never a traceback's JSON error."""

from __future__ import annotations

import pytest

from relkd.artifacts.manifest_file import read_manifest_file
from relkd.errors import DataError


def test_reads_a_json_object(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"kind": "x", "version": 1}')
    assert read_manifest_file(path, "missing") == {"kind": "x", "version": 1}


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "manifest.json"
    with pytest.raises(DataError, match=r"manifest\.json: missing; build it first"):
        read_manifest_file(path, "missing; build it first")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_corrupt_or_non_object_names_the_file_and_keeps_it(tmp_path, text):
    path = tmp_path / "manifest.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"manifest\.json: corrupt manifest .*; delete it"):
        read_manifest_file(path, "missing", "; delete it")
    assert path.read_bytes() == before
