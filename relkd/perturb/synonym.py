"""The ``synonym`` perturbation: one product word or phrase swapped for a synonym."""

from __future__ import annotations

import random

from relkd.perturb.synonym_table import longest_phrase, synonym_table


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def synonym(text: str, rng: random.Random) -> str:
    """Replace one phrase of ``text`` found in :func:`synonym_table` by one of its synonyms.

    Phrases are matched on whole words, case-insensitively, longest first from left to right
    ("tv stand" before "tv"); one of the matches is chosen and replaced by one of its synonyms,
    both drawn from ``rng``. A query with no phrase in the table is returned unchanged.
    """
    words = text.split()
    lower = [w.lower() for w in words]
    table, longest = synonym_table(), longest_phrase()
    matches: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        for size in range(min(longest, len(words) - i), 0, -1):
            if " ".join(lower[i : i + size]) in table:
                matches.append((i, i + size))
                i += size
                break
        else:
            i += 1
    if not matches:
        return text
    start, end = rng.choice(matches)
    replacement = rng.choice(table[" ".join(lower[start:end])])
    words[start:end] = [_match_case(" ".join(words[start:end]), replacement)]
    return " ".join(words)
