"""Per-pair annotator votes (optional ``label_votes`` pairs column) as label distributions.

Datasets whose pairs were judged by several annotators can keep the votes as a JSON object of
label name to count, e.g. ``{"Exact": 2, "Substitute": 1}``; the teacher's soft-target
cross-entropy then learns the normalised distribution instead of the majority label. Rows
without votes are null.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from relkd.data.label_scheme import LabelScheme
from relkd.errors import DataError

COLUMN = "label_votes"


def votes_to_distribution(
    values: Sequence[str | None],
    scheme: LabelScheme,
    path: str | Path,
    pair_ids: Sequence[int] | None = None,
) -> np.ndarray:
    """(N, K) float32 distributions over the scheme's labels; NaN rows where there are no votes.

    Raises DataError naming the file, the column and the pair for malformed JSON, an unknown
    label (aliases such as ``E`` are accepted), a negative or non-numeric count, or no votes.
    """
    out = np.full((len(values), scheme.num_labels), np.nan, dtype=np.float32)
    for row, text in enumerate(values):
        if text is None:
            continue
        where = f"pair_id {pair_ids[row]}" if pair_ids is not None else f"row {row}"
        try:
            votes = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            raise DataError(f"{path}: column {COLUMN}, {where}: not a JSON object") from None
        if not isinstance(votes, dict):
            raise DataError(f"{path}: column {COLUMN}, {where}: not a JSON object")
        dist = np.zeros(scheme.num_labels, dtype=np.float64)
        for label, count in votes.items():
            try:
                k = scheme.index(label)
            except DataError:
                raise DataError(
                    f"{path}: column {COLUMN}, {where}: unknown label {label!r}; expected one of "
                    f"{list(scheme.labels)}"
                ) from None
            if isinstance(count, bool) or not isinstance(count, (int, float)) or count < 0:
                raise DataError(
                    f"{path}: column {COLUMN}, {where}: count of {label!r} must be a number >= 0"
                )
            dist[k] += float(count)
        total = dist.sum()
        if total <= 0:
            raise DataError(f"{path}: column {COLUMN}, {where}: no votes")
        out[row] = dist / total
    return out
