"""Named label schemes: the ordered label set, graded NDCG gains and the binary relevance map.

Label order is a contract: teacher logits, student heads and metrics all index labels in
the order listed here, so a scheme's ``labels`` tuple must never be reordered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from relkd.errors import DataError


@dataclass(frozen=True)
class LabelScheme:
    """An ordered set of graded relevance labels.

    Attributes:
        name: registry name (``esci`` or ``wands``).
        labels: label names, most relevant first; index ``k`` is class ``k`` everywhere.
        gains: graded gain per label, used by NDCG and by the expected score.
        binary: 1 if the label counts as relevant for AUC / thresholded accuracy, else 0.
        aliases: alternative spellings accepted on input (e.g. ESCI's ``E``), mapped to names.
    """

    name: str
    labels: tuple[str, ...]
    gains: tuple[float, ...]
    binary: tuple[int, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.labels) == len(self.gains) == len(self.binary)):
            raise ValueError(
                f"label scheme {self.name!r}: labels, gains and binary differ in length"
            )

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        """Class index of a label name or alias; raises DataError on an unknown label."""
        name = self.aliases.get(label, label)
        try:
            return self.labels.index(name)
        except ValueError:
            raise DataError(
                f"unknown label {label!r} for scheme {self.name!r}; expected one of "
                f"{list(self.labels) + sorted(self.aliases)}"
            ) from None

    def canonical(self, label: str) -> str:
        """The canonical label name for a name or alias."""
        return self.labels[self.index(label)]

    def encode(self, labels: Sequence[str | None]) -> np.ndarray:
        """Label names to class indices (int64); ``None`` (unlabelled) becomes -1."""
        lookup = {name: i for i, name in enumerate(self.labels)}
        lookup.update({alias: lookup[name] for alias, name in self.aliases.items()})
        out = np.empty(len(labels), dtype=np.int64)
        for row, label in enumerate(labels):
            if label is None:
                out[row] = -1
            elif label in lookup:
                out[row] = lookup[label]
            else:
                self.index(label)  # raises with the full message
        return out

    def gain_array(self) -> np.ndarray:
        return np.asarray(self.gains, dtype=np.float64)

    def binary_array(self) -> np.ndarray:
        return np.asarray(self.binary, dtype=np.int64)

    def expected_score(self, probs: np.ndarray) -> np.ndarray:
        """Expected gain under class probabilities ``probs`` of shape (N, num_labels)."""
        return np.asarray(probs, dtype=np.float64) @ self.gain_array()


# Gains follow the ESCI paper (Reddy et al., 2022): E=1.0, S=0.1, C=0.01, I=0.0.
ESCI = LabelScheme(
    name="esci",
    labels=("Exact", "Substitute", "Complement", "Irrelevant"),
    gains=(1.0, 0.1, 0.01, 0.0),
    binary=(1, 0, 0, 0),
    aliases={"E": "Exact", "S": "Substitute", "C": "Complement", "I": "Irrelevant"},
)

# WANDS (Chen et al., 2022) grades Exact=2, Partial=1, Irrelevant=0; normalised to [0, 1].
WANDS = LabelScheme(
    name="wands",
    labels=("Exact", "Partial", "Irrelevant"),
    gains=(1.0, 0.5, 0.0),
    binary=(1, 0, 0),
)

LABEL_SCHEMES: dict[str, LabelScheme] = {ESCI.name: ESCI, WANDS.name: WANDS}


def get_label_scheme(name: str) -> LabelScheme:
    """Look a scheme up by name; raises DataError naming the known schemes."""
    try:
        return LABEL_SCHEMES[name]
    except KeyError:
        raise DataError(f"unknown label scheme {name!r}; known: {sorted(LABEL_SCHEMES)}") from None
