"""Character-level misspellings of the kind shoppers make on a keyboard or phone."""

from __future__ import annotations

import random

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_ROWS):
    for _c, _ch in enumerate(_row):
        near = [_row[j] for j in (_c - 1, _c + 1) if 0 <= j < len(_row)]
        for _other in (_r - 1, _r + 1):
            if 0 <= _other < len(_ROWS):
                near += [
                    _ROWS[_other][j] for j in (_c - 1, _c, _c + 1) if 0 <= j < len(_ROWS[_other])
                ]
        NEIGHBOURS[_ch] = "".join(near)

OPERATIONS = ("delete", "insert", "substitute", "transpose", "double")


def make_typo(word: str, rng: random.Random) -> str:
    """One edit (drop, add, swap, fat-finger or doubled letter) away from ``word``.

    Never touches the first letter (people rarely get it wrong) and always returns a
    different string when the word has at least two distinct interior letters.
    """
    if len(word) < 3:
        return word
    for _ in range(8):
        i = rng.randrange(1, len(word))
        op = rng.choice(OPERATIONS)
        ch = word[i]
        if op == "delete":
            out = word[:i] + word[i + 1 :]
        elif op == "insert":
            out = word[:i] + rng.choice(NEIGHBOURS.get(ch, "e") or "e") + word[i:]
        elif op == "substitute":
            out = word[:i] + rng.choice(NEIGHBOURS.get(ch, "e") or "e") + word[i + 1 :]
        elif op == "transpose" and i < len(word) - 1:
            out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        else:
            out = word[:i] + ch + word[i:]
        if out != word:
            return out
    return word + word[-1]
