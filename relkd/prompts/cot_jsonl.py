"""CoT targets written elsewhere (a larger LLM, ``relkd teacher write-cot``) as JSON Lines.

One object per line with ``pair_id`` (int, a pair of the dataset) and ``cot`` (non-empty text).
Other keys (``verdict``, ``agreement``, ``samples``, ...) are kept by the writer and ignored
here. Every problem names the file, the line and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from relkd.errors import DataError


def read_cot_jsonl(path: str | Path, known_pair_ids: np.ndarray | None = None) -> dict[int, str]:
    """``{pair_id: cot}`` from a JSONL file; DataError on a malformed line, a missing or empty
    field, a repeated pair_id, or (with ``known_pair_ids``) a pair_id the dataset lacks."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: CoT file not found")
    out: dict[int, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where}: each line must be a JSON object")
            pid = obj.get("pair_id")
            if isinstance(pid, bool) or not isinstance(pid, int):
                raise DataError(f"{where}: field pair_id must be an integer, got {pid!r}")
            cot = obj.get("cot")
            if not isinstance(cot, str) or not cot.strip():
                raise DataError(f"{where}: field cot must be non-empty text")
            if pid in out:
                raise DataError(f"{where}: field pair_id {pid} appears twice")
            out[pid] = " ".join(cot.split())
    if known_pair_ids is not None and out:
        ids = np.fromiter(out.keys(), dtype=np.int64, count=len(out))
        unknown = ids[~np.isin(ids, known_pair_ids)]
        if len(unknown):
            raise DataError(
                f"{path}: field pair_id has {len(unknown)} value(s) not in the dataset, "
                f"e.g. {int(unknown[0])}"
            )
    return out
