"""The terminal summary: rich tables that fit the terminal's width, the summary, the verdicts and accuracy by tag
first, then details, each capped to stay short. Cells are Text, so user data is never read as rich markup."""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.evaluation.report import sections as s
from app.evaluation.results import CombinationResult, RunResult

TERMINAL_WRONG = 15  # wrong calls (and disagreements) listed per combination in the terminal


def _rich_table(rows: list[list[str]], title: str = "", left: int = 1, styles: dict[int, str] | None = None,
                cell_styles: dict[tuple[int, int], str] | None = None, keep: Sequence[int] = ()) -> Table:
    """A compact table; the first `left` columns are left-aligned, the others right-aligned. Cells in the `keep`
    columns are not wrapped (their headers may be)."""
    table = Table(title=Text(title, style="bold") if title else None, title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True, header_style="bold")
    for i, head in enumerate(rows[0]):
        widest = max((len(row[i]) for row in rows[1:]), default=0) if i in keep else None
        table.add_column(Text(head), justify="left" if i < left else "right", overflow="fold", min_width=widest)
    for n, row in enumerate(rows[1:]):
        cells = [Text(cell, style=(cell_styles or {}).get((n, i), "")) for i, cell in enumerate(row)]
        table.add_row(*cells, style=(styles or {}).get(n))
    return table


def _verdict_style(text: str) -> str:
    return "red" if ": worse" in text else "green" if ": better" in text else ""


def _columns(rows: list[list[str]], keep: Sequence[int]) -> list[list[str]]:
    return [[row[i] for i in keep] for row in rows]


def _too_wide(rows: list[list[str]], width: int, skip: int) -> bool:
    """Whether the cells (after the first `skip` columns, which may wrap) need more than `width` columns."""
    cells = [max(len(row[i]) for row in rows[1:]) for i in range(skip, len(rows[0]))]
    return sum(cells) + 3 * len(rows[0]) + 12 > width


def _fits(table: Table, width: int) -> bool:
    """Whether rich lays the table out within `width` columns (it cuts off what does not fit)."""
    probe = Console(width=width, file=io.StringIO(), color_system=None)
    with probe.capture() as captured:
        probe.print(table, crop=False)
    return all(len(line) <= width for line in captured.get().splitlines())


def _quality(summary: list[list[str]], best: int, columns: Sequence[int] = (0, 1, 2, 3, 4, 5, 6)) -> Table:
    rows = _columns(summary, columns)
    table = _rich_table(rows, "Summary", left=2, styles={best: "bold"}, keep=range(2, len(columns)))
    table.columns[0].justify = "center"
    for i in (2, 3):  # the accuracies' long headers wrap to their figures' width rather than widen the table
        table.columns[i].max_width = max(max(len(row[i]) for row in rows[1:]),
                                         max(len(word) for word in rows[0][i].split()))
    return table


