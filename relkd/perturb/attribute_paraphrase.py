"""The ``attribute_paraphrase`` perturbation: the same attribute values, written another way.

Each rule finds one kind of attribute expression and rewrites it without changing what it
means: a number and its unit joined or split ("64gb" <-> "64 gb", '55"' -> "55 inch"), sizes
("size 10" -> "10 size", "xl" -> "extra large"), pack and piece counts ("2 pack" -> "pack of
2", "500 pieces" -> "500 pcs"), hyphenated counts ("3-seater" <-> "3 seater"), colours ("red"
-> "red colored"), ages ("ages 5+" -> "5 years and up"), scales ("1:16" -> "1/16"), SPF and the
shopper's gender ("men's jeans" -> "jeans for men"). Every expression a rule finds is
rewritten; where a rule has several wordings, ``rng`` picks one. Rules are tried in the order
listed and a later rule never rewrites text an earlier one already matched.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from relkd.data.synth.taxonomy import DOMAINS

NUM = r"(\d+(?:\.\d+)?)"

# (replacement, prefix, suffix): the matched text becomes ``replacement``; ``prefix`` and
# ``suffix`` are added to the start and the end of the query (to move "men's" to "for men").
Rewrite = tuple[str, str, str]


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    rewrite: Callable[[re.Match[str], random.Random], Rewrite]


def _put(text: str) -> Rewrite:
    return (text, "", "")


def _case_like(original: str, replacement: str) -> str:
    """``replacement`` upper-cased when ``original``'s letters are all upper case ("GB")."""
    letters = [c for c in original if c.isalpha()]
    return replacement.upper() if letters and all(c.isupper() for c in letters) else replacement


# -- numbers with units ------------------------------------------------------------------------

_UNIT_NAMES = {"in": "inch", "inches": "inch", "lbs": "lb"}
_JOINED_UNITS = "gb|tb|mb|mm|cm|ft|oz|lbs|lb|kg|ml|qt|mah|hz|inches|inch|in|w|v|l"
_SPLIT_UNITS = "gb|tb|mb|mm|cm|ft|oz|lbs|lb|kg|ml|qt|mah|hz|inches|inch"


def _split_unit(m: re.Match[str], rng: random.Random) -> Rewrite:
    unit = m.group(2)
    return _put(f"{m.group(1)} {_case_like(unit, _UNIT_NAMES.get(unit.lower(), unit))}")


def _join_unit(m: re.Match[str], rng: random.Random) -> Rewrite:
    unit = m.group(2)
    if unit.lower() in ("inch", "inches"):
        return _put(rng.choice((f"{m.group(1)}in", f'{m.group(1)}"')))
    return _put(f"{m.group(1)}{unit}")


