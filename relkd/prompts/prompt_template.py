"""The versioned teacher prompt, one response format per mode; its hash goes into every artifact.

Prompt (every mode; the neighbour lines only when behaviour neighbours are on)::

    query: {query}
    item: {item text}
    clicked for this query: {item title}; {item title}
    this item was clicked for: {query}; {query}
    query: {query}           (again, with ``echo_query``)
    relevance:

Response, by mode (``{v}`` is the verdict word, the CoT is CotTemplate's text):

- ``classifier``: `` {v}``: the verdict is the very next token (a verbalizer classifier);
- ``multitask``: `` {v}. because category: ... attributes: ...``: the verdict first, then the
  CoT as its explanation (both trained; inference reads the verdict in one forward pass);
- ``cot``: `` category: ... attributes: .... verdict: {v}.``: reasoning first (ELLM-rele);
- ``progressive``: the same text as ``cot``, but trained and decoded one aspect step at a time
  (ProRBP): each step's answer is a choice among its options, seeing the earlier answers.

``echo_query`` repeats the query after the item: in a causal LM the first copy cannot attend to
the item, the second can, so every query term can look for its match in the item text (the
repetition trick for causal encoders).

Changing any fixed text here, or the CoT format, changes ``sha256``; stores, adapters and
teacher caches record it, so an artifact made with another template is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relkd.artifacts.identity import sha256_hex
from relkd.prompts.cot_template import VERDICT, CotTemplate

TEMPLATE_VERSION = "relevance-v1"
MODES: tuple[str, ...] = ("classifier", "cot", "multitask", "progressive")
QUERY_NEIGHBORS_LINE = "clicked for this query: "
ITEM_NEIGHBORS_LINE = "this item was clicked for: "
NO_NEIGHBORS = "none"
NEIGHBOR_SEPARATOR = "; "
ANSWER_CUE = "relevance:"
EXPLANATION_CUE = " because "


@dataclass(frozen=True)
class PromptTemplate:
    """The prompt and response format of one teacher mode."""

    mode: str
    cot: CotTemplate
    query_neighbors: bool = False
    item_neighbors: bool = False
    echo_query: bool = False
    version: str = TEMPLATE_VERSION

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def has_cot(self) -> bool:
        return self.mode != "classifier"

    @property
    def verdict_first(self) -> bool:
        """The verdict is the first response token (classifier, multitask)."""
        return self.mode in ("classifier", "multitask")

    def prompt(
        self,
        query: str,
        item: str,
        query_neighbors: Sequence[str] = (),
        item_neighbors: Sequence[str] = (),
    ) -> str:
        lines = [f"query: {query}", f"item: {item}"]
        if self.query_neighbors:
            lines.append(
                QUERY_NEIGHBORS_LINE + (NEIGHBOR_SEPARATOR.join(query_neighbors) or NO_NEIGHBORS)
            )
        if self.item_neighbors:
            lines.append(
                ITEM_NEIGHBORS_LINE + (NEIGHBOR_SEPARATOR.join(item_neighbors) or NO_NEIGHBORS)
            )
        if self.echo_query:
            lines.append(f"query: {query}")
        lines.append(ANSWER_CUE)
        return "\n".join(lines)

    def response(
        self, aspects: Mapping[str, str | None], verdict: str | None
    ) -> tuple[str, dict[str, int]]:
        """Response text (starting with a space) and each slot value's character offset.

        With ``verdict=None`` (an unlabelled pair) verdict-first modes have no response and the
        others give the aspects only.
        """
        if self.mode == "classifier":
            if verdict is None:
                return "", {}
            return " " + self.cot.label_words[verdict], {VERDICT: 1}
        if self.mode == "multitask":
            if verdict is None:
                return "", {}
            head = " " + self.cot.label_words[verdict] + "."
            body, starts = self.cot.render(aspects, None)
            if not body:
                return head, {VERDICT: 1}
            offset = len(head) + len(EXPLANATION_CUE)
            return head + EXPLANATION_CUE + body, {
                VERDICT: 1,
                **{k: v + offset for k, v in starts.items()},
            }
        body, starts = self.cot.render(aspects, verdict)
        return " " + body, {k: v + 1 for k, v in starts.items()}

    def text(self) -> str:
        """Every fixed piece of the template, canonically: what the hash covers."""
        return "\n".join(
            [
                f"version={self.version}",
                f"mode={self.mode}",
                f"query_neighbors={self.query_neighbors}",
                f"item_neighbors={self.item_neighbors}",
                f"echo_query={self.echo_query}",
                self.prompt("{query}", "{item}", ["{n}"], ["{q}"]),
                f"explanation_cue={EXPLANATION_CUE!r}",
                self.cot.text(),
            ]
        )

    @property
    def sha256(self) -> str:
        return sha256_hex(self.text())
