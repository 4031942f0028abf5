"""Evaluation reports: the terminal summary, results JSON, Markdown, and a self-contained HTML page.

Every output says how sure the numbers are: accuracy always comes with its 95% (Wilson) interval, and each
combination is compared call by call with this run's best and with the baseline (fixed, broken, McNemar p).
A metric without support (no calls expected or predicted) is "-", never "0.0%".

The HTML page is one file with no scripts and no fetches: styles are inline, charts are inline SVG, and every
piece of user data (call ids, excerpts, names, tags) is escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.evaluation.statistics import wilson_interval

DASH = "-"
SWEEP_THRESHOLDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)  # the compact sweep, plus the current and fitted rows
TERMINAL_WRONG = 15  # wrong calls (and disagreements) listed per combination in the terminal
TERMINAL_EXCERPT = 52  # characters of the caller's last words in the terminal
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")  # Okabe-Ito, colour-blind safe


def best_index(combos: list[dict[str, Any]]) -> int:
    return max(range(len(combos)), key=lambda i: (combos[i]["metrics"]["accuracy"], combos[i]["metrics"]["macro_f1"]))


# --- formatting ----------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


def _acc(x: float | None, ci: Sequence[float] | None, digits: int = 1) -> str:
    """ "90.6% (83.1–95.0)": a proportion with its 95% interval ("91% (83–95)" with digits=0, for narrow
    terminals)."""
    if x is None:
        return DASH
    if not ci:
        return _pct(x)
    return f"{100 * x:.{digits}f}% ({100 * ci[0]:.{digits}f}–{100 * ci[1]:.{digits}f})"


def _acc_of(right: int, n: int, digits: int = 1) -> str:
    return DASH if n <= 0 else _acc(right / n, wilson_interval(right, n), digits)


def _accuracy(metrics: dict[str, Any]) -> str:
    return _acc(metrics["accuracy"], metrics.get("accuracy_ci")) if metrics.get("calls") else DASH


def _f(x: float | None) -> str:
    return DASH if x is None else f"{x:.3f}"


def _ms(x: float | None) -> str:
    return DASH if x is None else f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _cost(x: float | None) -> str:
    return DASH if x is None else f"${x:.4f}"


def _score(x: float | None) -> str:
    return DASH if x is None or x != x else f"{x:.2f}"


def _threshold(x: float | None) -> str:
    return DASH if x is None else f"{x:g}"


def _short(text: str, limit: int) -> str:
    """One line, at most `limit` characters; the end is kept (the caller's last words decide)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    tail = text[-(limit - 1):]
    cut = tail.find(" ")
    return "…" + (tail[cut + 1:] if 0 <= cut < limit // 3 else tail)


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def _chosen(call: dict[str, Any]) -> str:
    if call["predicted"] == "error" and call.get("failure"):
        return f"error ({call['failure']})"
    return str(call["predicted"])


# --- content shared by the three outputs ---------------------------------------------------------------------


SUMMARY_HEADER = ["best", "combination", "accuracy (95% CI)", "macro-F1", "none P", "none R", "errors", "timeouts",
                  "latency ms p50/p95/max", "tokens in/out/cached", "cost", "consistency"]


def summary_rows(combos: list[dict[str, Any]]) -> list[list[str]]:
    best = best_index(combos)
    rows = [SUMMARY_HEADER]
    for i, c in enumerate(combos):
        m = c["metrics"]
        lat, tok = m["latency_ms"], m["tokens"]
        tokens = DASH if c["router"] != "llm" else f"{tok['prompt']}/{tok['completion']}/{tok.get('cached', 0)}"
        rows.append(["best" if i == best else "", c["name"], _accuracy(m), _f(m["macro_f1"]) if m["calls"] else DASH,
                     _pct(m["none_precision"]), _pct(m["none_recall"]), str(m["errors"]), str(m["timeouts"]),
                     "/".join(_ms(lat[k]) for k in ("p50", "p95", "max")) if m["calls"] else DASH, tokens,
                     _cost(m["cost_usd"]), _pct(m["consistency"])])
    return rows


def comparison_text(cmp: dict[str, Any] | None, calls: int | None = None, what: str = "") -> str:
    """ "fixed 1, broke 9 vs offline: worse, p = 0.021" (paired by call id, exact McNemar)."""
    if not cmp:
        return DASH
    against, verdict = f"{what}{cmp.get('against', '?')}", cmp.get("verdict", "")
    if cmp.get("fixed") is None or cmp.get("broken") is None:
        return f"vs {against}: {verdict}"
    paired = cmp.get("paired_calls")
    on = f", {paired} calls paired" if paired is not None and paired != calls else ""
    return f"fixed {cmp['fixed']}, broke {cmp['broken']} vs {against}{on}: {verdict}"


def comparison_rows(doc: dict[str, Any]) -> list[list[str]]:
    """combination | vs this run's best | vs baseline; empty when there is nothing to compare."""
    combos = doc["combinations"]
    baseline = any(c.get("vs_baseline") for c in combos)
    if len(combos) < 2 and not baseline:
        return []
    best = best_index(combos)
    rows = [["combination", "vs this run's best", *(["vs baseline"] if baseline else [])]]
    for i, c in enumerate(combos):
        calls = c["metrics"]["calls"]
        vs_best = "(the best)" if i == best and not c.get("vs_best") else comparison_text(c.get("vs_best"), calls)
        rows.append([c["name"], vs_best, *([comparison_text(c.get("vs_baseline"), calls, "baseline ")]
                                           if baseline else [])])
    return rows


def tag_rows(combos: list[dict[str, Any]], digits: int = 1) -> list[list[str]]:
    tags: dict[str, int] = {}
    for c in combos:
        for tag, v in c["metrics"].get("by_tag", {}).items():
            tags.setdefault(tag, v["calls"])
    if not tags:
        return []
    rows = [["tag", "calls", *(c["name"] for c in combos)]]
    for tag in sorted(tags):
        cells = []
        for c in combos:
            v = c["metrics"].get("by_tag", {}).get(tag)
            cells.append(_acc(v["accuracy"], v.get("accuracy_ci"), digits) if v and v["calls"] else DASH)
        rows.append([tag, str(tags[tag]), *cells])
    return rows


def per_destination_rows(metrics: dict[str, Any]) -> list[list[str]]:
    rows = [["destination", "precision", "recall", "F1", "support", "predicted"]]
    for dest, v in metrics["per_destination"].items():
        rows.append([dest, _pct(v["precision"]), _pct(v["recall"]), _f(v["f1"]), str(v["support"]),
                     str(v.get("predicted", DASH))])
    return rows


def confusion_rows(metrics: dict[str, Any]) -> list[list[str]]:
    confusion = metrics["confusion"]
    if not confusion:
        return []
    cols = _confusion_columns(confusion)
    rows = [["expected \\ chosen", *cols, "calls"]]
    for expected, row in confusion.items():
        if sum(row.values()):
            rows.append([expected, *[str(row.get(c, 0)) for c in cols], str(sum(row.values()))])
    return rows


def _confusion_columns(confusion: dict[str, dict[str, int]]) -> list[str]:
    cols: list[str] = []
    for row in confusion.values():
        cols += [c for c in row if c not in cols]
    return cols


def _near(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


def sweep_rows(combo: dict[str, Any], digits: int = 1) -> list[list[str]]:
    """The compact threshold sweep: a handful of thresholds plus the current setting and the fitted one."""
    scores = combo["metrics"].get("scores") or {}
    sweep = scores.get("sweep") or {}
    current, fitted = scores.get("current"), (combo.get("fit") or {}).get("threshold")
    wanted = [*SWEEP_THRESHOLDS, *(t for t in (current, fitted) if t is not None)]
    scored = sweep.get("scored", 0)
    rows = [["threshold", "answered", "right when answered", "accuracy", "none P", "none R", ""]]
    for r in sweep.get("rows", []):
        if not any(_near(r["threshold"], t) for t in wanted):
            continue
        notes = [n for n, t in (("current", current), ("recommended", fitted)) if _near(r["threshold"], t)]
        right = round(r["accuracy"] * scored)
        rows.append([_threshold(r["threshold"]), f"{_pct(r['answered'])} ({r['answered_count']})",
                     _acc_of(r["answered_correct"], r["answered_count"], digits), _acc_of(right, scored, digits),
                     _pct(r["none_precision"]), _pct(r["none_recall"]), ", ".join(notes)])
    return rows if len(rows) > 1 else []


def _sweep_row(scores: dict[str, Any], threshold: float | None) -> dict[str, Any] | None:
    return next((r for r in (scores.get("sweep") or {}).get("rows", []) if _near(r["threshold"], threshold)), None)


def scores_line(combo: dict[str, Any]) -> str:
    """Calibration and the router's own "none" answers, in one line."""
    scores = combo["metrics"].get("scores")
    if not scores:
        return "no scores from this router: no calibration or threshold sweep"
    ece = (scores.get("calibration") or {}).get("ece")
    parts = [f"expected calibration error (ECE) {_f(ece)} over {scores.get('scored', 0)} scored calls"]
    skipped = (scores.get("sweep") or {}).get("skipped")
    if skipped:
        parts.append(f"{skipped} calls without a score left out")
    nones = scores.get("none_answers") or {}
    if nones.get("count"):
        parts.append(f"the router answered none {nones['count']} times, {nones.get('correct', 0)} rightly "
                     f"(mean score {_score(nones.get('mean_score'))})")
    return "; ".join(parts)


def current_line(combo: dict[str, Any]) -> str | None:
    scores = combo["metrics"].get("scores") or {}
    return f"{scores['setting']}={_threshold(scores.get('current'))}" if scores.get("setting") else None


def fit_lines(combo: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(the setting line to use, or "no recommendation"; why; any warning), or None without --fit-threshold."""
    fit = combo.get("fit")
    if not fit:
        return None
    rec = fit.get("recommendation")
    if not rec:
        return "no recommendation", str(fit.get("reason") or ""), fit.get("warning")
    why = [str(fit.get("reason") or "")]
    scores = combo["metrics"].get("scores") or {}
    current, fitted = scores.get("current"), fit.get("threshold")
    row, now = _sweep_row(scores, fitted), _sweep_row(scores, current)
    if row is not None:
        scored = (scores.get("sweep") or {}).get("scored", 0)
        why.append(f"accuracy {_acc_of(round(row['accuracy'] * scored), scored)}, answering {_pct(row['answered'])}")
    elif fit.get("accuracy") is not None:
        why.append(f"accuracy {_pct(fit['accuracy'])}, answering {_pct(fit.get('answered'))}")
    if current is not None and fitted is not None:
        if _near(current, fitted):
            why.append("already the current setting")
        elif row is not None and now is not None and abs(row["accuracy"] - now["accuracy"]) < 1e-9:
            why.append(f"no more accurate than the current {_threshold(current)}")
        else:
            why.append(f"the current setting is {_threshold(current)}")
    return rec, "; ".join(w for w in why if w), fit.get("warning")


def wrong_calls(combo: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in combo["calls"] if r["predicted"] != r["expected"]]


def wrong_rows(combo: dict[str, Any], excerpt: int | None = None) -> list[list[str]]:
    rows = [["call", "caller said", "expected", "chosen", "score"]]
    for r in wrong_calls(combo):
        said = r.get("excerpt") or ""
        rows.append([r["id"], _short(said, excerpt) if excerpt else " ".join(said.split()), r["expected"],
                     _chosen(r), _score(r.get("score"))])
    return rows


def disagreements(combos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(combos) < 2:
        return []
    by_id: dict[str, dict[str, str]] = {}
    expected: dict[str, str] = {}
    said: dict[str, str] = {}
    for c in combos:
        for r in c["calls"]:
            by_id.setdefault(r["id"], {})[c["name"]] = r["predicted"]
            expected[r["id"]] = r["expected"]
            said.setdefault(r["id"], r.get("excerpt") or "")
    return [{"id": i, "expected": expected[i], "chosen": v, "excerpt": said[i]}
            for i, v in sorted(by_id.items()) if len(set(v.values())) > 1]


def _intro(doc: dict[str, Any]) -> tuple[str, str]:
    combos = doc["combinations"]
    calls = combos[0]["metrics"]["calls"] if combos else 0
    return (f"{calls} labelled calls from {', '.join(doc.get('datasets', []))} (created {doc.get('created', '?')}).",
            f"{len(combos)} combination{'s' if len(combos) != 1 else ''}; best: {combos[best_index(combos)]['name']}.")


# --- terminal ------------------------------------------------------------------------------------------------


def _rich_table(rows: list[list[str]], title: str = "", left: int = 1, styles: dict[int, str] | None = None,
                cell_styles: dict[tuple[int, int], str] | None = None, keep: Sequence[int] = ()) -> Table:
    """A compact table; the first `left` columns are left-aligned, the others right-aligned. Cells in the `keep`
    columns are not wrapped (their headers may be). Cells are Text, so user data is never read as rich markup."""
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


def print_summary(doc: dict[str, Any], console: Console, max_wrong: int = TERMINAL_WRONG) -> None:
    """The summary, the verdicts and accuracy by tag first; then details, each capped to stay short."""
    combos = doc["combinations"]
    best = best_index(combos)
    out = console.print
    for line in _intro(doc):
        out(Text(line))
    summary = summary_rows(combos)
    quality = _rich_table(_columns(summary, (0, 1, 2, 3, 4, 5)), "Summary", left=2, styles={best: "bold"},
                          keep=(0, 2, 3, 4, 5))
    quality.columns[0].justify = "center"
    out()
    out(quality)
    out()
    costs = [["combination", "errors /\ntimeouts", "consistency", "latency ms\np50/p95/max", "tokens\nin/out/cached",
              "cost"]]
    costs += [[r[1], f"{r[6]} / {r[7]}", r[11], r[8], r[9], r[10]] for r in summary[1:]]
    out(_rich_table(costs, "Errors, speed and cost", keep=range(1, 6)))
    comparisons = comparison_rows(doc)
    if comparisons:
        out()
        out(Text("Are the differences real? (paired by call, exact McNemar test)", style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for row in comparisons[1:]:
            lines = Text("\n").join(Text(cell, style=_verdict_style(cell)) for cell in row[1:] if cell != DASH)
            grid.add_row(Text(row[0]), lines)
        out(grid)
    tags = tag_rows(combos)
    if tags and _too_wide(tags, console.width, 1):
        tags = tag_rows(combos, digits=0)
    if tags:
        out()
        out(_rich_table(tags, "Accuracy by tag (95% interval)", keep=range(1, len(tags[0]))))
    out()
    out(_rich_table(per_destination_rows(combos[best]["metrics"]), f"Per destination ({combos[best]['name']})"))
    _print_thresholds(combos, console)
    for c in combos:
        _print_wrong(c, console, max_wrong)
    _print_disagreements(combos, console, max_wrong)


def _print_wrong(combo: dict[str, Any], console: Console, max_wrong: int) -> None:
    rows = wrong_rows(combo)
    if len(rows) < 2:
        return
    shown = rows[: max_wrong + 1]
    title = f"Wrong calls: {combo['name']} ({len(rows) - 1} of {combo['metrics']['calls']})"
    others = sum(max(len(r[i]) for r in shown) for i in (0, 2, 3, 4))
    room = console.width - others - 2 * 4
    console.print()
    if room >= 28:  # a table, one line a call
        for r in shown[1:]:
            r[1] = _short(r[1], room)
        console.print(_rich_table(shown, title, left=4, keep=(0, 2, 3, 4)))
    else:  # narrow: a line (or two) a call
        console.print(Text(title, style="bold"))
        _indented(console, [f"{r[0]}: expected {r[2]}, chose {r[3]}" + (f", score {r[4]}" if r[4] != DASH else "")
                            + f": {_short(r[1], 60)}" for r in shown[1:]])
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


def _print_disagreements(combos: list[dict[str, Any]], console: Console, max_wrong: int) -> None:
    dis = disagreements(combos)
    if not dis:
        return
    console.print()
    title = f"Combinations disagree on {len(dis)} calls"
    rows = [["call", "expected", *(c["name"] for c in combos)]]
    rows += [[d["id"], d["expected"], *(d["chosen"].get(c["name"], DASH) for c in combos)] for d in dis[:max_wrong]]
    cells = [max(len(r[i]) for r in rows[1:]) for i in range(len(rows[0]))]
    if sum(cells) + 2 * len(cells) <= console.width:
        right = {(n, i + 2): "green" for n, d in enumerate(dis[:max_wrong]) for i, c in enumerate(combos)
                 if d["chosen"].get(c["name"]) == d["expected"]}
        console.print(_rich_table(rows, title, left=len(rows[0]), cell_styles=right, keep=range(len(rows[0]))))
    else:
        console.print(Text(title, style="bold"))
        _indented(console, [f"{d['id']} (expected {d['expected']}): " + "; ".join(
            f"{c['name']}: {d['chosen'].get(c['name'], DASH)}" for c in combos) for d in dis[:max_wrong]])
    if len(dis) > max_wrong:
        console.print(Text(f"... {len(dis) - max_wrong} more (see --out)"))


def _print_thresholds(combos: list[dict[str, Any]], console: Console) -> None:
    for c in combos:
        fit = fit_lines(c)
        if not c["metrics"].get("scores") and not fit:
            continue
        console.print()
        console.print(Text(f"Scores and threshold: {c['name']}", style="bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        grid.add_row(Text("scores"), Text(scores_line(c)))
        current = current_line(c)
        if current:
            grid.add_row(Text("current"), Text(current))
        if fit:
            line, why, warning = fit
            grid.add_row(Text("use" if line != "no recommendation" else "fit"), Text(line, style="bold"))
            if why:
                grid.add_row(Text("why"), Text(why))
            if warning:
                grid.add_row(Text("warning", style="yellow"), Text(warning, style="yellow"))
        console.print(grid)
        rows = sweep_rows(c)
        if rows and _too_wide(rows, console.width, 0):
            rows = sweep_rows(c, digits=0)
        if rows:
            sweep = _rich_table(rows, left=0, keep=range(len(rows[0]) - 1))
            sweep.columns[-1].justify = "left"
            console.print(sweep)


# --- Markdown ------------------------------------------------------------------------------------------------


_MD_SPECIAL = re.compile(r"[\\`*\[\]|]|<(?=[A-Za-z/!?])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _md(text: str) -> str:
    """Plain text safe in a Markdown table cell or list item: one line; emphasis, code, links, table pipes and
    HTML tags escaped (so "<b>" shows as typed)."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), " ".join(str(text).split()))


def _code(text: str) -> str:
    """An id as inline code, whatever backticks or pipes it holds."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    if not text:
        return DASH
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence, pad = "`" * (longest + 1), " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_table(rows: list[list[str]], code: Sequence[int] = ()) -> str:
    """A GitHub table; columns in `code` are ids, shown as inline code."""
    def cell(i: int, text: str) -> str:
        return _code(text) if i in code and text not in (DASH, "") else _md(text)
    lines = ["| " + " | ".join(_md(c) or " " for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(i, c) for i, c in enumerate(r)) + " |" for r in rows[1:]]
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    combos = doc["combinations"]
    out = ["# Switchboard evaluation", "", " ".join(_md(t) for t in _intro(doc)), "", "## Summary", "",
           "Accuracy with its 95% (Wilson) interval; `-` where a metric has no support.", "",
           markdown_table(summary_rows(combos))]
    comparisons = comparison_rows(doc)
    if comparisons:
        out += ["", "## Are the differences real?", "",
                "Paired by call id: calls each combination fixed and broke against the other, with the exact "
                "McNemar p-value.", ""]
        for row in comparisons[1:]:
            out.append(f"- **{_md(row[0])}**: " + "; ".join(
                _md(f"{head}: {cell}") for head, cell in zip(comparisons[0][1:], row[1:], strict=True)))
    tags = tag_rows(combos)
    if tags:
        out += ["", "## Accuracy by tag", "", markdown_table(tags)]
    scored = [c for c in combos if c["metrics"].get("scores") or c.get("fit")]
    if scored:
        out += ["", "## Scores and thresholds"]
        for c in scored:
            current = current_line(c)
            out += ["", f"### {_md(c['name'])}", "", _md(scores_line(c)) + "."
                    + (f" Current setting: {_code(current)}." if current else "")]
            fit = fit_lines(c)
            if fit:
                line, why, warning = fit
                out += ["", f"- Use: {_code(line)}" if line != "no recommendation" else "- No recommendation.",
                        *([f"- Why: {_md(why)}"] if why else []),
                        *([f"- **Warning:** {_md(warning)}"] if warning else [])]
            rows = sweep_rows(c)
            if rows:
                out += ["", "Threshold sweep (answered = share of scored calls the router answers; an unanswered "
                        "call counts as none):", "", markdown_table(rows)]
            calibration = ((c["metrics"].get("scores") or {}).get("calibration") or {}).get("bins") or []
            if calibration:
                bins = [["score bin", "calls", "mean score", "right (95% CI)"]]
                bins += [[f"{b['low']:.1f}–{b['high']:.1f}", str(b["count"]), _score(b["mean_score"]),
                          _acc_of(round((b["accuracy"] or 0) * b["count"]), b["count"])] for b in calibration]
                out += ["", "Calibration (is a score of 0.8 right 80% of the time?):", "", markdown_table(bins)]
    for c in combos:
        m = c["metrics"]
        out += ["", f"## {_md(c['name'])}", "",
                f"Router {_md(c['router'])}" + (f", model {_md(c['model'])}" if c.get("model") else "")
                + (f", prompt {_md(c['prompt'])} (hash {_code(c['prompt_hash'])})" if c.get("prompt") else "")
                + f"; accuracy {_accuracy(m)}, macro-F1 {_f(m['macro_f1'])}.", "", "### Per destination", "",
                markdown_table(per_destination_rows(m), code=(0,)), "", "### Confusion matrix", "",
                "Rows: expected; columns: chosen.", "", markdown_table(confusion_rows(m), code=(0,)), "",
                "### Wrong calls", ""]
        rows = wrong_rows(c)
        out += [markdown_table(rows, code=(0, 2, 3)) if len(rows) > 1 else "None."]
    dis = disagreements(combos)
    if dis:
        out += ["", "## Where combinations disagree", "", f"{len(dis)} calls got different answers.", ""]
        rows = [["call", "caller said", "expected", *(c["name"] for c in combos)]]
        rows += [[d["id"], " ".join(d["excerpt"].split()), d["expected"],
                  *(d["chosen"].get(c["name"], DASH) for c in combos)] for d in dis]
        out.append(markdown_table(rows, code=(0, 2, *range(3, 3 + len(combos)))))
    return "\n".join(out) + "\n"


# --- HTML ----------------------------------------------------------------------------------------------------


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


def html_page(doc: dict[str, Any]) -> str:
    combos = doc["combinations"]
    best = best_index(combos)
    scored = [c for c in combos if c["metrics"].get("scores") or c.get("fit")]
    dis = disagreements(combos)
    comparisons = comparison_rows(doc)
    tags = tag_rows(combos)
    nav = [("summary", "Summary"), *([("differences", "Differences")] if comparisons else []),
           *([("tags", "By tag")] if tags else []), *([("thresholds", "Scores and thresholds")] if scored else []),
           *((f"c{i}", c["name"]) for i, c in enumerate(combos)), *([("disagree", "Disagreements")] if dis else [])]
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>Switchboard evaluation</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Switchboard evaluation</h1>", f"<p class='meta'>{'<br>'.join(E(t) for t in _intro(doc))}</p>",
             "<nav>" + "".join(f"<a href='#{E(a)}'>{E(t)}</a>" for a, t in nav) + "</nav>",
             "<h2 id='summary'>Summary</h2>",
             "<p class='note'>Accuracy with its 95% (Wilson) interval; “-” where a metric has no support. The best "
             "combination (highest accuracy, then macro-F1) is highlighted.</p>",
             _html_table(summary_rows(combos), left=2, row_class={best: "best"}),
             "<h3>Accuracy with its 95% interval</h3>", _svg_accuracy(combos, best)]
    if comparisons:
        parts += ["<h2 id='differences'>Are the differences real?</h2>",
                  "<p class='note'>Paired by call id: the calls each combination fixed and broke against the other, "
                  "and the exact McNemar p-value. With under 100 calls, most differences of a few points are "
                  "noise.</p>", _html_table(comparisons, left=len(comparisons[0]), verdicts=True)]
    if tags:
        parts += ["<h2 id='tags'>Accuracy by tag</h2>", _html_table(tags)]
    if scored:
        parts.append("<h2 id='thresholds'>Scores and thresholds</h2>")
        for c in scored:
            parts += _html_thresholds(c)
    for i, c in enumerate(combos):
        m = c["metrics"]
        what = f"Router <b>{E(c['router'])}</b>" + (f", model <b>{E(c['model'])}</b>" if c.get("model") else "") \
            + (f", prompt <b>{E(c['prompt'])}</b> (hash <code>{E(c['prompt_hash'] or DASH)}</code>)"
               if c.get("prompt") else "")
        rows = wrong_rows(c)
        parts += [f"<h2 id='c{i}'>{E(c['name'])}{' (best)' if i == best else ''}</h2>",
                  f"<p>{what}; accuracy {E(_accuracy(m))}, macro-F1 {E(_f(m['macro_f1']))}, "
                  f"{m['calls']} calls.</p>", "<div class='charts'><div><h3>Per destination</h3>",
                  _html_table(per_destination_rows(m)), "</div><div><h3>Confusion matrix</h3>", _confusion_html(m),
                  "</div></div>",
                  f"<h3>Wrong calls ({len(rows) - 1})</h3>",
                  _html_table(rows, left=4, said=1) if len(rows) > 1 else "<p>None.</p>"]
    if dis:
        rows = [["call", "caller said", "expected", *(c["name"] for c in combos)]]
        rows += [[d["id"], " ".join(d["excerpt"].split()), d["expected"],
                  *(d["chosen"].get(c["name"], DASH) for c in combos)] for d in dis]
        right = {(n, 3 + j) for n, d in enumerate(dis) for j, c in enumerate(combos)
                 if d["chosen"].get(c["name"]) == d["expected"]}
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


def _html_thresholds(c: dict[str, Any]) -> list[str]:
    scores = c["metrics"].get("scores") or {}
    current = current_line(c)
    out = [f"<h3>{E(c['name'])}</h3>", f"<p>{E(scores_line(c))}."
           + (f" Current setting: <code>{E(current)}</code>.</p>" if current else "</p>")]
    fit = fit_lines(c)
    if fit:
        line, why, warning = fit
        head = "No recommendation" if line == "no recommendation" else f"Use <code>{E(line)}</code>"
        out.append(f"<div class='fit{' warn' if warning else ''}'>{head}" + (f" — {E(why)}" if why else "")
                   + (f"<br><b>Warning:</b> {E(warning)}" if warning else "") + "</div>")
    if scores:
        out.append("<div class='charts'>" + _svg_reliability(c["name"], scores.get("calibration") or {})
                   + _svg_coverage(c["name"], scores, (c.get("fit") or {}).get("threshold")) + "</div>")
    rows = sweep_rows(c)
    if rows:
        out += ["<p class='note'>Threshold sweep: a call is answered when the router's best id is not none and its "
                "score reaches the threshold; an unanswered call counts as none.</p>",
                _html_table(rows, left=0, text=(len(rows[0]) - 1,))]
    return out


def _rgba(share: float, diagonal: bool) -> str:
    colour = "26,127,55" if diagonal else "207,34,46"
    return f"rgba({colour},{0.08 + 0.92 * share:.2f})"


def _confusion_html(metrics: dict[str, Any]) -> str:
    confusion = metrics["confusion"]
    if not confusion:
        return "<p>No calls.</p>"
    cols = _confusion_columns(confusion)
    out = ["<div class='scroll'><table class='confusion'><thead><tr><th class='l'>expected ↓ chosen →</th>"
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
            tip = f"expected {expected}, chose {c}: {n} of {total} ({100 * share:.0f}%)"
            dark = " class='dark'" if share >= 0.55 else ""
            cells.append(f"<td{dark} style='background:{_rgba(share, c == expected)}' title='{E(tip)}'>{n}</td>")
        out.append(f"<tr><th class='l'>{E(expected)}</th>{''.join(cells)}<td class='total'>{total}</td></tr>")
    out.append("</tbody></table></div>")
    def swatches(diagonal: bool) -> str:
        return "".join(f"<span class='sw' style='background:{_rgba(v, diagonal)}{';color:#fff' if v >= 0.55 else ''}'>"
                       f"{100 * v:.0f}%</span>" for v in (0.1, 0.25, 0.5, 0.75, 1.0))
    out.append("<div class='legend'><div>Numbers are calls (rows: expected, columns: chosen). The shade is the "
               "cell's share of its row (cell ÷ row total), so a rare destination reads like a common one; hover a "
               f"cell for its share.</div><div><b>right (diagonal)</b>{swatches(True)}</div>"
               f"<div><b>wrong (off-diagonal)</b>{swatches(False)}</div></div>")
    return "".join(out)


# --- SVG charts ----------------------------------------------------------------------------------------------


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} "
            f"{height}' role='img' aria-label='{E(label)}'><title>{E(label)}</title>{''.join(body)}</svg>")


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}'{extra}>{E(text)}</text>"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg_accuracy(combos: list[dict[str, Any]], best: int) -> str:
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
        m = c["metrics"]
        y = top + row_h * (i + 0.5)
        colour = PALETTE[i % len(PALETTE)]
        weight = " font-weight='bold'" if i == best else ""
        name = _clip(c["name"], 36) + (" (best)" if i == best else "")
        body.append(f"<g><title>{E(c['name'])}: {E(_accuracy(m))}</title>")
        body.append(_text(left - 12, y + 4, name, "end", weight))
        if m.get("calls"):
            low, high = m.get("accuracy_ci") or (m["accuracy"], m["accuracy"])
            body.append(f"<line x1='{x(low):.1f}' y1='{y:.1f}' x2='{x(high):.1f}' y2='{y:.1f}' stroke='{colour}' "
                        f"stroke-width='2.5'/>")
            for end in (low, high):
                body.append(f"<line x1='{x(end):.1f}' y1='{y - 7:.1f}' x2='{x(end):.1f}' y2='{y + 7:.1f}' "
                            f"stroke='{colour}' stroke-width='2.5'/>")
            body.append(f"<circle cx='{x(m['accuracy']):.1f}' cy='{y:.1f}' r='6' fill='{colour}' stroke='#fff'/>")
        body.append(_text(left + plot + 14, y + 4, _accuracy(m), "start", weight))
        body.append("</g>")
    return _svg(width, height, "Accuracy with its 95% interval per combination", body)


def _frame(body: list[str], left: int, top: int, width: int, height: int) -> None:
    body.append(f"<rect class='axis' x='{left}' y='{top}' width='{width}' height='{height}' fill='none'/>")


def _svg_reliability(name: str, calibration: dict[str, Any]) -> str:
    """Mean score against the share right, per score bin; the diagonal is perfect calibration."""
    size, left, top = 330, 64, 30
    width, height = left + size + 26, top + size + 92
    bins = calibration.get("bins") or []

    def x(v: float) -> float:
        return left + size * v

    def y(v: float) -> float:
        return top + size * (1 - v)

    body = [_text(left + size / 2, 17, f"Reliability (ECE {_f(calibration.get('ece'))})", extra=" font-weight='bold'")]
    for t in range(0, 11, 2):
        v = t / 10
        body.append(f"<line class='grid' x1='{x(v):.1f}' y1='{top}' x2='{x(v):.1f}' y2='{top + size}'/>")
        body.append(f"<line class='grid' x1='{left}' y1='{y(v):.1f}' x2='{left + size}' y2='{y(v):.1f}'/>")
        body.append(_text(x(v), top + size + 16, f"{v:.1f}", extra=" class='muted'"))
        body.append(_text(left - 6, y(v) + 4, f"{100 * v:.0f}%", "end", " class='muted'"))
    _frame(body, left, top, size, size)
    body.append(f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(1)}' y2='{y(1)}' stroke='#6e7781' stroke-dasharray='5 4'/>")
    points = [b for b in bins if b.get("count") and b.get("mean_score") is not None and b.get("accuracy") is not None]
    if points:
        path = " ".join(f"{x(b['mean_score']):.1f},{y(b['accuracy']):.1f}" for b in points)
        body.append(f"<polyline points='{path}' fill='none' stroke='#0072b2' stroke-width='1.5'/>")
    peak = max((b["count"] for b in points), default=1)
    for b in points:
        r = 3 + 6 * math.sqrt(b["count"] / peak)
        tip = (f"scores {b['low']:.1f}–{b['high']:.1f}: {_calls(b['count'])}, mean score {b['mean_score']:.2f}, "
               f"{100 * b['accuracy']:.0f}% right")
        body.append(f"<circle cx='{x(b['mean_score']):.1f}' cy='{y(b['accuracy']):.1f}' r='{r:.1f}' "
                    f"fill='#0072b2' fill-opacity='0.8' stroke='#fff'><title>{E(tip)}</title></circle>")
    count_y = top + size + 36
    body.append(_text(left - 6, count_y, "calls", "end", " class='muted'"))
    for b in bins:
        style = " class='muted'" if not b.get("count") else " font-weight='bold'"
        body.append(_text(x((b["low"] + b["high"]) / 2), count_y, str(b.get("count", 0)), extra=style))
    body.append(_text(left + size / 2, count_y + 22, "router's score (mean of each 0.1 bin)"))
    body.append(_text(16, top + size / 2, "share right", extra=f" transform='rotate(-90 16 {top + size / 2})'"))
    body.append(_text(left + size / 2, count_y + 42, "dashed: perfectly calibrated; dot area: calls in the bin",
                      extra=" class='muted'"))
    return _svg(width, height, f"Reliability diagram for {name}", body)


def _svg_coverage(name: str, scores: dict[str, Any], fitted: float | None) -> str:
    """Share of calls answered against accuracy on the answered calls, one point per threshold."""
    size_x, size_y, left, top = 380, 330, 64, 30
    width, height = left + size_x + 26, top + size_y + 92
    rows = [r for r in (scores.get("sweep") or {}).get("rows", []) if r.get("accuracy_answered") is not None]
    current = scores.get("current")
    lowest = min((r["accuracy_answered"] for r in rows), default=0.0)
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
        path = " ".join(f"{x(r['answered']):.1f},{y(r['accuracy_answered']):.1f}" for r in rows)
        body.append(f"<polyline points='{path}' fill='none' stroke='#0072b2' stroke-width='1.5'/>")
    for r in rows:
        tip = (f"threshold {r['threshold']:g}: answers {_calls(r['answered_count'])} ({_pct(r['answered'])}), "
               f"{_acc_of(r['answered_correct'], r['answered_count'])} right")
        body.append(f"<circle cx='{x(r['answered']):.1f}' cy='{y(r['accuracy_answered']):.1f}' r='3.5' "
                    f"fill='#0072b2'><title>{E(tip)}</title></circle>")
    same = _near(current, fitted)
    marks = [(t, label, dy) for t, label, dy in (
        (current, f"current {_threshold(current)}" + (" = recommended" if same else ""), 24),
        (None if same else fitted, f"recommended {_threshold(fitted)}", 42)) if t is not None]
    for mark, label, dy in marks:
        row = next((r for r in rows if _near(r["threshold"], mark)), None)
        if row is None:
            continue
        cx, cy = x(row["answered"]), y(row["accuracy_answered"])
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


def write(doc: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {"results.json": json.dumps(doc, indent=1), "report.md": markdown(doc), "report.html": html_page(doc)}
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
