"""Queries: an intent (type + stated aspects) drawn from an anchor item, then written as text.

Popularity comes first: every query gets a Zipf frequency and its head/torso/tail bucket, and
the bucket decides how the intent is written. Head queries are short and use the words item
titles use; tail queries are the hard ones:

- more stated aspects, in combinations no head query states (checked, not just likely);
- rare synonyms ("davenport", "telly") that never occur in any item title or description;
- query-only spellings of values ("gray", "xl") and more character-level misspellings.
"""

from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from relkd.data.splits import popularity_buckets
from relkd.data.synth.item_generator import ItemTable
from relkd.data.synth.taxonomy import AttributeDomain, Taxonomy
from relkd.data.synth.typos import make_typo

MAX_ATTRIBUTE_SLOTS = 3
TERM_KINDS: tuple[str, ...] = ("canonical", "common", "rare")
PREFIX_FILLERS = ("best", "cheap", "buy", "affordable", "top rated", "new", "good", "quality")
SUFFIX_FILLERS = ("for sale", "on sale", "deals", "online", "sale", "discount", "near me")
FILLER_TOKENS = frozenset(" ".join(PREFIX_FILLERS + SUFFIX_FILLERS + ("by",)).split())


@dataclass(frozen=True)
class TierProfile:
    """How a popularity bucket writes its queries."""

    atoms: tuple[float, ...]  # P(number of stated aspects = 0, 1, 2, ...)
    terms: tuple[float, float, float]  # P(canonical, common synonym, rare synonym)
    typos: tuple[float, float, float]  # P(0, 1, 2 misspelt words)
    value_form: float  # P(an attribute value is written in a query-only form)
    prefix: float
    suffix: float
    plural: float


PROFILES: dict[str, TierProfile] = {
    "head": TierProfile(
        atoms=(0.45, 0.4, 0.15),
        terms=(0.85, 0.15, 0.0),
        typos=(0.98, 0.02, 0.0),
        value_form=0.05,
        prefix=0.12,
        suffix=0.08,
        plural=0.25,
    ),
    "torso": TierProfile(
        atoms=(0.1, 0.35, 0.35, 0.2),
        terms=(0.5, 0.4, 0.1),
        typos=(0.85, 0.13, 0.02),
        value_form=0.25,
        prefix=0.15,
        suffix=0.1,
        plural=0.2,
    ),
    "tail": TierProfile(
        atoms=(0.0, 0.2, 0.4, 0.28, 0.12),
        terms=(0.1, 0.25, 0.65),
        typos=(0.3, 0.45, 0.25),
        value_form=0.7,
        prefix=0.2,
        suffix=0.12,
        plural=0.15,
    ),
}


@dataclass
class Intent:
    type: int
    anchor: int
    brand: int = -1
    model: int = -1
    slots: tuple[int, ...] = ()
    values: tuple[int, ...] = ()

    def atoms(self) -> frozenset[tuple[str | int, int]]:
        """The stated aspects as hashable atoms, for the unseen-combination check."""
        out: set[tuple[str | int, int]] = set(zip(self.slots, self.values, strict=True))
        if self.brand >= 0:
            out.add(("brand", self.brand))
        if self.model >= 0:
            out.add(("model", self.model))
        return frozenset(out)


@dataclass
class QueryTable:
    """Queries as parallel arrays; stated-attribute slots are padded with -1."""

    query_ids: list[str]
    texts: list[str]
    buckets: list[str]
    frequency: np.ndarray  # int64
    type: np.ndarray  # int16
    brand: np.ndarray  # int16, -1 = not stated
    model: np.ndarray  # int32, -1 = not stated
    slots: np.ndarray  # int16 [Q, 3] attribute key, -1 = unused
    values: np.ndarray  # int16 [Q, 3] value code, -1 = unused
    anchor: np.ndarray  # int32 item the intent was drawn from
    term_kind: np.ndarray  # int8 index into TERM_KINDS
    typos: np.ndarray  # int8 misspelt words
    value_forms: np.ndarray  # int8 values written in a query-only form
    intents: list[str]  # JSON

    def __len__(self) -> int:
        return len(self.query_ids)


