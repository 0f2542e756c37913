"""The structured chain-of-thought (CoT) format and its parser (ELLM-rele's decomposition).

A CoT checks the item against the query aspect by aspect, then gives the verdict::

    category: match. brand: not stated. model: not stated. attributes: mismatch. verdict: substitute.

Aspect values are ``match``, ``mismatch`` and ``not stated`` (relkd.data.schema.ASPECT_VALUES,
written with a space); the verdict is the label word of the scheme's label (see Verbalizer).
``CotTemplate.render`` writes this text from aspect facts and returns where each slot's value
starts; ``parse_cot`` reads it back from generated text (tolerating the spacing a WordPiece
decode introduces, e.g. ``category : match .``) and reports what it could not parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from relkd.data.schema import ASPECT_VALUES, ASPECTS

COT_VERSION = "cot-v1"
VERDICT = "verdict"
COT_SLOTS: tuple[str, ...] = (*ASPECTS, VERDICT)  # order of the slots in the text
ASPECT_WORDS: dict[str, str] = {
    "match": "match",
    "mismatch": "mismatch",
    "not_stated": "not stated",
}
# spellings the parser accepts for each aspect value
_ASPECT_READ: dict[str, str] = {
    "match": "match",
    "matches": "match",
    "mismatch": "mismatch",
    "mismatches": "mismatch",
    "not stated": "not_stated",
    "not_stated": "not_stated",
    "unstated": "not_stated",
    "none": "not_stated",
}
_SLOT_RE = re.compile(
    r"(?<![a-z])(category|brand|model|attributes|verdict)\s*:\s*([a-z][a-z_ -]*?)\s*(?=[.;,|\n]|$)"
)


@dataclass
class ParsedCot:
    """What ``parse_cot`` read: aspect values (ASPECT_VALUES), the verdict label, the character
    span of every value found, and the problems (empty when the whole CoT parsed)."""

    aspects: dict[str, str] = field(default_factory=dict)
    verdict: str | None = None
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def aspect_codes(self) -> list[int]:
        """Index into ASPECT_VALUES per ASPECTS, -1 where not parsed."""
        return [ASPECT_VALUES.index(self.aspects[a]) if a in self.aspects else -1 for a in ASPECTS]


@dataclass(frozen=True)
class CotTemplate:
    """Renders the CoT text; ``label_words`` maps each scheme label to its verdict word."""

    label_words: Mapping[str, str]
    version: str = COT_VERSION

    def render(
        self, aspects: Mapping[str, str | None], verdict: str | None
    ) -> tuple[str, dict[str, int]]:
        """The CoT text for aspect facts (None = unknown, skipped) and a verdict label (None =
        no verdict line), and the character offset where each slot's value starts."""
        parts: list[str] = []
        starts: dict[str, int] = {}
        pos = 0
        for slot in COT_SLOTS:
            if slot == VERDICT:
                if verdict is None:
                    continue
                word = self.label_words[verdict]
            else:
                value = aspects.get(slot)
                if value is None:
                    continue
                if value not in ASPECT_WORDS:
                    raise ValueError(f"aspect {slot}: value {value!r} not in {ASPECT_VALUES}")
                word = ASPECT_WORDS[value]
            head = ("" if not parts else " ") + f"{slot}: "
            starts[slot] = pos + len(head)
            piece = f"{head}{word}."
            parts.append(piece)
            pos += len(piece)
        return "".join(parts), starts

    def text(self) -> str:
        """A description of the format, for the template hash."""
        return f"{self.version}|slots={','.join(COT_SLOTS)}|values={ASPECT_WORDS}|labels={dict(self.label_words)}"


def parse_cot(text: str, label_words: Mapping[str, str], require_verdict: bool = True) -> ParsedCot:
    """Read aspects and verdict back from CoT text; never raises on bad text.

    ``label_words`` maps label -> verdict word (as rendered). Each missing slot, unknown value or
    contradicting repeat is a problem; the first reading of a slot is kept. With
    ``require_verdict=False`` (a multitask explanation, whose verdict came first) a missing
    verdict is not a problem.
    """
    words = {w.lower(): label for label, w in label_words.items()}
    out = ParsedCot()
    lowered = text.lower()
    for m in _SLOT_RE.finditer(lowered):
        slot, raw = m.group(1), " ".join(m.group(2).replace("-", " ").split())
        span = (m.start(2), m.start(2) + len(m.group(2)))
        if slot == VERDICT:
            label = words.get(raw)
            if label is None:
                out.problems.append(f"unknown verdict {raw!r}")
            elif out.verdict is None:
                out.verdict, out.spans[slot] = label, span
            elif out.verdict != label:
                out.problems.append(f"verdict given twice ({out.verdict!r}, {label!r})")
            continue
        value = _ASPECT_READ.get(raw)
        if value is None:
            out.problems.append(f"unknown value {raw!r} for {slot}")
        elif slot not in out.aspects:
            out.aspects[slot], out.spans[slot] = value, span
        elif out.aspects[slot] != value:
            out.problems.append(f"{slot} given twice ({out.aspects[slot]!r}, {value!r})")
    for slot in COT_SLOTS:
        if slot == VERDICT and not require_verdict:
            continue
        if (
            slot == VERDICT
            and out.verdict is None
            and not any("verdict" in p for p in out.problems)
        ):
            out.problems.append("no verdict")
        elif (
            slot != VERDICT and slot not in out.aspects and not any(slot in p for p in out.problems)
        ):
            out.problems.append(f"no {slot}")
    return out
