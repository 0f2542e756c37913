"""The ``word_order`` perturbation: the same words of a query in another order."""

from __future__ import annotations

import random


def word_order(text: str, rng: random.Random) -> str:
    """A shuffle of the words of ``text`` that is never the original order.

    With at least two distinct words the result always differs from the query: when the shuffle
    happens to give back the original sequence, the words are rotated by one instead (a rotation
    equals the original only when every word is the same). A query of one word, or of one word
    repeated, is returned unchanged.
    """
    words = text.split()
    if len(set(words)) < 2:
        return text
    order = list(words)
    rng.shuffle(order)
    if order == words:
        order = words[1:] + words[:1]
    return " ".join(order)
