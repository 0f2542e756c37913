"""The label rules: (query intent, item) -> aspect facts -> graded label, all on integer arrays.

One set of functions serves both candidate sampling (a [queries, items] matrix per type) and
the final per-pair labelling (flat arrays of millions of pairs), so the exact matches the
sampler aims for are by construction the pairs the rules call Exact.

Rules (ESCI grades; WANDS maps Substitute -> Partial and Complement -> Irrelevant):

- same product type and no stated aspect (brand, model, attributes) conflicts -> Exact;
- same type with a conflict, or an equivalent type (sofa vs loveseat)        -> Substitute;
- a complementary / accessory type (phone vs phone case)                    -> Complement;
- anything else                                                              -> Irrelevant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from relkd.data.synth.taxonomy import COMPLEMENT, EQUIVALENT, SAME

MATCH, MISMATCH, NOT_STATED = 0, 1, 2  # order of relkd.data.schema.ASPECT_VALUES
EXACT, SUBSTITUTE, COMPLEMENT_LABEL, IRRELEVANT = 0, 1, 2, 3  # order of the esci scheme

# esci grade -> scheme class index; wands has no Complement grade, an accessory does not
# satisfy the query, so it is Irrelevant there (as in the WANDS annotation guidelines).
SCHEME_MAP: dict[str, np.ndarray] = {
    "esci": np.array([0, 1, 2, 3], dtype=np.int8),
    "wands": np.array([0, 1, 2, 2], dtype=np.int8),
}


def stated_aspect(query_code: np.ndarray, item_code: np.ndarray) -> np.ndarray:
    """Brand or model fact: not_stated when the query names none (code < 0)."""
    out = np.where(item_code == query_code, MATCH, MISMATCH).astype(np.int8)
    out[np.broadcast_to(query_code < 0, out.shape)] = NOT_STATED
    return out


def attributes_aspect(
    query_values: Sequence[np.ndarray], item_values: Sequence[np.ndarray]
) -> np.ndarray:
    """Attribute fact from per-slot arrays (query value < 0 = unused slot).

    One array pair per stated slot, any broadcastable shapes (flat pairs or a
    [queries, items] matrix). mismatch if any stated attribute differs (an item without that
    attribute differs too), match if every stated one agrees, not_stated if none is stated.
    """
    conflict: np.ndarray | bool = False
    any_stated: np.ndarray | bool = False
    for q, i in zip(query_values, item_values, strict=True):
        stated = q >= 0
        conflict = conflict | (stated & (i != q))
        any_stated = any_stated | stated
    conflict, any_stated = np.broadcast_arrays(conflict, any_stated)
    out = np.full(conflict.shape, NOT_STATED, dtype=np.int8)
    out[any_stated] = MATCH
    out[conflict] = MISMATCH
    return out


def category_aspect(relation: np.ndarray) -> np.ndarray:
    """Every synthetic query names a product type, so the fact is match or mismatch."""
    return np.where(relation == SAME, MATCH, MISMATCH).astype(np.int8)


def esci_label(
    relation: np.ndarray, brand: np.ndarray, model: np.ndarray, attributes: np.ndarray
) -> np.ndarray:
    """Graded esci class from the type relation and the three stated-aspect facts."""
    satisfied = (brand != MISMATCH) & (model != MISMATCH) & (attributes != MISMATCH)
    out = np.full(relation.shape, IRRELEVANT, dtype=np.int8)
    out[relation == COMPLEMENT] = COMPLEMENT_LABEL
    out[relation == EQUIVALENT] = SUBSTITUTE
    same = relation == SAME
    out[same] = np.where(satisfied[same], EXACT, SUBSTITUTE)
    return out


def scheme_label(esci: np.ndarray, scheme: str) -> np.ndarray:
    """Map esci classes to the class indices of ``scheme``."""
    try:
        return SCHEME_MAP[scheme][esci]
    except KeyError:
        raise ValueError(
            f"scheme: unknown label scheme {scheme!r}; known {sorted(SCHEME_MAP)}"
        ) from None


def item_slot_values(
    item_attrs: np.ndarray, items: np.ndarray, query_slots: np.ndarray
) -> list[np.ndarray]:
    """Per stated slot j, each pair's item value for the query's key ``query_slots[:, j]``.

    Flat pairs: ``items`` and ``query_slots`` are aligned rows. Unused slots (-1) read key 0
    and are ignored by :func:`attributes_aspect` because their query value is -1.
    """
    return [
        item_attrs[items, np.maximum(query_slots[:, j], 0)] for j in range(query_slots.shape[1])
    ]
