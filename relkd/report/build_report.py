"""``relkd report PATHS... --out DIR``: collect the runs, build every section into a staging
folder beside ``DIR`` and rename it into place, so a reader never sees half a report. Only a
folder this command wrote (it has ``report.json``) or an empty one is ever replaced."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from relkd import __version__
from relkd.artifacts.atomic_files import check_replaceable, move_into_place, staged_folder
from relkd.report.report_sections import build_sections
from relkd.report.report_writer import HTML_FILE, MARKDOWN_FILE, render_html, render_markdown
from relkd.report.run_collection import collect_runs
from relkd.report.run_record import REPORT_SPLIT, shown_path
from relkd.report.study_record import find_studies

REPORT_KIND = "relkd_report"
MARKER_FILE = "report.json"
TITLE = "relkd report"


def is_report_folder(path: Path) -> bool:
    """Whether ``path`` is a report folder this command wrote (its ``report.json`` says so)."""
    try:
        return json.loads((Path(path) / MARKER_FILE).read_text()).get("kind") == REPORT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(out: Path) -> None:
    """Refuse to replace anything but an earlier report or an empty folder (DataError)."""
    if not out.exists():
        return
    empty = out.is_dir() and not any(out.iterdir())
    check_replaceable(out, out, empty or is_report_folder(out), "relkd report folder")


def build_report(paths: Sequence[Path | str], out: Path | str) -> str:
    """Write ``out/report.md``, ``out/index.html``, their PNG figures and ``out/report.json``
    from every run under ``paths``; returns a one-line summary naming the two reports.

    Raises ConfigError for an argument that is missing or holds no run, DataError for a
    corrupt run file or an ``out`` that is not a report folder (nothing is written then).
    """
    out = Path(out)
    runs = collect_runs([Path(p) for p in paths])
    studies = find_studies([Path(p) for p in paths])
    _check_out(out)
    sources = [shown_path(Path(p)) for p in paths]
    intro = (
        f"{len(runs)} runs from {', '.join(sources)}; every number is on the {REPORT_SPLIT} "
        "split unless a section says otherwise."
    )
    with staged_folder(out) as staging:
        sections = build_sections(runs, staging, studies)
        (staging / MARKDOWN_FILE).write_text(render_markdown(TITLE, intro, sections))
        (staging / HTML_FILE).write_text(render_html(TITLE, intro, sections))
        figures = [f.file for s in sections for f in s.figures]
        notes = [n for s in sections for n in s.notes]
        marker = {
            "kind": REPORT_KIND,
            "relkd": __version__,
            "sources": sources,
            "runs": [{"name": r.name, "path": shown_path(r.path)} for r in runs],
            "studies": [{"name": s.name, "path": shown_path(s.folder)} for s in studies],
            "figures": figures,
            "notes": notes,
        }
        (staging / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        move_into_place(staging, out, replace=True)
    return (
        f"report of {len(runs)} runs ({len(figures)} figures, {len(notes)} notes): "
        f"{out / MARKDOWN_FILE} and {out / HTML_FILE}"
    )
