"""The HTML report (report.html): one self-contained page with no scripts and no fetches; styles are inline,
charts are inline SVG (charts.py), and every piece of user data (call ids, excerpts, names, tags) is escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence

from app.evaluation.report import charts
from app.evaluation.report import sections as s
from app.evaluation.results import CombinationResult, Metrics, RunResult

E = html.escape

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--head:#f6f8fa;--best:#fff8c5}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);
 margin:0 auto;padding:1.5em 2em 4em;max-width:1400px;background:#fff}
h1{margin:0 0 .2em}h2{margin:2em 0 .5em;padding-bottom:.2em;border-bottom:1px solid var(--line)}
h3{margin:1.5em 0 .4em}p.meta,.note{color:var(--muted)}nav a{margin-right:1em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0 1em;font-variant-numeric:tabular-nums;font-size:13.5px}
td,th{border:1px solid var(--line);padding:3px 6px;text-align:right;vertical-align:top}
th{background:var(--head);font-weight:600}
td.l,th.l,th.said{text-align:left}td.said{text-align:left;max-width:34em;color:#32383f}
td:not(.l):not(.said){white-space:nowrap}
tr.best td{background:var(--best);font-weight:600}
.worse{color:#b42318}.better{color:#1a7f37}.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318}
code{font:12.5px ui-monospace,"DejaVu Sans Mono",monospace;background:#eff2f5;padding:1px 4px;border-radius:3px}
.fit{border-left:4px solid #0072b2;background:#f0f7fc;padding:.5em 1em;margin:.6em 0}
.fit code{font-size:14px;font-weight:600;background:#fff}
.warn{border-left-color:#bf8700;background:#fff8e5}
.charts{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
svg{font:13px system-ui,"DejaVu Sans",sans-serif;max-width:100%;height:auto}
svg .axis{stroke:#59636e}svg .grid{stroke:#e4e8ec}svg text{fill:#1f2328}svg text.muted{fill:#59636e}
table.confusion td{min-width:2.2em;text-align:center}table.confusion td.total{background:var(--head)}
table.confusion th.col{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;text-align:left;
 vertical-align:bottom;padding:6px 3px}
table.confusion td.dark{color:#fff}
.legend{color:var(--muted);font-size:13px;margin:.3em 0 1em;max-width:44em}.legend div{margin:.35em 0}
.legend b{display:inline-block;width:13em;color:var(--fg);font-weight:600}
.legend span.sw{display:inline-block;width:3.6em;padding:2px 0;margin-right:3px;border:1px solid var(--line);
 text-align:center;font-size:12px;color:#1f2328}
"""


