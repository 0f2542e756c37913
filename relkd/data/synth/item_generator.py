"""Items: product lines with variants, integer-coded for the rules and rendered as text.

A catalogue is built from product *lines* (one brand, one model or collection, fixed materials
and style) that come in a few *variants* (colour, size, storage, ...), as real catalogues do.
Variants give queries realistic sets of exact matches and near misses. All codes are drawn
vectorised; only the final strings (title, description, attribute JSON) are built per item.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import numpy as np

from relkd.data.synth.taxonomy import Taxonomy
from relkd.data.synth.zipf import draw_zipf

VARIANT_COUNTS = np.array([1, 2, 3, 4, 5, 6])
VARIANT_PROBS = np.array([0.2, 0.25, 0.2, 0.15, 0.12, 0.08])
BRAND_EXPONENT = 0.9
VALUE_EXPONENT = 0.9
TITLE_CANONICAL = 0.7  # share of titles naming the type canonically; the rest use a synonym


@dataclass
class ItemTable:
    """Items as parallel arrays (codes) and lists (text); row ``i`` is item ``item_ids[i]``."""

    item_ids: list[str]
    type: np.ndarray  # int16
    category: np.ndarray  # int16
    brand: np.ndarray  # int16
    model: np.ndarray  # int32, -1 = none
    line: np.ndarray  # int32 product line
    attrs: np.ndarray  # int16 [n, n_keys], -1 = the type has no such attribute
    titles: list[str]
    descriptions: list[str]
    attributes_json: list[str]

    def __len__(self) -> int:
        return len(self.item_ids)


ACRONYMS = frozenset({"tv", "mtb", "rc", "usb", "aa", "os", "pc"})


def display(text: str) -> str:
    """Title-case lowercase words only, so '3-seater' and 'USB-C' keep their shape."""
    return " ".join(
        w.upper()
        if w in ACRONYMS
        else w[0].upper() + w[1:]
        if w[:1].isalpha() and w.islower()
        else w
        for w in text.split()
    )


def _draw_lines(tax: Taxonomy, n_items: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Line-level codes, enough lines to cover ``n_items`` variants."""
    pop = np.array([t.popularity for t in tax.types])
    p_type = pop / pop.sum()
    has_variants = np.array([bool(t.variants) for t in tax.types])
    n_lines = int(n_items / float(VARIANT_COUNTS @ VARIANT_PROBS) * 1.2) + 16
    ltype = rng.choice(len(tax.types), size=n_lines, p=p_type).astype(np.int16)
    count = rng.choice(VARIANT_COUNTS, size=n_lines, p=VARIANT_PROBS)
    space = np.array(
        [int(np.prod([len(tax.domains[d].values) for d in t.variants])) for t in tax.types]
    )
    count = np.minimum(np.where(has_variants[ltype], count, 1), space[ltype])
    while count.sum() < n_items:  # never expected; keeps tiny catalogues exact
        count = np.concatenate([count, [1]])
        ltype = np.concatenate([ltype, [rng.choice(len(tax.types), p=p_type)]]).astype(np.int16)
    cut = int(np.searchsorted(np.cumsum(count), n_items)) + 1
    ltype, count = ltype[:cut], count[:cut]
    count[-1] -= int(count.sum()) - n_items

    cat_of_type = tax.type_category
    lcat = cat_of_type[ltype]
    brands_per_cat = np.array([len(tax.category_brands(c)) for c in range(len(tax.categories))])
    first_brand = np.array([tax.category_brands(c)[0] for c in range(len(tax.categories))])
    lbrand = (first_brand[lcat] + draw_zipf(rng, brands_per_cat[lcat], cut, BRAND_EXPONENT)).astype(
        np.int16
    )
    # model table [type, brand] -> up to 3 model codes
    table = np.full((len(tax.types), len(tax.brands), 3), -1, dtype=np.int32)
    n_models = np.zeros((len(tax.types), len(tax.brands)), dtype=np.int64)
    for (t, b), codes in tax.type_models.items():
        table[t, b, : len(codes)] = codes
        n_models[t, b] = len(codes)
    nm = n_models[ltype, lbrand]
    pick = np.floor(rng.random(cut) * np.maximum(nm, 1)).astype(np.int64)
    lmodel = np.where(nm > 0, table[ltype, lbrand, np.minimum(pick, 2)], -1).astype(np.int32)
    return {"type": ltype, "count": count, "category": lcat, "brand": lbrand, "model": lmodel}


