"""The Markdown report (report.md): every section in full, as GitHub tables; user data escaped so it shows as
typed, ids as inline code."""

from __future__ import annotations

import re
from collections.abc import Sequence

from app.evaluation.report import sections as s
from app.evaluation.results import RunResult

# Bounded: one character or one fixed look-around per match.
_MD_SPECIAL = re.compile(r"[\\`*\[\]|]|<(?=[A-Za-z/!?])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _md(text: str) -> str:
    """Plain text safe in a Markdown table cell or list item: one line; emphasis, code, links, table pipes and
    HTML tags escaped (so "<b>" shows as typed)."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), " ".join(str(text).split()))


def _code(text: str) -> str:
    """An id as inline code, whatever backticks or pipes it holds."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    if not text:
        return s.DASH
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence, pad = "`" * (longest + 1), " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_table(rows: list[list[str]], code: Sequence[int] = ()) -> str:
    """A GitHub table; columns in `code` are ids, shown as inline code."""
    def cell(i: int, text: str) -> str:
        return _code(text) if i in code and text not in (s.DASH, "") else _md(text)
    lines = ["| " + " | ".join(_md(c) or " " for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(i, c) for i, c in enumerate(r)) + " |" for r in rows[1:]]
    return "\n".join(lines)


def markdown(run: RunResult) -> str:
    combos = run.combinations
    out = ["# Switchboard evaluation", "", " ".join(_md(t) for t in s.intro(run)), "", "## Summary", "",
           "Accuracy with its 95% (Wilson) interval; `-` where a metric has no support. " + _md(s.SCORED_NOTE), "",
           markdown_table(s.summary_rows(combos))]
    comparisons = s.comparison_rows(run)
    if comparisons:
        out += ["", "## Are the differences real?", "",
                "Paired by call id: calls each combination fixed and broke against the other (what was answered), "
                "with the exact McNemar p-value.", ""]
        for row in comparisons[1:]:
            out.append(f"- **{_md(row[0])}**: " + "; ".join(
                _md(f"{head}: {cell}") for head, cell in zip(comparisons[0][1:], row[1:], strict=True)))
    tags = s.tag_rows(combos)
    if tags:
        out += ["", "## Accuracy by tag", "", markdown_table(tags)]
    scored = [c for c in combos if c.metrics.scores or c.fit]
    if scored:
        out += ["", "## Scores and thresholds"]
        for c in scored:
            current = s.current_line(c)
            out += ["", f"### {_md(c.name)}", "", _md(s.scores_line(c)) + "."
                    + (f" Current setting: {_code(current)}." if current else "")]
            fit = s.fit_lines(c)
            if fit:
                line, why, warning = fit
                out += ["", f"- Use: {_code(line)}" if line != s.NO_RECOMMENDATION else "- No recommendation.",
                        *([f"- Why: {_md(why)}"] if why else []),
                        *([f"- **Warning:** {_md(warning)}"] if warning else [])]
            rows = s.sweep_rows(c)
            if rows:
                out += ["", "Threshold sweep (answered = share of scored calls the router answers; an unanswered "
                        "call counts as none):", "", markdown_table(rows)]
            bins = s.calibration_rows(c.metrics.scores.calibration) if c.metrics.scores else []
            if bins:
                out += ["", "Calibration (is a score of 0.8 right 80% of the time?):", "", markdown_table(bins)]
    for c in combos:
        m = c.metrics
        out += ["", f"## {_md(c.name)}", "",
                f"Router {_md(c.router)}" + (f", model {_md(c.model)}" if c.model else "")
                + (f", prompt {_md(c.prompt)} (hash {_code(str(c.prompt_hash))})" if c.prompt else "")
                + f"; answered accuracy {s.accuracy(m)}, router's pick {s.chosen_accuracy(m)}, macro-F1 "
                f"{s.f3(m.macro_f1)}.", "", "### Per destination", "",
                markdown_table(s.per_destination_rows(m), code=(0,)), "", "### Confusion matrix", "",
                "Rows: expected; columns: answered.", "", markdown_table(s.confusion_rows(m), code=(0,)), "",
                "### Wrong calls", ""]
        rows = s.wrong_rows(c)
        out += [markdown_table(rows, code=(0, 2, 3, 4)) if len(rows) > 1 else "None."]
    dis = s.disagreements(combos)
    if dis:
        out += ["", "## Where combinations disagree", "", f"{len(dis)} calls got different answers.", "",
                markdown_table(s.disagreement_rows(combos, dis), code=(0, 2, *range(3, 3 + len(combos))))]
    return "\n".join(out) + "\n"
