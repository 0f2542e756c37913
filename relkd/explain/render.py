"""The terminal layout of a PairExplanation: the pair, then the student and the teacher side by
side (a bar per label), the CoT-aspect heads beside the teacher's aspect judgements, and whether
the two argmax labels agree. Rendered with rich into a string (plain text, or ANSI colours for a
terminal), so tests and notebooks read exactly what the terminal shows."""

from __future__ import annotations

import io

from rich import box
from rich.bar import Bar
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from relkd.data.schema import ASPECTS
from relkd.explain.explanation import LabelDistribution, PairExplanation, TeacherView

MAX_BAR = 20
MIN_BAR = 4
TEXT_ITEM_NOTE = "free text: the item text is used as the item's title (its only field)"


def bar_width(width: int, labels: tuple[str, ...]) -> int:
    """The bar that fits a label row into half of ``width`` (two panels, borders, padding)."""
    inner = (width - 1) // 2 - 4
    return max(MIN_BAR, min(MAX_BAR, inner - max(map(len, labels)) - len("0.000") - 2))


def _distribution(dist: LabelDistribution, style: str, bar: int) -> Table:
    """One row per label: name, a bar of its probability, the probability (3 decimals)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    best = dist.predicted
    for label, p in zip(dist.labels, dist.probs.tolist(), strict=True):
        mark = "bold" if label == best else ""
        table.add_row(
            Text(label, style=mark),
            Bar(1.0, 0.0, max(0.0, min(1.0, p)), width=bar, color=style),
            Text(f"{p:.3f}", style=mark),
        )
    return table


def _pair(expl: PairExplanation) -> Table:
    pair = expl.pair
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    if pair.source == "dataset":
        gold = pair.gold if pair.gold is not None else "none (unlabelled)"
        facts = f"pair {pair.pair_id} · split {pair.split} · bucket {pair.bucket} · gold {gold}"
        table.add_row("pair", facts)
    else:
        table.add_row("pair", TEXT_ITEM_NOTE)
    table.add_row("query", pair.query)
    table.add_row("item", pair.item)
    names = ("student reads",) if len(pair.student_input) == 1 else ("query tower", "item tower")
    for name, text in zip(names, pair.student_input, strict=True):
        table.add_row(name, Text(text, style="cyan"))
    return table


def _student_panel(expl: PairExplanation, bar: int) -> Panel:
    dist = expl.student.dist
    body = Group(
        _distribution(dist, "green", bar),
        Text(f"score {dist.score:.3f} (expected gain)"),
        Text.assemble("predicted ", (dist.predicted, "bold")),
    )
    return Panel(body, title=f"student · {expl.student_kind}", title_align="left")


TEACHER_SOURCES = {
    "cache": "teacher · from its cache",
    "generated": "teacher · generated now",
    "none": "teacher · none",
}


def _teacher_panel(teacher: TeacherView, bar: int) -> Panel:
    title = TEACHER_SOURCES[teacher.source]
    if teacher.dist is None:
        return Panel(Text(teacher.where, style="dim"), title=title, title_align="left")
    where = "cache" if teacher.source == "cache" else "run"
    parts: list[RenderableType] = [  # rows level with the student's panel
        _distribution(teacher.dist, "magenta", bar),
        Text(f"score {teacher.dist.score:.3f} (expected gain)"),
        Text.assemble("verdict ", (teacher.dist.predicted, "bold")),
        Text.assemble((f"{where} ", "dim"), teacher.where, overflow="fold"),
    ]
    stated = teacher.stated_verdict
    if teacher.source == "generated" and teacher.cot and stated is None:
        parts.append(Text("its CoT text names no verdict", style="yellow"))
    elif stated is not None and stated != teacher.dist.predicted:
        parts.append(Text(f"its CoT text states {stated}", style="yellow"))
    cot = teacher.cot if teacher.cot else "(none: this teacher writes no CoT here)"
    parts.append(Text.assemble(("CoT ", "dim"), cot))
    return Panel(Group(*parts), title=title, title_align="left")


def _aspects(expl: PairExplanation) -> Table | None:
    heads = {a.aspect: a for a in expl.student.aspects}
    judged = expl.teacher.aspects
    if not heads and not any(judged.values()):
        return None
    table = Table(title="CoT aspects", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("aspect")
    if heads:
        table.add_column("student head")
        table.add_column("p", justify="right")
    if any(judged.values()):
        table.add_column("teacher")
    for aspect in ASPECTS:
        row = [aspect]
        if heads:
            head = heads.get(aspect)
            row += [head.value, f"{head.prob:.3f}"] if head is not None else ["-", "-"]
        if any(judged.values()):
            row.append(judged.get(aspect) or "-")
        table.add_row(*row)
    return table


def _agreement(expl: PairExplanation) -> Text:
    student = expl.student.dist.predicted
    if expl.agree is None:
        return Text(f"no teacher verdict to compare with the student's {student}", style="dim")
    if expl.agree:
        return Text(f"agree: student and teacher both say {student}", style="bold green")
    teacher = expl.teacher.verdict
    return Text(f"DISAGREE: student says {student}, teacher says {teacher}", style="bold red")


def render_explanation(expl: PairExplanation, width: int = 100, color: bool = False) -> str:
    """The layout as text, ``width`` columns wide; ``color`` adds ANSI styles (a terminal)."""
    console = Console(
        record=True,
        width=width,
        file=io.StringIO(),
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
    )
    head = f"relkd explain · student run {expl.run} ({expl.checkpoint.name})"
    console.print(Text(head, style="bold"))
    console.print(_pair(expl))
    sides = Table.grid(expand=True, padding=(0, 1))
    sides.add_column(ratio=1)
    sides.add_column(ratio=1)
    bar = bar_width(width, expl.student.dist.labels)
    sides.add_row(_student_panel(expl, bar), _teacher_panel(expl.teacher, bar))
    console.print(sides)
    aspects = _aspects(expl)
    if aspects is not None:
        console.print(aspects)
    console.print(_agreement(expl))
    text = console.export_text(styles=color)
    if not color:  # rich pads every line to the width
        text = "\n".join(line.rstrip() for line in text.splitlines())
    return text.rstrip() + "\n"