def _quoted_inch(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(f"{m.group(1)} inch")


# -- sizes, packs, counts ----------------------------------------------------------------------


def _size_number(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(rng.choice((f"{m.group(1)} size", f"sz {m.group(1)}")))


def _us_size(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(f"size {m.group(1)}")


_LETTER_SIZES = {
    "x-large": ("extra large",),
    "xl": ("extra large",),
    "extra large": ("xl", "x-large"),
    "x-small": ("extra small",),
    "xs": ("extra small",),
    "extra small": ("xs", "x-small"),
    "xx-large": ("xxl", "2xl"),
    "xxl": ("2xl", "xx-large"),
    "2xl": ("xxl", "xx-large"),
}


def _letter_size(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(rng.choice(_LETTER_SIZES[m.group(0).lower()]))


def _pack_of(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(f"pack of {m.group(1)}")


def _n_pack(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(rng.choice((f"{m.group(1)} pack", f"{m.group(1)}-pack")))


def _count(m: re.Match[str], rng: random.Random) -> Rewrite:
    other = "ct" if m.group(2).lower() == "count" else "count"
    return _put(f"{m.group(1)} {other}")


def _pieces(m: re.Match[str], rng: random.Random) -> Rewrite:
    short = m.group(2).lower() in ("pcs", "pc")
    return _put(f"{m.group(1)} {'pieces' if short else 'pcs'}")


def _unhyphen(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(f"{m.group(1)} {m.group(2)}")


def _hyphen(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(f"{m.group(1)}-{m.group(2)}")


_HYPHEN_WORDS = (
    "seater|person|cup|slice|season|quart|watt|pound|foot|gallon|drawer|door|tier|shelf|"
    "burner|speed|port|piece|pack|pk|count|inch"
)

# -- colours, ages, scales, SPF, gender ----------------------------------------------------------

_EXTRA_COLOURS = (
    "red|orange|yellow|green|blue|purple|pink|brown|black|white|grey|gray|silver|gold|beige|navy|"
    "teal|turquoise|ivory|cream|tan|maroon|burgundy|olive|charcoal|khaki|lavender|mint|coral|"
    "rose gold|navy blue|dark blue|light blue|dark grey|light grey|dark gray|light gray"
)


# colour names that also name a material, scent, flavour or product ("face cream", "olive oil",
# "lavender shampoo", "self tan", "wine glass"): never rewritten as colours
_NOT_ONLY_COLOURS = frozenset(
    {
        "stainless",
        "stainless steel",
        "multicolor",
        "multicolour",
        "rainbow",
        "sage",
        "sand",
        "wine",
        "cream",
        "mint",
        "lavender",
        "coral",
        "olive",
        "tan",
        "khaki green",
    }
)


@lru_cache(maxsize=1)
def colour_words() -> tuple[str, ...]:
    """Colour names: the synthetic catalogue's colour values and forms plus common colours,
    longest first so "navy blue" wins over "navy"."""
    names = set(_EXTRA_COLOURS.split("|"))
    for domain in DOMAINS:
        if domain.key == "color":
            names.update(domain.values)
            for forms in domain.query_forms.values():
                names.update(forms)
    names -= _NOT_ONLY_COLOURS
    return tuple(sorted(names, key=lambda n: (-len(n), n)))


def _colour(m: re.Match[str], rng: random.Random) -> Rewrite:
    colour = m.group(2)
    if m.group(1):  # "in red"
        return _put(rng.choice((f"{colour} colored", f"in {colour} color")))
    return _put(rng.choice((f"{colour} colored", f"{colour} color", f"{colour}-colored")))


def _ages(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(rng.choice((f"{m.group(1)} years and up", f"{m.group(1)}+ years")))


def _years_up(m: re.Match[str], rng: random.Random) -> Rewrite:
    return _put(f"ages {m.group(1)}+")


def _scale(m: re.Match[str], rng: random.Random) -> Rewrite:
    sep = "/" if m.group(2) == ":" else ":"
    return _put(f"{m.group(1)}{sep}{m.group(3)}")


def _spf(m: re.Match[str], rng: random.Random) -> Rewrite:
    spf, space, number = m.group(1), m.group(2), m.group(3)
    return _put(f"{spf}{number}" if space else f"{spf} {number}")


_GENDER_FOR = {
    "men's": "men",
    "mens": "men",
    "women's": "women",
    "womens": "women",
    "ladies": "women",
    "kids'": "kids",
    "boys'": "boys",
    "boys": "boys",
    "girls'": "girls",
    "girls": "girls",
}
_GENDER_OWNER = {"men": "men's", "women": "women's", "kids": "kids'", "boys": "boys'"}


def _gender_to_for(m: re.Match[str], rng: random.Random) -> Rewrite:
    return ("", "", f" for {_GENDER_FOR[m.group(0).lower()]}")


def _for_to_gender(m: re.Match[str], rng: random.Random) -> Rewrite:
    return ("", f"{_GENDER_OWNER[m.group(1).lower()]} ", "")


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


@lru_cache(maxsize=1)
def rules() -> tuple[Rule, ...]:
    """The rules, in priority order."""
    colours = "|".join(re.escape(c) for c in colour_words())
    genders = "|".join(re.escape(g) for g in _GENDER_FOR)
    # a word ends at a space or the end of the text; ``\b`` after "men's" or "kids'" would not
    end = r"(?=\s|$)"
    start = r"(?:(?<=\s)|^)"
    return (
        Rule("pack_of", _rx(rf"\b{NUM}[- ]?(?:pack|packs|pk)\b"), _pack_of),
        Rule("n_pack", _rx(r"\bpack of (\d+)\b"), _n_pack),
        Rule("count", _rx(r"\b(\d+)[- ]?(count|ct)\b"), _count),
        Rule("pieces", _rx(r"\b(\d+)[- ]?(pieces|piece|pcs|pc)\b"), _pieces),
        Rule("size_number", _rx(rf"\bsize {NUM}\b(?![-.:/])"), _size_number),
        Rule("us_size", _rx(rf"\bus {NUM}\b(?![-.:/])"), _us_size),
        Rule("ages", _rx(r"\bages? (\d+)\+"), _ages),
        Rule("years_up", _rx(r"\b(\d+) years? (?:and|&) up\b"), _years_up),
        Rule("scale", _rx(r"\b(1)([:/])(\d+)\b"), _scale),
        Rule("spf", _rx(r"\b(spf)( ?)(\d+)\b"), _spf),
        Rule("quoted_inch", _rx(rf'\b{NUM}"'), _quoted_inch),
        Rule("split_unit", _rx(rf"\b{NUM}({_JOINED_UNITS})\b"), _split_unit),
        Rule("join_unit", _rx(rf"\b{NUM} ({_SPLIT_UNITS})\b"), _join_unit),
        Rule("unhyphen", _rx(rf"\b(\d+)-({_HYPHEN_WORDS})\b"), _unhyphen),
        Rule("hyphen", _rx(rf"\b(\d+) ({_HYPHEN_WORDS})\b"), _hyphen),
        Rule(
            "letter_size",
            _rx(start + "(?:" + "|".join(re.escape(s) for s in _LETTER_SIZES) + ")" + end),
            _letter_size,
        ),
        Rule("colour", _rx(rf"{start}(in )?({colours}){end}(?![- ]colou?r)"), _colour),
        Rule("gender_to_for", _rx(rf"{start}(?:{genders}){end}"), _gender_to_for),
        Rule("for_to_gender", _rx(r"\bfor (men|women|kids|boys)\b"), _for_to_gender),
    )


def attribute_paraphrase(text: str, rng: random.Random) -> str:
    """Rewrite every attribute expression of ``text`` that a rule knows (see the module doc).

    A query without one ("dog bed") is returned unchanged.
    """
    taken: list[tuple[int, int]] = []
    edits: list[tuple[int, int, Rewrite]] = []
    for rule in rules():
        for m in rule.pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            edits.append((m.start(), m.end(), rule.rewrite(m, rng)))
    if not edits:
        return text
    out, prefix, suffix, pos = [], [], [], 0
    for s, e, (replacement, pre, post) in sorted(edits, key=lambda x: x[0]):
        out.append(text[pos:s])
        out.append(replacement)
        prefix.append(pre)
        suffix.append(post)
        pos = e
    out.append(text[pos:])
    return " ".join(("".join(prefix) + "".join(out) + "".join(suffix)).split())
