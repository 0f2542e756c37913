"""``QueryPerturber``: one perturbation kind applied to query strings, deterministically.

The random choices for a query (which word, which edit, which synonym) come from a
``random.Random`` seeded by a stable hash (BLAKE2b, not Python's salted ``hash()``) of the
perturbation version, the seed, the kind and the query id: the same query id always gets the
same perturbation, in any process, in any order, whatever other queries there are.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relkd.errors import ConfigError
from relkd.perturb.attribute_paraphrase import attribute_paraphrase
from relkd.perturb.synonym import synonym
from relkd.perturb.typo import typo
from relkd.perturb.word_order import word_order

# Bump when any kind's output changes for some input: derived datasets record it and a folder
# built by another version is refused rather than silently reused.
PERTURBATION_VERSION = 1

PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "typo": typo,
    "synonym": synonym,
    "word_order": word_order,
    "attribute_paraphrase": attribute_paraphrase,
}
KINDS: tuple[str, ...] = tuple(PERTURBATIONS)


def parse_kinds(kinds: str | Sequence[str], option: str = "--perturb") -> tuple[str, ...]:
    """``"typo,synonym"`` or ``["typo", "synonym"]`` -> known kinds in the order given, once each.

    Raises ConfigError naming ``option`` and listing the known kinds for an unknown or empty one.
    """
    items = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    names = [str(k).strip() for k in items if str(k).strip()]
    unknown = [k for k in names if k not in PERTURBATIONS]
    if unknown:
        raise ConfigError(
            f"{option}: unknown perturbation kind(s) {', '.join(unknown)}; known: "
            f"{', '.join(KINDS)}"
        )
    if not names:
        raise ConfigError(f"{option}: name at least one perturbation kind ({', '.join(KINDS)})")
    return tuple(dict.fromkeys(names))


def stable_seed(kind: str, query_id: str, seed: int = 0) -> int:
    """A 64-bit seed from (version, seed, kind, query_id) that is the same in every process."""
    key = f"{PERTURBATION_VERSION}\x1f{seed}\x1f{kind}\x1f{query_id}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class QueryPerturber:
    """Applies perturbation ``kind`` to queries; ``seed`` picks another deterministic variant."""

    kind: str
    seed: int = 0

    def __post_init__(self) -> None:
        parse_kinds([self.kind], option="kind")

    def rng(self, query_id: str) -> random.Random:
        return random.Random(stable_seed(self.kind, str(query_id), self.seed))

    def __call__(self, text: str, query_id: str) -> str:
        """The perturbed text; exactly ``text`` when the kind does not apply to it (no eligible
        word, one word to reorder, no attribute expression) or would only change spacing."""
        out = PERTURBATIONS[self.kind](text, self.rng(query_id))
        if not out.strip() or out.split() == text.split():
            return text
        return out
