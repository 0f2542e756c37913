"""The teacher's view of an item: every field a relevance judge can use, labelled, in one line.

Students read a short item text (title and a few fields); the teacher reads the rich one, as the
Walmart teacher does: title, brand, colour, type, every attribute and the description, in the
order given, so a token budget cuts the last fields (the description by default) first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from relkd.errors import DataError

ITEM_FIELDS: tuple[str, ...] = (
    "title",
    "brand",
    "color",
    "category",
    "product_type",
    "attributes",
    "description",
)
# what the teacher reads by default: every field, the description last (cut first)
TEACHER_ITEM_FIELDS: tuple[str, ...] = (
    "title",
    "brand",
    "color",
    "product_type",
    "attributes",
    "description",
)
FIELD_LABELS: dict[str, str] = {
    "title": "",
    "brand": "brand",
    "color": "color",
    "category": "category",
    "product_type": "type",
    "attributes": "",
    "description": "description",
}
SEPARATOR = " | "


class ItemRenderer:
    """Render items as ``title | brand: X | color: Y | type: Z | size: xl; material: oak | description: ...``.

    Args:
        fields: item columns to show, in order (any of ITEM_FIELDS). ``attributes`` is the JSON
            column, shown as ``key: value`` pairs (underscores become spaces); keys already
            shown as their own field (brand, color) are not repeated.
    """

    def __init__(self, fields: Sequence[str]) -> None:
        unknown = [f for f in fields if f not in ITEM_FIELDS]
        if unknown:
            raise ValueError(f"unknown item field(s) {unknown}; known: {list(ITEM_FIELDS)}")
        if not fields:
            raise ValueError("name at least one item field")
        self.fields = tuple(fields)

    def columns(self, present: Sequence[str]) -> list[str]:
        """The fields this dataset's items table has (title is required by the schema)."""
        return [f for f in self.fields if f in present]

    def render_table(self, items: pa.Table, source: str = "items.parquet") -> list[str]:
        """One text per items row; a malformed attributes value names the file, column and id."""
        cols = self.columns(items.column_names)
        data = {c: items.column(c).to_pylist() for c in cols}
        ids = items.column("item_id").to_pylist() if "item_id" in items.column_names else None
        out = []
        for row in range(items.num_rows):
            values = {c: data[c][row] for c in cols}
            try:
                out.append(self.render(values))
            except ValueError as exc:
                where = f"item_id {ids[row]!r}" if ids else f"row {row}"
                raise DataError(f"{source}: column attributes, {where}: {exc}") from None
        return out

    def render(self, values: dict[str, Any]) -> str:
        parts = []
        shown = {f for f in self.fields if values.get(f)}
        for field in self.fields:
            value = values.get(field)
            if field == "attributes":
                text = self._attributes(value, shown)
            else:
                text = " ".join(str(value).split()) if value is not None else ""
                if text and FIELD_LABELS[field]:
                    text = f"{FIELD_LABELS[field]}: {text}"
            if text:
                parts.append(text)
        return SEPARATOR.join(parts)

    @staticmethod
    def _attributes(value: Any, shown: set[str]) -> str:
        if value is None or value == "":
            return ""
        try:
            attrs = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg})") from None
        if not isinstance(attrs, dict):
            raise ValueError("must be a JSON object of attribute name to value")
        pairs = []
        for key, val in attrs.items():
            if key in shown or val is None or str(val).strip() == "":
                continue
            val_text = ", ".join(map(str, val)) if isinstance(val, list) else str(val)
            pairs.append(f"{str(key).replace('_', ' ')}: {' '.join(val_text.split())}")
        return "; ".join(pairs)
