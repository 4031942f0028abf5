"""The report's charts, as inline SVG (no scripts, no fetches; every label escaped): accuracy with its 95%
interval per combination, and for a router that gives scores its reliability diagram and coverage curve."""

from __future__ import annotations

import html
import math

from app.evaluation.report import sections as s
from app.evaluation.results import CombinationResult, Scores
from app.evaluation.statistics import Calibration

E = html.escape
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")  # Okabe-Ito, colour-blind safe


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} "
            f"{height}' role='img' aria-label='{E(label)}'><title>{E(label)}</title>{''.join(body)}</svg>")


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}'{extra}>{E(text)}</text>"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def accuracy(combos: list[CombinationResult], best: int) -> str:
    """A dot (accuracy) and a whisker (its 95% interval) per combination, on a 0–100% axis."""
    width, left, right, top, row_h = 960, 270, 180, 12, 36
    plot = width - left - right
    height = top + row_h * len(combos) + 52
    axis_y = top + row_h * len(combos)

    def x(v: float) -> float:
        return left + plot * min(max(v, 0.0), 1.0)

    body = []
    for t in range(0, 101, 10):
        body.append(f"<line class='grid' x1='{x(t / 100):.1f}' y1='{top}' x2='{x(t / 100):.1f}' y2='{axis_y}'/>")
        body.append(_text(x(t / 100), axis_y + 16, f"{t}%", extra=" class='muted'"))
    body.append(f"<line class='axis' x1='{left}' y1='{axis_y}' x2='{left + plot}' y2='{axis_y}'/>")
    body.append(_text(left + plot / 2, axis_y + 38, "accuracy: dot = measured, whisker = 95% interval"))
    for i, c in enumerate(combos):
        m = c.metrics
        y = top + row_h * (i + 0.5)
        colour = PALETTE[i % len(PALETTE)]
        weight = " font-weight='bold'" if i == best else ""
        name = _clip(c.name, 36) + (" (best)" if i == best else "")
        body.append(f"<g><title>{E(c.name)}: {E(s.accuracy(m))}</title>")
        body.append(_text(left - 12, y + 4, name, "end", weight))
        if m.calls:
            low, high = m.accuracy_ci or (m.accuracy, m.accuracy)
            body.append(f"<line x1='{x(low):.1f}' y1='{y:.1f}' x2='{x(high):.1f}' y2='{y:.1f}' stroke='{colour}' "
                        f"stroke-width='2.5'/>")
            for end in (low, high):
                body.append(f"<line x1='{x(end):.1f}' y1='{y - 7:.1f}' x2='{x(end):.1f}' y2='{y + 7:.1f}' "
                            f"stroke='{colour}' stroke-width='2.5'/>")
            body.append(f"<circle cx='{x(m.accuracy):.1f}' cy='{y:.1f}' r='6' fill='{colour}' stroke='#fff'/>")
        body.append(_text(left + plot + 14, y + 4, s.accuracy(m), "start", weight))
        body.append("</g>")
    return _svg(width, height, "Accuracy with its 95% interval per combination", body)


def _frame(body: list[str], left: int, top: int, width: int, height: int) -> None:
    body.append(f"<rect class='axis' x='{left}' y='{top}' width='{width}' height='{height}' fill='none'/>")


def reliability(name: str, calibration: Calibration) -> str:
    """Mean score against the share right, per score bin; the diagonal is perfect calibration."""
    size, left, top = 330, 64, 30
    width, height = left + size + 26, top + size + 92
    bins = calibration.bins

    def x(v: float) -> float:
        return left + size * v

    def y(v: float) -> float:
        return top + size * (1 - v)

    body = [_text(left + size / 2, 17, f"Reliability (ECE {s.f3(calibration.ece)})", extra=" font-weight='bold'")]
    for t in range(0, 11, 2):
        v = t / 10
        body.append(f"<line class='grid' x1='{x(v):.1f}' y1='{top}' x2='{x(v):.1f}' y2='{top + size}'/>")
        body.append(f"<line class='grid' x1='{left}' y1='{y(v):.1f}' x2='{left + size}' y2='{y(v):.1f}'/>")
        body.append(_text(x(v), top + size + 16, f"{v:.1f}", extra=" class='muted'"))
        body.append(_text(left - 6, y(v) + 4, f"{100 * v:.0f}%", "end", " class='muted'"))
    _frame(body, left, top, size, size)
    body.append(f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(1)}' y2='{y(1)}' stroke='#6e7781' stroke-dasharray='5 4'/>")
    points = [(b, b.mean_score, b.accuracy) for b in bins if b.count and b.mean_score is not None
              and b.accuracy is not None]
    if points:
        path = " ".join(f"{x(score):.1f},{y(right):.1f}" for _, score, right in points)
        body.append(f"<polyline points='{path}' fill='none' stroke='#0072b2' stroke-width='1.5'/>")
    peak = max((b.count for b, _, _ in points), default=1)
    for b, score, right in points:
        r = 3 + 6 * math.sqrt(b.count / peak)
        tip = (f"scores {b.low:.1f}–{b.high:.1f}: {s.calls(b.count)}, mean score {score:.2f}, "
               f"{100 * right:.0f}% right")
        body.append(f"<circle cx='{x(score):.1f}' cy='{y(right):.1f}' r='{r:.1f}' "
                    f"fill='#0072b2' fill-opacity='0.8' stroke='#fff'><title>{E(tip)}</title></circle>")
    count_y = top + size + 36
    body.append(_text(left - 6, count_y, "calls", "end", " class='muted'"))
    for b in bins:
        style = " class='muted'" if not b.count else " font-weight='bold'"
        body.append(_text(x((b.low + b.high) / 2), count_y, str(b.count), extra=style))
    body.append(_text(left + size / 2, count_y + 22, "router's score (mean of each 0.1 bin)"))
    body.append(_text(16, top + size / 2, "share right", extra=f" transform='rotate(-90 16 {top + size / 2})'"))
    body.append(_text(left + size / 2, count_y + 42, "dashed: perfectly calibrated; dot area: calls in the bin",
                      extra=" class='muted'"))
    return _svg(width, height, f"Reliability diagram for {name}", body)


