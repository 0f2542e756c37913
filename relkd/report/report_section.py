"""What one report section holds, independent of the format it is written in, so the Markdown
and the HTML show the same tables, figures and notes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass(frozen=True)
class FigureRef:
    """A PNG beside the report (a bare file name, linked relatively)."""

    file: str
    alt: str


@dataclass
class Section:
    anchor: str  # the HTML id and the figure's file stem
    title: str
    text: str  # what the section shows and where its data comes from
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line each: what was left out and why