def html_page(run: RunResult) -> str:
    combos = run.combinations
    best = run.best_index()
    scored = [c for c in combos if c.metrics.scores or c.fit]
    dis = s.disagreements(combos)
    comparisons = s.comparison_rows(run)
    tags = s.tag_rows(combos)
    nav = [("summary", "Summary"), *([("differences", "Differences")] if comparisons else []),
           *([("tags", "By tag")] if tags else []), *([("thresholds", "Scores and thresholds")] if scored else []),
           *((f"c{i}", c.name) for i, c in enumerate(combos)), *([("disagree", "Disagreements")] if dis else [])]
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>Switchboard evaluation</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Switchboard evaluation</h1>", f"<p class='meta'>{'<br>'.join(E(t) for t in s.intro(run))}</p>",
             "<nav>" + "".join(f"<a href='#{E(a)}'>{E(t)}</a>" for a, t in nav) + "</nav>",
             "<h2 id='summary'>Summary</h2>",
             "<p class='note'>Accuracy with its 95% (Wilson) interval; “-” where a metric has no support. The best "
             f"combination (highest accuracy, then macro-F1) is highlighted. {E(s.SCORED_NOTE)}</p>",
             _html_table(s.summary_rows(combos), left=2, row_class={best: "best"}),
             "<h3>Accuracy with its 95% interval</h3>", charts.accuracy(combos, best)]
    if comparisons:
        parts += ["<h2 id='differences'>Are the differences real?</h2>",
                  "<p class='note'>Paired by call id: the calls each combination fixed and broke against the other "
                  "(what was answered), "
                  "and the exact McNemar p-value. With under 100 calls, most differences of a few points are "
                  "noise.</p>", _html_table(comparisons, left=len(comparisons[0]), verdicts=True)]
    if tags:
        parts += ["<h2 id='tags'>Accuracy by tag</h2>", _html_table(tags)]
    if scored:
        parts.append("<h2 id='thresholds'>Scores and thresholds</h2>")
        for c in scored:
            parts += _html_thresholds(c)
    for i, c in enumerate(combos):
        m = c.metrics
        what = f"Router <b>{E(c.router)}</b>" + (f", model <b>{E(c.model)}</b>" if c.model else "") \
            + (f", prompt <b>{E(c.prompt)}</b> (hash <code>{E(c.prompt_hash or s.DASH)}</code>)"
               if c.prompt else "")
        rows = s.wrong_rows(c)
        parts += [f"<h2 id='c{i}'>{E(c.name)}{' (best)' if i == best else ''}</h2>",
                  f"<p>{what}; answered accuracy {E(s.accuracy(m))}, router's pick {E(s.chosen_accuracy(m))}, "
                  f"macro-F1 {E(s.f3(m.macro_f1))}, "
                  f"{m.calls} calls.</p>", "<div class='charts'><div><h3>Per destination</h3>",
                  _html_table(s.per_destination_rows(m)), "</div><div><h3>Confusion matrix</h3>", _confusion_html(m),
                  "</div></div>",
                  f"<h3>Wrong calls ({len(rows) - 1})</h3>",
                  _html_table(rows, left=5, said=1) if len(rows) > 1 else "<p>None.</p>"]
    if dis:
        rows = s.disagreement_rows(combos, dis)
        right = {(n, 3 + j) for n, d in enumerate(dis) for j, c in enumerate(combos)
                 if d.chosen.get(c.name) == d.expected}
        wrong = {(n, 3 + j) for n in range(len(dis)) for j in range(len(combos))} - right
        parts += ["<h2 id='disagree'>Where combinations disagree</h2>",
                  f"<p class='note'>{len(dis)} calls got different answers; right answers are green and bold, "
                  "wrong ones red.</p>", _html_table(rows, left=len(rows[0]), said=1, ok=right, bad=wrong)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(rows: list[list[str]], left: int = 1, row_class: dict[int, str] | None = None, said: int = -1,
                verdicts: bool = False, ok: set[tuple[int, int]] | None = None, bad: set[tuple[int, int]] | None = None,
                text: Sequence[int] = ()) -> str:
    def cls(i: int, cell: str = "", n: int = -1) -> str:
        names = ["said" if i == said else "l" if i < left or i in text else ""]
        if verdicts and i > 0:
            names.append("worse" if ": worse" in cell else "better" if ": better" in cell else "")
        if ok and (n, i) in ok:
            names.append("ok")
        if bad and (n, i) in bad:
            names.append("bad")
        joined = " ".join(x for x in names if x)
        return f" class='{joined}'" if joined else ""
    head = "".join(f"<th{cls(i)}>{E(c)}</th>" for i, c in enumerate(rows[0]))
    body = "".join(f"<tr{' class=' + repr(E((row_class or {}).get(n, ''))) if (row_class or {}).get(n) else ''}>"
                   + "".join(f"<td{cls(i, c, n)}>{E(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for n, r in enumerate(rows[1:]))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _html_thresholds(c: CombinationResult) -> list[str]:
    scores = c.metrics.scores
    current = s.current_line(c)
    out = [f"<h3>{E(c.name)}</h3>", f"<p>{E(s.scores_line(c))}."
           + (f" Current setting: <code>{E(current)}</code>.</p>" if current else "</p>")]
    fit = s.fit_lines(c)
    if fit:
        line, why, warning = fit
        head = "No recommendation" if line == s.NO_RECOMMENDATION else f"Use <code>{E(line)}</code>"
        out.append(f"<div class='fit{' warn' if warning else ''}'>{head}" + (f" — {E(why)}" if why else "")
                   + (f"<br><b>Warning:</b> {E(warning)}" if warning else "") + "</div>")
    if scores:
        out.append("<div class='charts'>" + charts.reliability(c.name, scores.calibration)
                   + charts.coverage(c.name, scores, c.fit.threshold if c.fit else None) + "</div>")
    rows = s.sweep_rows(c)
    if rows:
        out += ["<p class='note'>Threshold sweep: a call is answered when the router's best id is not none and its "
                "score reaches the threshold; an unanswered call counts as none.</p>",
                _html_table(rows, left=0, text=(len(rows[0]) - 1,))]
    return out


def _rgba(share: float, diagonal: bool) -> str:
    colour = "26,127,55" if diagonal else "207,34,46"
    return f"rgba({colour},{0.08 + 0.92 * share:.2f})"


def _confusion_html(metrics: Metrics) -> str:
    confusion = metrics.confusion
    if not confusion:
        return "<p>No calls.</p>"
    cols = s.confusion_columns(confusion)
    out = ["<div class='scroll'><table class='confusion'><thead><tr><th class='l'>expected ↓ answered →</th>"
           + "".join(f"<th class='col'>{E(c)}</th>" for c in cols) + "<th class='col'>calls</th></tr></thead><tbody>"]
    for expected, row in confusion.items():
        total = sum(row.values())
        if not total:
            continue
        cells = []
        for c in cols:
            n = row.get(c, 0)
            if not n:
                cells.append("<td></td>")
                continue
            share = n / total
            tip = f"expected {expected}, answered {c}: {n} of {total} ({100 * share:.0f}%)"
            dark = " class='dark'" if share >= 0.55 else ""
            cells.append(f"<td{dark} style='background:{_rgba(share, c == expected)}' title='{E(tip)}'>{n}</td>")
        out.append(f"<tr><th class='l'>{E(expected)}</th>{''.join(cells)}<td class='total'>{total}</td></tr>")
    out.append("</tbody></table></div>")
    def swatches(diagonal: bool) -> str:
        return "".join(f"<span class='sw' style='background:{_rgba(v, diagonal)}{';color:#fff' if v >= 0.55 else ''}'>"
                       f"{100 * v:.0f}%</span>" for v in (0.1, 0.25, 0.5, 0.75, 1.0))
    out.append("<div class='legend'><div>Numbers are calls (rows: expected, columns: answered). The shade is the "
               "cell's share of its row (cell ÷ row total), so a rare destination reads like a common one; hover a "
               f"cell for its share.</div><div><b>right (diagonal)</b>{swatches(True)}</div>"
               f"<div><b>wrong (off-diagonal)</b>{swatches(False)}</div></div>")
    return "".join(out)