def zipf_frequencies(n: int, exponent: float = 1.1) -> np.ndarray:
    """Search volume by popularity rank: rank 0 is searched ~2n times, the long tail once."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return np.maximum(1, np.round(2.0 * n / ranks**exponent)).astype(np.int64)


def pluralise(term: str) -> str:
    """Plural of a type term where the English rule is safe; otherwise the term itself."""
    head, _, last = term.rpartition(" ")
    if not last.isalpha() or last.endswith(("s", "f", "fe")):
        return term
    if last.endswith(("sh", "ch", "x")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


class QueryBuilder:
    """Draws intents and writes them; one instance builds one query table."""

    def __init__(self, tax: Taxonomy, items: ItemTable, pyrng: random.Random) -> None:
        self.tax = tax
        self.items = items
        self.rng = pyrng
        self.items_by_type = [np.flatnonzero(items.type == t) for t in range(len(tax.types))]
        counts = np.array([len(x) for x in self.items_by_type], dtype=np.float64)
        self.type_cum = np.cumsum(counts / counts.sum()).tolist()
        self.type_keys = [
            [tax.key_index(tax.domains[d].key) for d in t.attributes] for t in tax.types
        ]
        self.domain_of: list[dict[int, AttributeDomain]] = [
            {tax.key_index(tax.domains[d].key): tax.domains[d] for d in t.attributes}
            for t in tax.types
        ]
        self.color_k = tax.key_index("color")
        self.gender_k = tax.key_index("gender")
        self.head_combos: set[tuple[int, frozenset]] = set()

    # -- intents -------------------------------------------------------------------------
    def draw_intent(self, n_atoms: int) -> Intent:
        rng = self.rng
        t = min(bisect.bisect_right(self.type_cum, rng.random()), len(self.type_cum) - 1)
        pool = self.items_by_type[t]
        while len(pool) == 0:  # tiny catalogues may miss a type
            t = rng.randrange(len(self.items_by_type))
            pool = self.items_by_type[t]
        anchor = int(pool[rng.randrange(len(pool))])
        model = int(self.items.model[anchor])
        options: list[tuple[str | int, float]] = [("brand", 1.0)]
        if model >= 0:
            options.append(("model", 0.5))
        for k in self.type_keys[t]:
            options.append((k, 1.3 if k in (self.color_k, self.gender_k) else 1.0))
        chosen: list[str | int] = []
        while len(chosen) < n_atoms and options:
            total = sum(w for _, w in options)
            u = rng.random() * total
            for j, (name, w) in enumerate(options):
                u -= w
                if u <= 0 or j == len(options) - 1:
                    chosen.append(name)
                    options.pop(j)
                    break
        slots = [k for k in chosen if isinstance(k, int)][:MAX_ATTRIBUTE_SLOTS]
        row = self.items.attrs[anchor]
        return Intent(
            type=t,
            anchor=anchor,
            brand=int(self.items.brand[anchor]) if "brand" in chosen else -1,
            model=model if "model" in chosen else -1,
            slots=tuple(slots),
            values=tuple(int(row[k]) for k in slots),
        )

    def draw_tier_intent(self, tier: str, profile: TierProfile) -> Intent:
        """An intent for ``tier``; a tail intent states a combination no head query states.

        Head queries state at most len(PROFILES["head"].atoms) - 1 = 2 aspects, so the final
        fallback (as many aspects as the anchor offers, at least 3) is always unseen.
        """
        for _ in range(32):
            intent = self.draw_intent(_draw(profile.atoms, self.rng))
            if tier != "tail" or not self.seen_in_head(intent):
                return intent
        return self.draw_intent(MAX_ATTRIBUTE_SLOTS + 2)

    def remember_head(self, intent: Intent) -> None:
        atoms = sorted(intent.atoms(), key=str)
        for r in range(len(atoms) + 1):
            for sub in combinations(atoms, r):
                self.head_combos.add((intent.type, frozenset(sub)))

    def seen_in_head(self, intent: Intent) -> bool:
        return (intent.type, intent.atoms()) in self.head_combos

    # -- text ----------------------------------------------------------------------------
    def write(self, intent: Intent, profile: TierProfile) -> tuple[str, int, int, int]:
        """Render an intent; returns (text, term kind, misspelt words, query-only forms)."""
        rng = self.rng
        ptype = self.tax.types[intent.type]
        kind = _draw(profile.terms, rng)
        if kind == 2 and not ptype.rare_synonyms:
            kind = 1
        if kind == 1 and not ptype.synonyms:
            kind = 0
        term = (
            ptype.name,
            rng.choice(ptype.synonyms or (ptype.name,)),
            rng.choice(ptype.rare_synonyms or (ptype.name,)),
        )[kind]
        if rng.random() < profile.plural:
            term = pluralise(term)
        n_forms = 0
        gender = ""
        pre: list[str] = []
        post: list[str] = []
        for k, v in zip(intent.slots, intent.values, strict=True):
            domain = self.domain_of[intent.type][k]
            value = self.tax.key_values[k][v]
            forms = domain.query_forms.get(value, ())
            if forms and rng.random() < profile.value_form:
                value = rng.choice(forms)
                n_forms += 1
            if k == self.gender_k:
                gender = value
            elif rng.random() < 0.3:
                prefix = domain.query_prefix
                post.append(f"{prefix} {value}" if prefix and rng.random() < 0.6 else value)
            else:
                pre.append(value)
        rng.shuffle(pre)
        brand = self.tax.brands[intent.brand][1] if intent.brand >= 0 else ""
        model = self.tax.models[intent.model][1] if intent.model >= 0 else ""
        u = rng.random()
        if brand and not model and u < 0.15:
            parts = [gender, *pre, term, *post, "by", brand]
        elif (brand or model) and u < 0.4:
            parts = [gender, *pre, term, brand, model, *post]
        else:
            parts = [brand, model, gender, *pre, term, *post]
        if rng.random() < profile.prefix:
            parts.insert(0, rng.choice(PREFIX_FILLERS))
        if rng.random() < profile.suffix:
            parts.append(rng.choice(SUFFIX_FILLERS))
        tokens = " ".join(p for p in parts if p).lower().split()
        n_typos = _draw(profile.typos, rng)
        candidates = [
            i
            for i, tok in enumerate(tokens)
            if len(tok) >= 4 and tok.isalpha() and tok not in FILLER_TOKENS
        ]
        rng.shuffle(candidates)
        done = 0
        for i in candidates[:n_typos]:
            tokens[i] = make_typo(tokens[i], rng)
            done += 1
        return " ".join(tokens), kind, done, n_forms


def _draw(probs: tuple[float, ...], rng: random.Random) -> int:
    u = rng.random()
    for i, p in enumerate(probs):
        u -= p
        if u < 0:
            return i
    return len(probs) - 1


def build_queries(
    tax: Taxonomy, items: ItemTable, n_queries: int, rng: np.random.Generator, pyrng: random.Random
) -> QueryTable:
    """``n_queries`` queries with unique texts, Zipf frequencies and popularity buckets."""
    query_ids = [f"q{j:07d}" for j in range(n_queries)]
    frequency = zipf_frequencies(n_queries)[rng.permutation(n_queries)]
    bucket_of = popularity_buckets(query_ids, frequency)
    buckets = [bucket_of[q] for q in query_ids]
    builder = QueryBuilder(tax, items, pyrng)
    intents: list[Intent | None] = [None] * n_queries
    written: list[tuple[str, int, int, int]] = [("", 0, 0, 0)] * n_queries
    seen_texts: set[str] = set()
    for tier in ("head", "torso", "tail"):
        profile = PROFILES[tier]
        for qi in (i for i, b in enumerate(buckets) if b == tier):
            intent = None
            text = None
            for attempt in range(64):
                if attempt % 8 == 0:
                    intent = builder.draw_tier_intent(tier, profile)
                assert intent is not None
                out = builder.write(intent, profile)
                if out[0] and out[0] not in seen_texts:
                    text = out
                    break
            if text is None:  # practically unreachable: the text space is far larger
                text = (f"{out[0]} {qi}", *out[1:])
            seen_texts.add(text[0])
            intents[qi] = intent
            written[qi] = text
            if tier == "head":
                builder.remember_head(intent)
    return _assemble(tax, query_ids, buckets, frequency, intents, written)


def _assemble(
    tax: Taxonomy,
    query_ids: list[str],
    buckets: list[str],
    frequency: np.ndarray,
    intents: list[Intent | None],
    written: list[tuple[str, int, int, int]],
) -> QueryTable:
    n = len(query_ids)
    slots = np.full((n, MAX_ATTRIBUTE_SLOTS), -1, dtype=np.int16)
    values = np.full((n, MAX_ATTRIBUTE_SLOTS), -1, dtype=np.int16)
    records: list[str] = []
    for i, intent in enumerate(intents):
        assert intent is not None
        slots[i, : len(intent.slots)] = intent.slots
        values[i, : len(intent.values)] = intent.values
        _, kind, typos, forms = written[i]
        ptype = tax.types[intent.type]
        records.append(
            json.dumps(
                {
                    "product_type": ptype.name,
                    "category": ptype.category,
                    "brand": tax.brands[intent.brand][1] if intent.brand >= 0 else None,
                    "model": tax.models[intent.model][1] if intent.model >= 0 else None,
                    "attributes": {
                        tax.attribute_keys[k]: tax.key_values[k][v]
                        for k, v in zip(intent.slots, intent.values, strict=True)
                    },
                    "type_term_kind": TERM_KINDS[kind],
                    "typos": typos,
                    "query_forms": forms,
                },
                ensure_ascii=False,
            )
        )
    get = [i for i in intents if i is not None]
    return QueryTable(
        query_ids=query_ids,
        texts=[w[0] for w in written],
        buckets=buckets,
        frequency=frequency,
        type=np.array([i.type for i in get], dtype=np.int16),
        brand=np.array([i.brand for i in get], dtype=np.int16),
        model=np.array([i.model for i in get], dtype=np.int32),
        slots=slots,
        values=values,
        anchor=np.array([i.anchor for i in get], dtype=np.int32),
        term_kind=np.array([w[1] for w in written], dtype=np.int8),
        typos=np.array([w[2] for w in written], dtype=np.int8),
        value_forms=np.array([w[3] for w in written], dtype=np.int8),
        intents=records,
    )