def print_summary(run: RunResult, console: Console, max_wrong: int = TERMINAL_WRONG) -> None:
    """The summary, the verdicts and accuracy by tag first; then details, each capped to stay short."""
    combos = run.combinations
    best = run.best_index()
    out = console.print
    for line in s.intro(run):
        out(Text(line))
    out(Text(s.SCORED_NOTE))
    summary = s.summary_rows(combos)
    quality = _quality(summary, best)
    # Too wide: the router's pick loses its decimals, then `none` precision and recall go (the per-destination
    # table has them), and only then does the answered accuracy, the one gated, lose its decimals.
    for digits, pick, columns in ((1, 0, (0, 1, 2, 3, 4, 5, 6)), (1, 0, (0, 1, 2, 3, 4)), (0, 0, (0, 1, 2, 3, 4))):
        if _fits(quality, console.width):
            break
        summary = s.summary_rows(combos, digits, pick)
        quality = _quality(summary, best, columns)
    out()
    out(quality)
    out()
    costs = [["combination", "errors /\ntimeouts", "consistency", "latency ms\np50/p95/max", "tokens\nin/out/cached",
              "cost"]]
    costs += [[r[1], f"{r[7]} / {r[8]}", r[12], r[9], r[10], r[11]] for r in summary[1:]]
    out(_rich_table(costs, "Errors, speed and cost", keep=range(1, 6)))
    comparisons = s.comparison_rows(run)
    if comparisons:
        out()
        out(Text("Are the differences real? (what was answered, paired by call, exact McNemar test)", style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for row in comparisons[1:]:
            lines = Text("\n").join(Text(cell, style=_verdict_style(cell)) for cell in row[1:] if cell != s.DASH)
            grid.add_row(Text(row[0]), lines)
        out(grid)
    tags = s.tag_rows(combos)
    if tags and _too_wide(tags, console.width, 1):
        tags = s.tag_rows(combos, digits=0)
    if tags:
        out()
        out(_rich_table(tags, "Accuracy by tag (95% interval)", keep=range(1, len(tags[0]))))
    out()
    out(_rich_table(s.per_destination_rows(combos[best].metrics), f"Per destination ({combos[best].name})"))
    _print_thresholds(combos, console)
    for c in combos:
        _print_wrong(c, console, max_wrong)
    _print_disagreements(combos, console, max_wrong)


def _print_wrong(combo: CombinationResult, console: Console, max_wrong: int) -> None:
    rows = s.wrong_rows(combo)
    if len(rows) < 2:
        return
    shown = rows[: max_wrong + 1]
    title = f"Wrong calls: {combo.name} ({len(rows) - 1} of {combo.metrics.calls})"
    others = sum(max(len(r[i]) for r in shown) for i in (0, 2, 3, 4, 5))
    room = console.width - others - 2 * 5
    console.print()
    if room >= 28:  # a table, one line a call
        for r in shown[1:]:
            r[1] = s.short(r[1], room)
        console.print(_rich_table(shown, title, left=5, keep=(0, 2, 3, 4, 5)))
    else:  # narrow: a line (or two) a call
        console.print(Text(title, style="bold"))
        _indented(console, [f"{r[0]}: expected {r[2]}, answered {r[3]}"
                            + (f" (chose {r[4]})" if r[4] != r[3] else "")
                            + (f", score {r[5]}" if r[5] != s.DASH else "")
                            + f": {s.short(r[1], 60)}" for r in shown[1:]])
    if len(rows) - 1 > max_wrong:
        console.print(Text(f"... {len(rows) - 1 - max_wrong} more (see --out)"))


def _indented(console: Console, lines: list[str]) -> None:
    """One item a line; an item that wraps goes on indented."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=1)
    grid.add_column()
    for line in lines:
        grid.add_row(Text("-"), Text(line))
    console.print(grid)


def _print_disagreements(combos: list[CombinationResult], console: Console, max_wrong: int) -> None:
    dis = s.disagreements(combos)
    if not dis:
        return
    console.print()
    title = f"Combinations disagree on {len(dis)} calls"
    rows = [["call", "expected", *(c.name for c in combos)]]
    rows += [[d.id, d.expected, *(d.chosen.get(c.name, s.DASH) for c in combos)] for d in dis[:max_wrong]]
    cells = [max(len(r[i]) for r in rows[1:]) for i in range(len(rows[0]))]
    if sum(cells) + 2 * len(cells) <= console.width:
        right = {(n, i + 2): "green" for n, d in enumerate(dis[:max_wrong]) for i, c in enumerate(combos)
                 if d.chosen.get(c.name) == d.expected}
        console.print(_rich_table(rows, title, left=len(rows[0]), cell_styles=right, keep=range(len(rows[0]))))
    else:
        console.print(Text(title, style="bold"))
        _indented(console, [f"{d.id} (expected {d.expected}): " + "; ".join(
            f"{c.name}: {d.chosen.get(c.name, s.DASH)}" for c in combos) for d in dis[:max_wrong]])
    if len(dis) > max_wrong:
        console.print(Text(f"... {len(dis) - max_wrong} more (see --out)"))


def _print_thresholds(combos: list[CombinationResult], console: Console) -> None:
    for c in combos:
        fit = s.fit_lines(c)
        if not c.metrics.scores and not fit:
            continue
        console.print()
        console.print(Text(f"Scores and threshold: {c.name}", style="bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        grid.add_row(Text("scores"), Text(s.scores_line(c)))
        current = s.current_line(c)
        if current:
            grid.add_row(Text("current"), Text(current))
        if fit:
            line, why, warning = fit
            grid.add_row(Text("use" if line != s.NO_RECOMMENDATION else "fit"), Text(line, style="bold"))
            if why:
                grid.add_row(Text("why"), Text(why))
            if warning:
                grid.add_row(Text("warning", style="yellow"), Text(warning, style="yellow"))
        console.print(grid)
        rows = s.sweep_rows(c)
        if rows and _too_wide(rows, console.width, 0):
            rows = s.sweep_rows(c, digits=0)
        if rows:
            sweep = _rich_table(rows, left=0, keep=range(len(rows[0]) - 1))
            sweep.columns[-1].justify = "left"
            console.print(sweep)