def coverage(name: str, scores: Scores, fitted: float | None) -> str:
    """Share of calls answered against accuracy on the answered calls, one point per threshold."""
    size_x, size_y, left, top = 380, 330, 64, 30
    width, height = left + size_x + 26, top + size_y + 92
    rows = [(r, r.accuracy_answered) for r in scores.sweep.rows if r.accuracy_answered is not None]
    current = scores.current
    lowest = min((right for _, right in rows), default=0.0)
    floor = max(0.0, math.floor((lowest - 0.05) * 10) / 10)

    def x(v: float) -> float:
        return left + size_x * v

    def y(v: float) -> float:
        return top + size_y * (1 - (v - floor) / (1 - floor or 1))

    body = [_text(left + size_x / 2, 17, "Coverage and accuracy by threshold", extra=" font-weight='bold'")]
    for t in range(0, 11, 2):
        v = t / 10
        body.append(f"<line class='grid' x1='{x(v):.1f}' y1='{top}' x2='{x(v):.1f}' y2='{top + size_y}'/>")
        body.append(_text(x(v), top + size_y + 16, f"{100 * v:.0f}%", extra=" class='muted'"))
    steps = max(1, round((1 - floor) / 0.1))
    every = 1 if steps <= 6 else 2
    for k in range(0, steps + 1, every):
        v = floor + k * (1 - floor) / steps
        body.append(f"<line class='grid' x1='{left}' y1='{y(v):.1f}' x2='{left + size_x}' y2='{y(v):.1f}'/>")
        body.append(_text(left - 6, y(v) + 4, f"{100 * v:.0f}%", "end", " class='muted'"))
    _frame(body, left, top, size_x, size_y)
    if rows:
        path = " ".join(f"{x(r.answered):.1f},{y(right):.1f}" for r, right in rows)
        body.append(f"<polyline points='{path}' fill='none' stroke='#0072b2' stroke-width='1.5'/>")
    for r, right in rows:
        tip = (f"threshold {r.threshold:g}: answers {s.calls(r.answered_count)} ({s.pct(r.answered)}), "
               f"{s.acc_of(r.answered_correct, r.answered_count)} right")
        body.append(f"<circle cx='{x(r.answered):.1f}' cy='{y(right):.1f}' r='3.5' "
                    f"fill='#0072b2'><title>{E(tip)}</title></circle>")
    same = s.near(current, fitted)
    marks = [(t, label, dy) for t, label, dy in (
        (current, f"current {s.threshold(current)}" + (" = recommended" if same else ""), 24),
        (None if same else fitted, f"recommended {s.threshold(fitted)}", 42)) if t is not None]
    for mark, label, dy in marks:
        row = next(((r, right) for r, right in rows if s.near(r.threshold, mark)), None)
        if row is None:
            continue
        cx, cy = x(row[0].answered), y(row[1])
        if label.startswith("recommended"):
            body.append(f"<path d='M{cx:.1f},{cy - 9:.1f} l9,9 l-9,9 l-9,-9 z' fill='none' stroke='#d55e00' "
                        "stroke-width='2'/>")
        else:
            body.append(f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='8' fill='none' stroke='#1f2328' stroke-width='2'/>")
        wide = 7.2 * len(label)
        anchor, tx = ("end", cx - 8) if cx - 8 - wide >= left + 4 else ("start", cx + 8)
        ty = cy + dy if cy + dy <= top + size_y - 6 else cy - dy + 8
        body.append(_text(tx, ty, label, anchor, " font-weight='bold'"))
    body.append(_text(left + size_x / 2, top + size_y + 36, "share of calls answered (higher thresholds answer fewer)"))
    body.append(_text(16, top + size_y / 2, "right among answered calls",
                      extra=f" transform='rotate(-90 16 {top + size_y / 2})'"))
    legend_y = top + size_y + 60
    body.append(f"<circle cx='{left + 6}' cy='{legend_y - 4}' r='3.5' fill='#0072b2'/>")
    body.append(_text(left + 16, legend_y, "a threshold (0, 0.05, …, 1; hover for values)", "start", " class='muted'"))
    body.append(f"<circle cx='{left + 6}' cy='{legend_y + 16}' r='7' fill='none' stroke='#1f2328' stroke-width='2'/>")
    body.append(_text(left + 16, legend_y + 20, "current setting", "start", " class='muted'"))
    if fitted is not None:
        body.append(f"<path d='M{left + 136},{legend_y + 8} l8,8 l-8,8 l-8,-8 z' fill='none' stroke='#d55e00' "
                    "stroke-width='2'/>")
        body.append(_text(left + 148, legend_y + 20, "recommended (--fit-threshold)", "start", " class='muted'"))
    return _svg(width, height + 14, f"Coverage and accuracy for {name}", body)
