"""Reading one of a run's JSON files (metrics.json, serving.json): a DataError naming the file
for anything that is not a JSON object, instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relkd.errors import DataError


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