def _domain_codes(tax: Taxonomy) -> dict[str, tuple[int, np.ndarray]]:
    """Domain name -> (key index, value codes of the domain's values under that key)."""
    out = {}
    for name, d in tax.domains.items():
        k = tax.key_index(d.key)
        out[name] = (k, np.array([tax.key_values[k].index(v) for v in d.values], dtype=np.int16))
    return out


def generate_items(
    tax: Taxonomy, n_items: int, rng: np.random.Generator, pyrng: random.Random
) -> ItemTable:
    """Draw ``n_items`` items and render their text."""
    lines = _draw_lines(tax, n_items, rng)
    n_lines = len(lines["type"])
    n_keys = len(tax.attribute_keys)
    dom = _domain_codes(tax)

    # line-level (fixed) attribute values, vectorised per domain
    line_attrs = np.full((n_lines, n_keys), -1, dtype=np.int16)
    for ti, t in enumerate(tax.types):
        rows = np.flatnonzero(lines["type"] == ti)
        for dname in t.attributes:
            k, codes = dom[dname]
            line_attrs[rows, k] = codes[draw_zipf(rng, len(codes), len(rows), VALUE_EXPONENT)]

    # variants: distinct combinations of the variant domains within a line
    line_of_item = np.repeat(np.arange(n_lines, dtype=np.int32), lines["count"])
    attrs = line_attrs[line_of_item]
    starts = np.concatenate([[0], np.cumsum(lines["count"])[:-1]]).tolist()
    counts = lines["count"].tolist()
    ltypes = lines["type"].tolist()
    cum = {
        name: np.cumsum(1.0 / np.arange(1, len(d.values) + 1) ** VALUE_EXPONENT).tolist()
        for name, d in tax.domains.items()
    }
    spaces = [int(np.prod([len(tax.domains[d].values) for d in t.variants])) for t in tax.types]
    rows: list[int] = []
    cols: list[int] = []
    vals: list[int] = []
    for li in np.flatnonzero(lines["count"] > 1).tolist():
        t = tax.types[ltypes[li]]
        count = counts[li]
        want = min(count, spaces[ltypes[li]])
        combos: dict[tuple[int, ...], None] = {}
        while len(combos) < want:
            combos[tuple(_pick(cum[d], pyrng) for d in t.variants)] = None
        ordered = list(combos)
        for j in range(count):
            for dname, vi in zip(t.variants, ordered[j % want], strict=True):
                k, codes = dom[dname]
                rows.append(starts[li] + j)
                cols.append(k)
                vals.append(int(codes[vi]))
    attrs[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = np.asarray(
        vals, dtype=np.int16
    )

    # shuffle so a line's variants are not adjacent in the table
    order = rng.permutation(n_items)
    line_of_item = line_of_item[order]
    attrs = attrs[order]
    itype = lines["type"][line_of_item]
    table = ItemTable(
        item_ids=[f"i{j:07d}" for j in range(n_items)],
        type=itype,
        category=lines["category"][line_of_item],
        brand=lines["brand"][line_of_item],
        model=lines["model"][line_of_item],
        line=line_of_item,
        attrs=attrs,
        titles=[],
        descriptions=[],
        attributes_json=[],
    )
    _render(tax, table, rng)
    return table


def _pick(cum: list[float], pyrng: random.Random) -> int:
    return min(bisect.bisect_right(cum, pyrng.random() * cum[-1]), len(cum) - 1)


TITLE_PATTERNS = (
    "{brand} {model} {pre} {type}{post}",
    "{brand} {pre} {type} {model}{post}",
    "{pre} {type} by {brand}{post}",
    "{type} - {brand} {model} {pre}{post}",
    "{brand} {model} {type}, {all}",
    "{pre} {brand} {type}{post}",
)
DESCRIPTION_PATTERNS = (
    "The {brand} {model} {type}{color_part}. {facts} {blurb}",
    "{blurb} This {type} from {brand}{model_part} features {facts_inline}.",
    "{Brand} {type}{model_part}. {facts} {blurb} {blurb2}",
)


def _render(tax: Taxonomy, items: ItemTable, rng: np.random.Generator) -> None:
    """Titles, descriptions and attribute JSON; type words are canonical or common synonyms.

    Every display form is precomputed and every random choice pre-drawn with numpy, so the
    per-item loop only picks and joins strings.
    """
    keys = tax.attribute_keys
    color_k = tax.key_index("color")
    gender_k = tax.key_index("gender")
    type_keys = [[tax.key_index(tax.domains[d].key) for d in t.attributes] for t in tax.types]
    # probability that an attribute makes it into the title: colour and variant attributes
    # (what tells variants apart) almost always, the rest about half the time
    show_p = [
        [
            0.9 if k == color_k else 0.85 if d in t.variants else 0.55
            for d, k in zip(t.attributes, type_keys[ti], strict=True)
        ]
        for ti, t in enumerate(tax.types)
    ]
    words = [(t.name, *t.synonyms) for t in tax.types]
    disp_words = [[display(w) for w in ws] for ws in words]
    disp_values = [[display(v) for v in vs] for vs in tax.key_values]
    labels = [k.replace("_", " ").capitalize() for k in keys]
    brand_names = [b for _, b in tax.brands]
    model_names = [m for _, m in tax.models]
    values = tax.key_values
    n = len(items.item_ids)
    n_rand = 8 + max(len(k) for k in type_keys)
    u_all = rng.random((n, n_rand)).tolist()
    types = items.type.tolist()
    cats = items.category.tolist()
    brands = items.brand.tolist()
    models = items.model.tolist()
    # each item's values for its own type's keys only (a [n, 56] tolist would dominate)
    width = max(len(k) for k in type_keys)
    key_table = np.zeros((len(tax.types), width), dtype=np.int64)
    for ti, ks in enumerate(type_keys):
        key_table[ti, : len(ks)] = ks
    own = items.attrs[np.arange(n)[:, None], key_table[items.type]].tolist()
    has_color = (items.attrs[:, color_k] >= 0).tolist()
    n_tp, n_dp = len(TITLE_PATTERNS), len(DESCRIPTION_PATTERNS)
    titles, descs, jsons = items.titles, items.descriptions, items.attributes_json
    for i in range(n):
        u = u_all[i]
        t = types[i]
        row = own[i]
        blurbs = tax.categories[cats[i]].blurbs
        brand = brand_names[brands[i]]
        model = model_names[models[i]] if models[i] >= 0 else ""
        tw = disp_words[t]
        tword = tw[0] if u[0] < TITLE_CANONICAL else tw[1 + int(u[1] * (len(tw) - 1))]
        gender = ""
        shown: list[str] = []
        fact_keys = type_keys[t]
        for j, k in enumerate(fact_keys):
            if k == gender_k:
                gender = disp_values[k][row[j]]
            elif u[8 + j] < show_p[t][j]:
                shown.append(disp_values[k][row[j]])
        if u[2] < 0.5:
            shown.reverse()
        cut = int(u[3] * (len(shown) + 1))
        pre = " ".join([gender, *shown[:cut]])
        post = (", " + ", ".join(shown[cut:])) if cut < len(shown) else ""
        title = TITLE_PATTERNS[int(u[4] * n_tp)].format(
            brand=brand,
            model=model,
            pre=pre,
            post=post,
            type=tword,
            all=", ".join(x for x in (gender, *shown) if x),
        )
        titles.append(" ".join(title.split()).replace(" ,", ",").strip(" ,-"))

        fact_vals = [values[k][row[j]] for j, k in enumerate(fact_keys)]
        color = fact_vals[fact_keys.index(color_k)] if has_color[i] else ""
        desc = DESCRIPTION_PATTERNS[int(u[5] * n_dp)].format(
            brand=brand,
            Brand=brand,
            model=model,
            type=words[t][int(u[6] * len(words[t]))],
            color_part=f" in {color}" if color else "",
            model_part=f" ({model})" if model else "",
            facts=" ".join(f"{labels[k]}: {v}." for k, v in zip(fact_keys, fact_vals, strict=True)),
            facts_inline=", ".join(fact_vals) or "a simple design",
            blurb=blurbs[int(u[7] * len(blurbs))],
            blurb2=blurbs[int(u[1] * len(blurbs))],
        )
        descs.append(" ".join(desc.split()))
        pairs = [f'"{keys[k]}": "{v}"' for k, v in zip(fact_keys, fact_vals, strict=True)]
        if model:
            pairs.append(f'"model": "{model}"')
        jsons.append("{" + ", ".join(pairs) + "}")
