"""The ``typo`` perturbation: keyboard misspellings of one or two words of a query."""

from __future__ import annotations

import random

from relkd.data.synth.typos import make_typo

MIN_LETTERS = 3  # shorter words ("tv", "xl") are left alone, as the synthetic generator does


def typo(text: str, rng: random.Random) -> str:
    """Misspell one word of ``text`` (two when it has four or more eligible words).

    Eligible words are purely alphabetic with at least three letters; each gets one edit (drop,
    add, swap, fat-finger or doubled letter, never on the first letter) from
    :func:`relkd.data.synth.typos.make_typo`, which always changes such a word. A query without
    an eligible word ("55in 4k tv") is returned unchanged.
    """
    words = text.split()
    eligible = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= MIN_LETTERS]
    if not eligible:
        return text
    count = 1 if len(eligible) < 4 else 2
    for i in sorted(rng.sample(eligible, count)):
        words[i] = make_typo(words[i], rng)
    return " ".join(words)
