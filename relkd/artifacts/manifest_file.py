"""Reading a folder's JSON manifest, with the one-line errors every artifact reader shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relkd.errors import DataError


def read_manifest_file(path: Path, missing: str, corrupt_hint: str = "") -> dict[str, Any]:
    """The JSON object at ``path``.

    Raises DataError naming the file: ``"<path>: <missing>"`` when it is absent, and
    ``"<path>: corrupt manifest (...)<corrupt_hint>"`` when it is not a JSON object.
    """
    if not path.is_file():
        raise DataError(f"{path}: {missing}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: corrupt manifest ({exc}){corrupt_hint}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: corrupt manifest (not a JSON object){corrupt_hint}")
    return data
