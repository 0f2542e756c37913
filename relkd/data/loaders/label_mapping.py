"""Map a source's labels onto a label scheme, and the label statistics the manifest records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from relkd.data.label_scheme import LabelScheme
from relkd.data.loaders.column_checks import text_column
from relkd.errors import DataError


def map_labels(
    arr: pa.ChunkedArray | pa.Array,
    scheme: LabelScheme,
    path: str | Path,
    column: str,
    *,
    mapping: Mapping[str, str] | None = None,
    allow_unlabelled: bool = False,
    case_insensitive: bool = False,
) -> pa.Array:
    """Map raw label values to the scheme's canonical names.

    ``mapping`` is the accepted raw spelling -> canonical name (default: the scheme's names and
    aliases). With ``allow_unlabelled`` null/blank becomes null (the unlabelled pool), otherwise
    it is an error. Raises DataError naming the file, the column, the bad values and counts.
    """
    if mapping is None:
        mapping = {name: name for name in scheme.labels}
        mapping.update(scheme.aliases)
    if case_insensitive:
        mapping = {k.strip().casefold(): v for k, v in mapping.items()}
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = text_column(arr, path, column)
    enc = pc.dictionary_encode(arr)
    canon: list[str | None] = []
    bad: list[str | None] = []
    for raw in enc.dictionary.to_pylist():
        key = raw.strip().casefold() if (case_insensitive and raw is not None) else raw
        if raw is None or not raw.strip():
            canon.append(None)
            if not allow_unlabelled:
                bad.append(raw)
        elif key in mapping:
            canon.append(mapping[key])
        else:
            canon.append(None)
            bad.append(raw)
    if arr.null_count and not allow_unlabelled:
        bad.append(None)
    if bad:
        counts = {row["values"]: row["counts"] for row in pc.value_counts(arr).to_pylist()}
        shown: dict[str, int] = {}
        for v in bad:
            name = "<empty>" if not v or not v.strip() else v
            shown[name] = shown.get(name, 0) + int(counts.get(v, 0))
        expected = sorted(set(mapping)) if mapping else []
        raise DataError(
            f"{path}: column {column!r} has {sum(shown.values())} row(s) with unknown label(s) "
            f"{shown} for scheme {scheme.name!r}; expected one of {expected}"
            + ("; an empty label means unlabelled here only in pairs tables" if None in bad else "")
        )
    return pc.take(pa.array(canon, pa.string()), enc.indices)


def label_counts(labels: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    return {
        ("unlabelled" if row["values"] is None else row["values"]): int(row["counts"])
        for row in pc.value_counts(labels).to_pylist()
    }


def manifest_stats(
    stats: dict[str, Any], pairs: pa.Table, summary: dict[str, Any], bucket_source: str
) -> dict[str, Any]:
    """The manifest ``stats`` every importer records: its own import counts, where buckets came
    from, the label distribution and the per-split pair and query counts."""
    return {
        "import": stats,
        "bucket_source": bucket_source,
        "label_counts": label_counts(pairs.column("label")),
        "split_pairs": summary["pairs"],
        "split_queries": summary["queries"],
    }


__all__ = ["label_counts", "manifest_stats", "map_labels"]
