"""`switchboard outcomes --format html`: one self-contained page (the evaluation report's style, inline CSS and SVG,
no scripts, no fetches; every destination id escaped): the table of outcomes per destination, worst first, and a
heat map per destination of the share not reached by hour of the week."""

from __future__ import annotations

import html
from typing import Any

from app.dataset.outcomes import DAYS, OUTCOMES, Counts, Summary, hour_label
from app.evaluation.report.html import CSS

E = html.escape
CELL, GAP, LEFT, TOP = 18, 2, 38, 18  # the heat map's cell size, gap, day-label and hour-label room (px)

EXTRA_CSS = """
.heat{display:flex;flex-wrap:wrap;gap:1.2em 2em;align-items:flex-start}.heat h3{margin:.6em 0 .2em;font-size:15px}
svg rect.none{fill:#f3f4f6}
"""


def _colour(counts: Counts) -> str:
    """Green (all reached) to red (none reached) through yellow; grey-blue when nothing is settled yet."""
    share = counts.share_not_reached
    if share is None:
        return "#c9d7e3"
    hue = 120 * (1 - share)  # 120 green, 60 yellow, 0 red
    return f"hsl({hue:.0f},65%,{62 - 14 * share:.0f}%)"


def _tip(name: str, hour: int, c: Counts) -> str:
    share = c.share_not_reached
    head = f"{name}, {hour_label(hour)}:00: {c.decisions} decision{'s' if c.decisions != 1 else ''}"
    parts = [f"{getattr(c, o)} {o.replace('_', ' ')}" for o in OUTCOMES if getattr(c, o)]
    return head + " (" + ", ".join(parts) + ")" + ("" if share is None else f"; {100 * share:.0f}% not reached")


def heat_map(name: str, hours: dict[int, Counts]) -> str:
    """7 rows (Monday first) of 24 hours; a cell's colour is the share of settled decisions not reached, its
    tooltip (<title>) the counts. Hours with no decision are left pale."""
    width, height = LEFT + 24 * (CELL + GAP), TOP + 7 * (CELL + GAP)
    body = []
    for hour in range(0, 24, 3):
        x = LEFT + hour * (CELL + GAP) + CELL / 2
        body.append(f"<text x='{x:.0f}' y='12' text-anchor='middle' class='muted' font-size='11'>{hour:02d}</text>")
    for day in range(7):
        y = TOP + day * (CELL + GAP)
        body.append(f"<text x='{LEFT - 6}' y='{y + CELL - 5}' text-anchor='end' font-size='11'>{DAYS[day]}</text>")
        for hour in range(24):
            x = LEFT + hour * (CELL + GAP)
            counts = hours.get(day * 24 + hour)
            if counts is None:
                body.append(f"<rect class='none' x='{x}' y='{y}' width='{CELL}' height='{CELL}' rx='2'/>")
                continue
            body.append(f"<rect x='{x}' y='{y}' width='{CELL}' height='{CELL}' rx='2' "
                        f"fill='{_colour(counts)}'><title>{E(_tip(name, day * 24 + hour, counts))}</title></rect>")
    label = f"{name}: share not reached by hour of the week"
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} "
            f"{height}' role='img' aria-label='{E(label)}'><title>{E(label)}</title>{''.join(body)}</svg>")


def _merged(summary: Summary) -> dict[int, Counts]:
    out: dict[int, Counts] = {}
    for hours in summary.by_hour.values():
        for hour, c in hours.items():
            into = out.setdefault(hour, Counts())
            for field in ("decisions", *OUTCOMES):
                setattr(into, field, getattr(into, field) + getattr(c, field))
    return out


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def outcomes_page(summary: Summary, meta: dict[str, Any]) -> str:
    head = ["destination", "decisions", *(o.replace("_", " ") for o in OUTCOMES), "not reached (of settled)"]
    rows = []
    for name, c in [*summary.destinations.items(), ("all destinations", summary.total)]:
        nr = c.share_not_reached
        cells = [f"<td class='l'>{E(name)}</td>", f"<td>{c.decisions}</td>",
                 *(f"<td title='{getattr(c, o)}'>{_share(getattr(c, o), c.decisions)}</td>" for o in OUTCOMES),
                 f"<td style='background:{_colour(c)}'>{'-' if nr is None else f'{100 * nr:.0f}% of {c.settled}'}"
                 "</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = ("<div class='scroll'><table><thead><tr>" + "".join(
        f"<th{' class=l' if i == 0 else ''}>{E(h)}</th>" for i, h in enumerate(head)) + "</tr></thead><tbody>"
        + "".join(rows) + "</tbody></table></div>")
    swatches = "".join(f"<span class='sw' style='background:{_colour(_example(v))}'>{100 * v:.0f}%</span>"
                       for v in (0.0, 0.25, 0.5, 0.75, 1.0))
    maps = [f"<div><h3>all destinations</h3>{heat_map('all destinations', _merged(summary))}</div>"] if \
        summary.by_hour else []
    maps += [f"<div><h3>{E(name)}</h3>{heat_map(name, hours)}</div>" for name, hours in summary.by_hour.items()]
    since = meta.get("since") or "the first decision kept"
    parts = [
        "<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>Switchboard outcomes</title>", f"<style>{CSS}{EXTRA_CSS}</style></head><body>",
        "<h1>Switchboard outcomes</h1>",
        f"<p class='meta'>Decisions since {E(str(since))}, from {E(str(meta.get('database', '')))}.<br>"
        f"Hours of the week in {E(str(meta.get('time_zone', 'UTC')))}.</p>",
        "<h2 id='destinations'>Per destination, worst first</h2>",
        "<p class='note'>Shares are of all decisions to the destination. Worst first: the highest share of settled "
        "decisions (reached, unreachable, hung up, rerouted) that did not end where they were sent. pending: "
        "nothing heard yet; unknown: the call ended without a word on this transfer.</p>",
        table if summary.destinations else "<p>No decisions kept in this period.</p>",
        "<h2 id='hours'>By hour of the week</h2>",
        "<p class='note'>Each cell is an hour (rows: days, Monday first; columns: hours). Its colour is the share of "
        "settled decisions not reached; hover for the counts. Pale cells had no decision; blue-grey ones had only "
        "pending or unknown outcomes.</p>",
        f"<div class='legend'><div><b>not reached</b>{swatches}</div></div>",
        f"<div class='heat'>{''.join(maps)}</div>" if maps else "<p>No decisions kept in this period.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _example(share: float) -> Counts:
    """Counts with this share not reached, for the legend."""
    return Counts(decisions=100, reached=round(100 * (1 - share)), unreachable=round(100 * share))
