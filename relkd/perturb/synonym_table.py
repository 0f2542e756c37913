"""The embedded e-commerce synonym table behind the ``synonym`` perturbation.

Two sources, merged into one lookup from a lower-case phrase to its interchangeable phrases:

- the synthetic catalogue's product types with their *common* synonyms
  (relkd/data/synth/taxonomy.py), so "couch" means a sofa to the label rules as well; rare
  synonyms ("davenport") are left out: they are query-only words, a harder test than a synonym
  swap should be;
- a hand-written list of everyday shopping synonyms seen in ESCI and WANDS queries.

Single words that are usually the head of some other product ("bed" in "bed sheets", "tee" in
"golf tee") are left out of the taxonomy's groups, since swapping them would change the intent.
Plural forms are added with the synthetic generator's own pluralisation rule.
"""

from __future__ import annotations

from functools import lru_cache

from relkd.data.synth.query_builder import pluralise
from relkd.data.synth.taxonomy import PRODUCT_TYPES

# Everyday shopping synonyms (ESCI / WANDS / the synthetic catalogue); each group is one concept.
COMMON_GROUPS: tuple[tuple[str, ...], ...] = (
    ("sofa", "couch"),
    ("tv", "television"),
    ("laptop", "notebook"),
    ("sneakers", "trainers"),
    ("sneaker", "trainer"),
    ("phone", "smartphone", "cellphone", "cell phone", "mobile phone"),
    ("earbuds", "earphones"),
    ("rug", "carpet"),
    ("nightstand", "night stand", "bedside table"),
    ("dresser", "chest of drawers"),
    ("bookcase", "bookshelf"),
    ("wardrobe", "armoire"),
    ("ottoman", "footstool"),
    ("end table", "side table"),
    ("tv stand", "tv console", "media console"),
    ("entertainment center", "entertainment unit"),
    ("bar stool", "barstool"),
    ("curtains", "drapes"),
    ("trash can", "garbage can", "waste bin"),
    ("sofa cover", "couch cover", "sofa slipcover"),
    ("bicycle", "bike"),
    ("t-shirt", "tshirt", "tee shirt"),
    ("pants", "trousers"),
    ("sweater", "jumper", "pullover"),
    ("backpack", "rucksack"),
    ("purse", "handbag"),
    ("flashlight", "torch"),
    ("refrigerator", "fridge"),
    ("microwave", "microwave oven"),
    ("grill", "barbecue", "bbq"),
    ("stroller", "pushchair"),
    ("diapers", "nappies"),
    ("hair dryer", "blow dryer"),
    ("vacuum", "vacuum cleaner"),
    ("monitor", "computer screen"),
    ("speaker", "loudspeaker"),
    ("picture frame", "photo frame"),
    ("wall art", "wall decor"),
    ("pillowcase", "pillow case", "pillow cover"),
    ("dining table", "kitchen table"),
    ("dining chair", "kitchen chair"),
    ("coat rack", "coat stand"),
    ("patio furniture", "outdoor furniture"),
    ("kids", "children"),
)

# Taxonomy synonyms too generic to swap on their own (they head other products' names).
AMBIGUOUS_WORDS = frozenset({"bed", "batteries", "puzzle", "tee", "cushion"})


def synonym_groups() -> tuple[tuple[str, ...], ...]:
    """Every group of interchangeable phrases (lower case), taxonomy first."""
    groups: list[tuple[str, ...]] = []
    for ptype in PRODUCT_TYPES:
        group = tuple(p for p in (ptype.name, *ptype.synonyms) if p not in AMBIGUOUS_WORDS)
        if len(group) >= 2:
            groups.append(group)
    groups.extend(COMMON_GROUPS)
    return tuple(groups)


@lru_cache(maxsize=1)
def synonym_table() -> dict[str, tuple[str, ...]]:
    """Lower-case phrase -> the phrases that may replace it (never itself), in a fixed order.

    A phrase in several groups gets the union of their members. Every phrase's plural (when
    :func:`~relkd.data.synth.query_builder.pluralise` knows it) maps to its partners' plurals.
    """
    table: dict[str, dict[str, None]] = {}

    def add(phrase: str, others: list[str]) -> None:
        slot = table.setdefault(phrase, {})
        slot.update(dict.fromkeys(o for o in others if o != phrase))

    for group in synonym_groups():
        for phrase in group:
            add(phrase, list(group))
    for group in synonym_groups():
        plurals = [pluralise(p) for p in group]
        for single, plural in zip(group, plurals, strict=True):
            if plural != single and plural not in table:
                add(plural, [p for p, s in zip(plurals, group, strict=True) if p != s])
    return {k: tuple(v) for k, v in table.items() if v}


def longest_phrase() -> int:
    """Words in the table's longest phrase (how far a match looks ahead)."""
    return max(len(p.split()) for p in synonym_table())
