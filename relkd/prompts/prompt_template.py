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

``chat`` (instruct LLMs such as SmolLM2 or Qwen2.5-Instruct) puts an instruction before these
lines, sends them as the user's turn through the tokenizer's own chat template
(``chat_prompt``), leaves out the ``relevance:`` cue (the assistant's turn is the answer
position) and starts the response without its leading space, as an assistant's reply starts.
The verdict word of a verdict-first mode is then read without a leading space too
(``verdict_prefix``). Plain templates are what base models (MiniLM-causal) read; their hash does
not change with this option.

Changing any fixed text here, or the CoT format, changes ``sha256``; stores, adapters and
teacher caches record it, so an artifact made with another template is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relkd.artifacts.identity import sha256_hex
from relkd.prompts.cot_template import ASPECT_WORDS, VERDICT, CotTemplate

TEMPLATE_VERSION = "relevance-v1"
MODES: tuple[str, ...] = ("classifier", "cot", "multitask", "progressive")
QUERY_NEIGHBORS_LINE = "clicked for this query: "
ITEM_NEIGHBORS_LINE = "this item was clicked for: "
NO_NEIGHBORS = "none"
NEIGHBOR_SEPARATOR = "; "
ANSWER_CUE = "relevance:"
EXPLANATION_CUE = " because "
# what an instruct LLM is told, by mode (chat templates only); {verdicts} lists the label words
# with the meaning of the ones relkd knows
VERDICT_INSTRUCTION = (
    "Judge how well the item fits the shopping query. Answer with one word: {verdicts}."
)
EXPLAINED_VERDICT_INSTRUCTION = (
    "Judge how well the item fits the shopping query. Answer with one word first: {verdicts}. "
    "Then say why: category: <a>. brand: <a>. model: <a>. attributes: <a>. where <a> is {aspects}."
)
COT_INSTRUCTION = (
    "Judge how well the item fits the shopping query. Check the category, the brand, the model "
    "and the attributes the query asks for, then give a verdict: {verdicts}. Answer in exactly "
    "this format: category: <a>. brand: <a>. model: <a>. attributes: <a>. verdict: <v>. where "
    "<a> is {aspects}."
)
LABEL_MEANINGS: dict[str, str] = {
    "exact": "it is what the query asks for",
    "substitute": "a different item that could be used instead",
    "complement": "an item used together with what the query asks for",
    "irrelevant": "none of these",
}


def describe_verdicts(words: Sequence[str]) -> str:
    """``exact (it is what the query asks for), ... or irrelevant (none of these)``."""
    parts = [f"{w} ({LABEL_MEANINGS[w]})" if w in LABEL_MEANINGS else w for w in words]
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else "".join(parts)


def chat_prompt(tokenizer: Any, user_text: str) -> str:
    """``user_text`` as the user's turn of the tokenizer's chat template, up to where the
    assistant's reply starts (its special tokens written as text: tokenize it with
    ``add_special_tokens=False``)."""
    return str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )
    )


@dataclass(frozen=True)
class PromptTemplate:
    """The prompt and response format of one teacher mode."""

    mode: str
    cot: CotTemplate
    query_neighbors: bool = False
    item_neighbors: bool = False
    echo_query: bool = False
    chat: bool = False
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

    @property
    def verdict_prefix(self) -> str:
        """What precedes the verdict word in the response: a space, except for the first word of
        an assistant's reply (chat, verdict-first modes)."""
        return "" if self.chat and self.verdict_first else " "

    def instruction(self) -> str:
        """What the mode asks of an instruct LLM: a chat prompt starts with it (``write-cot``
        also puts it before a plain prompt)."""
        form = {
            "classifier": VERDICT_INSTRUCTION,
            "multitask": EXPLAINED_VERDICT_INSTRUCTION,
        }.get(self.mode, COT_INSTRUCTION)
        return form.format(
            verdicts=describe_verdicts(list(self.cot.label_words.values())),
            aspects=", ".join(ASPECT_WORDS.values()),
        )

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
        if self.chat:
            return self.instruction() + "\n\n" + "\n".join(lines)
        lines.append(ANSWER_CUE)
        return "\n".join(lines)

    def response(
        self, aspects: Mapping[str, str | None], verdict: str | None
    ) -> tuple[str, dict[str, int]]:
        """Response text (starting with a space) and each slot value's character offset.

        With ``verdict=None`` (an unlabelled pair) verdict-first modes have no response and the
        others give the aspects only. A chat template's response has no leading space.
        """
        text, starts = self._spaced_response(aspects, verdict)
        if self.chat and text.startswith(" "):
            return text[1:], {k: v - 1 for k, v in starts.items()}
        return text, starts

    def _spaced_response(
        self, aspects: Mapping[str, str | None], verdict: str | None
    ) -> tuple[str, dict[str, int]]:
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
        """Every fixed piece of the template, canonically: what the hash covers (a chat
        template adds its lines; a plain template's text is what it always was)."""
        chat = [f"chat={self.chat}", f"instruction={self.instruction()!r}"] if self.chat else []
        return "\n".join(
            [
                *chat,
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
