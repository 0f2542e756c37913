"""Render the sections as ``report.md`` and ``index.html``: the same tables, figures and notes.
The HTML needs nothing but the PNGs beside it (inline style, relative ``<img src>``)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from relkd.pipeline.comparison_table import markdown_table
from relkd.report.report_section import Section, Table

MARKDOWN_FILE = "report.md"
HTML_FILE = "index.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; font-size: .8rem; color: #666; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #8a5a00; } nav a { margin-right: 1rem; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    body = [[_md_cell(c) for c in row] for row in table.rows]
    text = markdown_table([_md_cell(h) for h in table.header], body)
    return f"{text}\n\n_{table.caption}_" if table.caption else text


def render_markdown(title: str, intro: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}", intro]
    for s in sections:
        parts.append(f"## {s.title}")
        parts.append(s.text)
        parts += [_md_table(t) for t in s.tables]
        parts += [f"![{f.alt}]({f.file})" for f in s.figures]
        if s.notes:
            parts.append("\n".join(f"- note: {n}" for n in s.notes))
    return "\n\n".join(parts) + "\n"


def _is_number(text: str) -> bool:
    head = text.split(" ± ")[0].replace("%", "")
    try:
        float(head)
    except ValueError:
        return False
    return True


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = []
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if _is_number(c)
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        rows.append(f"<tr>{cells}</tr>")
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(title: str, intro: str, sections: Sequence[Section]) -> str:
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>", f"<nav>{nav}</nav>"]
    for s in sections:
        body.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        body.append(f"<p>{html.escape(s.text)}</p>")
        body += [_html_table(t) for t in s.tables]
        body += [
            f'<figure><img src="{html.escape(f.file)}" alt="{html.escape(f.alt)}">'
            f"<figcaption>{html.escape(f.alt)}</figcaption></figure>"
            for f in s.figures
        ]
        body += [f'<p class="note">note: {html.escape(n)}</p>' for n in s.notes]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
