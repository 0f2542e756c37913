"""Teacher prompts: the CoT format and its parser, the template hash, item text, verbalizer."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

from relkd.data.schema import ASPECT_VALUES, ASPECTS
from relkd.errors import ConfigError, DataError
from relkd.prompts import CotTemplate, ItemRenderer, PromptTemplate, Verbalizer, parse_cot
from relkd.prompts import prompt_template as prompt_template_module
from tests.datamodule_fixtures import minilm_path

WORDS = {
    "Exact": "exact",
    "Substitute": "substitute",
    "Complement": "complement",
    "Irrelevant": "irrelevant",
}
COT = CotTemplate(WORDS)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


ALL_FACTS = [
    dict(zip(ASPECTS, combo, strict=True)) for combo in itertools.product(ASPECT_VALUES, repeat=4)
]


@pytest.mark.parametrize("verdict", list(WORDS))
def test_cot_round_trips_every_aspect_combination(verdict: str) -> None:
    for facts in ALL_FACTS:
        text, starts = COT.render(facts, verdict)
        parsed = parse_cot(text, WORDS)
        assert parsed.ok, (text, parsed.problems)
        assert parsed.aspects == facts and parsed.verdict == verdict
        # the recorded slot offsets point at the values
        assert text[starts["verdict"] :].startswith(WORDS[verdict])
        for a in ASPECTS:
            assert parsed.spans[a][0] == starts[a]


def test_cot_round_trips_through_wordpiece_decoding(tokenizer) -> None:
    for facts in ALL_FACTS[::7]:
        text, _ = COT.render(facts, "Substitute")
        decoded = tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert " : " in decoded  # WordPiece spacing differs from the rendered text ...
        parsed = parse_cot(decoded, WORDS)
        assert parsed.ok and parsed.aspects == facts and parsed.verdict == "Substitute"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("category: match. brand: match. model: match. verdict: exact.", "no attributes"),
        (
            "category: match. brand: maybe. model: match. attributes: match. verdict: exact.",
            "unknown value 'maybe' for brand",
        ),
        ("category: match. brand: match. model: match. attributes: match.", "no verdict"),
        (
            "category: match. brand: match. model: match. attributes: match. verdict: great.",
            "unknown verdict 'great'",
        ),
        (
            "category: match. category: mismatch. brand: match. model: match. attributes: match. verdict: exact.",
            "category given twice",
        ),
        ("total nonsense", "no category"),
    ],
)
def test_parse_failures_are_reported(text: str, problem: str) -> None:
    parsed = parse_cot(text, WORDS)
    assert not parsed.ok
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_multitask_explanation_needs_no_verdict() -> None:
    t = PromptTemplate("multitask", COT)
    facts = ALL_FACTS[5]
    text, starts = t.response(facts, "Exact")
    assert text.startswith(" exact.") and starts["verdict"] == 1
    assert parse_cot(text, WORDS, require_verdict=False).ok
    assert not parse_cot(text, WORDS).ok


def test_response_formats_by_mode() -> None:
    facts = ALL_FACTS[10]
    assert PromptTemplate("classifier", COT).response(facts, "Complement") == (
        " complement",
        {"verdict": 1},
    )
    cot, _ = PromptTemplate("cot", COT).response(facts, "Complement")
    prog, _ = PromptTemplate("progressive", COT).response(facts, "Complement")
    assert cot == prog and cot.endswith("verdict: complement.")
    # an unlabelled pair has no verdict-first response
    assert PromptTemplate("classifier", COT).response(facts, None) == ("", {})


def test_template_hash_changes_with_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    base = PromptTemplate("classifier", COT)
    assert base.sha256 == PromptTemplate("classifier", CotTemplate(dict(WORDS))).sha256
    variants = [
        PromptTemplate("cot", COT),
        PromptTemplate("classifier", COT, query_neighbors=True),
        PromptTemplate("classifier", COT, item_neighbors=True),
        PromptTemplate("classifier", CotTemplate({**WORDS, "Exact": "perfect"})),
        PromptTemplate("classifier", COT, version="relevance-v2"),
    ]
    hashes = {v.sha256 for v in variants}
    assert base.sha256 not in hashes and len(hashes) == len(variants)
    # editing a fixed piece of the prompt text changes the hash too
    before = base.sha256
    monkeypatch.setattr(prompt_template_module, "ANSWER_CUE", "judgement:")
    assert PromptTemplate("classifier", COT).sha256 != before


def test_prompt_shows_neighbour_lines_only_when_enabled() -> None:
    plain = PromptTemplate("classifier", COT).prompt("red sofa", "Oak sofa", ["a"], ["b"])
    assert "clicked" not in plain and plain.endswith("relevance:")
    both = PromptTemplate("classifier", COT, True, True).prompt(
        "red sofa", "Oak sofa", ["a", "c"], []
    )
    assert "clicked for this query: a; c" in both
    assert "this item was clicked for: none" in both


def test_item_renderer_labels_fields_and_attributes() -> None:
    r = ItemRenderer(["title", "brand", "color", "attributes", "description"])
    text = r.render(
        {
            "title": "Oak  Desk",
            "brand": "Acme",
            "color": "red",
            "attributes": '{"color": "red", "screen_size": "13 inch", "model": "X5"}',
            "description": None,
        }
    )
    assert text == "Oak Desk | brand: Acme | color: red | screen size: 13 inch; model: X5"


def test_item_renderer_names_file_column_and_item_on_bad_json() -> None:
    table = pa.table({"item_id": ["i0", "i1"], "title": ["a", "b"], "attributes": ["{}", "{oops"]})
    with pytest.raises(DataError, match=r"items\.parquet: column attributes, item_id 'i1'"):
        ItemRenderer(["title", "attributes"]).render_table(table, "items.parquet")
    with pytest.raises(ValueError, match="unknown item field"):
        ItemRenderer(["title", "price"])


def test_verbalizer_words_and_first_tokens(tokenizer) -> None:
    v = Verbalizer(list(WORDS))
    assert v.words == WORDS
    ids = v.token_ids(tokenizer)
    assert len(set(ids)) == 4
    with pytest.raises(ConfigError, match="unknown label"):
        Verbalizer(list(WORDS), {"Perfect": "x"})
    with pytest.raises(ConfigError, match="share a first token"):
        Verbalizer(list(WORDS), {"Exact": "mismatch", "Substitute": "mismatched"}).token_ids(
            tokenizer
        )


def test_echo_query_repeats_the_query_after_the_item() -> None:
    plain = PromptTemplate("classifier", COT).prompt("red sofa", "Oak sofa")
    echo = PromptTemplate("classifier", COT, echo_query=True).prompt("red sofa", "Oak sofa")
    assert plain.count("query: red sofa") == 1
    assert echo.count("query: red sofa") == 2
    assert echo.index("item: Oak sofa") < echo.rindex("query: red sofa") < echo.index("relevance:")
    assert (
        PromptTemplate("classifier", COT, echo_query=True).sha256
        != PromptTemplate("classifier", COT).sha256
    )
