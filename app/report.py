"""Evaluation reports: the terminal summary, results JSON, Markdown, and a self-contained HTML page."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


def best_index(combos: list[dict[str, Any]]) -> int:
    return max(range(len(combos)), key=lambda i: (combos[i]["metrics"]["accuracy"], combos[i]["metrics"]["macro_f1"]))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _cost(x: float | None) -> str:
    return "-" if x is None else f"${x:.4f}"


def summary_rows(combos: list[dict[str, Any]]) -> list[list[str]]:
    best = best_index(combos)
    rows = [["", "router", "model", "prompt", "accuracy", "macro-F1", "none P", "none R", "errors", "timeouts",
             "p50 ms", "p95 ms", "max ms", "tokens in/out", "cost", "consistency"]]
    for i, c in enumerate(combos):
        m = c["metrics"]
        rows.append(["*" if i == best else "", c["router"], c["model"] or "-", c["prompt"] or "-",
                     _pct(m["accuracy"]), f"{m['macro_f1']:.3f}", _pct(m["none_precision"]), _pct(m["none_recall"]),
                     str(m["errors"]), str(m["timeouts"]), f"{m['latency_ms']['p50']:.0f}",
                     f"{m['latency_ms']['p95']:.0f}", f"{m['latency_ms']['max']:.0f}",
                     f"{m['tokens']['prompt']}/{m['tokens']['completion']}", _cost(m["cost_usd"]),
                     _pct(m["consistency"])])
    return rows


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def per_destination_rows(metrics: dict[str, Any]) -> list[list[str]]:
    rows = [["destination", "precision", "recall", "F1", "support"]]
    for dest, v in metrics["per_destination"].items():
        rows.append([dest, _pct(v["precision"]), _pct(v["recall"]), f"{v['f1']:.3f}", str(v["support"])])
    return rows


def confusion_rows(metrics: dict[str, Any]) -> list[list[str]]:
    confusion = metrics["confusion"]
    cols = list(next(iter(confusion.values())).keys())
    rows = [["expected \\ chosen", *cols]]
    for expected, row in confusion.items():
        if sum(row.values()):
            rows.append([expected, *[str(row.get(c, 0)) for c in cols]])
    return rows


def wrong_calls(combo: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in combo["calls"] if r["predicted"] != r["expected"]]


def disagreements(combos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(combos) < 2:
        return []
    by_id: dict[str, dict[str, str]] = {}
    expected: dict[str, str] = {}
    for c in combos:
        for r in c["calls"]:
            by_id.setdefault(r["id"], {})[c["name"]] = r["predicted"]
            expected[r["id"]] = r["expected"]
    return [{"id": i, "expected": expected[i], "chosen": v}
            for i, v in sorted(by_id.items()) if len(set(v.values())) > 1]


def terminal(combos: list[dict[str, Any]], max_wrong: int = 15) -> str:
    out = [table(summary_rows(combos)), ""]
    best = combos[best_index(combos)]
    out += [f"Per destination ({best['name']}):", table(per_destination_rows(best["metrics"])), ""]
    for c in combos:
        wrong = wrong_calls(c)
        if wrong:
            out.append(f"Wrong calls ({c['name']}: {len(wrong)}):")
            out += [f"  {r['id']}: expected {r['expected']}, chose {r['predicted']} ({r['outcome']})"
                    for r in wrong[:max_wrong]]
            if len(wrong) > max_wrong:
                out.append(f"  ... {len(wrong) - max_wrong} more (see --out)")
    dis = disagreements(combos)
    if dis:
        out += ["", f"Combinations disagree on {len(dis)} calls:"]
        out += [f"  {d['id']} (expected {d['expected']}): " + ", ".join(f"{k}={v}" for k, v in d["chosen"].items())
                for d in dis[:max_wrong]]
    return "\n".join(out)


def markdown(doc: dict[str, Any]) -> str:
    combos = doc["combinations"]
    out = ["# Switchboard evaluation", "", f"Datasets: {', '.join(doc['datasets'])}. Calls: "
           f"{combos[0]['metrics']['calls']}. Created {doc['created']}.", "", "## Summary (* = best)", "",
           markdown_table(summary_rows(combos))]
    for c in combos:
        m = c["metrics"]
        out += ["", f"## {c['name']}", "", f"Prompt hash `{c['prompt_hash'] or '-'}`; accuracy {_pct(m['accuracy'])}, "
                f"macro-F1 {m['macro_f1']:.3f}.", "", "### Per destination", "",
                markdown_table(per_destination_rows(m)), "", "### Confusion matrix", "",
                markdown_table(confusion_rows(m)), "", "### Wrong calls", ""]
        wrong = wrong_calls(c)
        out += [f"- `{r['id']}`: expected `{r['expected']}`, chose `{r['predicted']}` ({r['outcome']})"
                for r in wrong] or ["None."]
    dis = disagreements(combos)
    if dis:
        out += ["", "## Where combinations disagree", ""]
        out += [f"- `{d['id']}` (expected `{d['expected']}`): "
                + ", ".join(f"{k}: `{v}`" for k, v in d["chosen"].items()) for d in dis]
    return "\n".join(out) + "\n"


def _heat(value: int, peak: int, diagonal: bool) -> str:
    if not value:
        return ""
    alpha = 0.15 + 0.85 * value / max(peak, 1)
    colour = "34,139,34" if diagonal else "200,40,40"
    return f' style="background: rgba({colour},{alpha:.2f})"'


def html_page(doc: dict[str, Any]) -> str:
    e = html.escape
    combos = doc["combinations"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Switchboard evaluation</title><style>",
             "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}",
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}",
             "td:first-child,th:first-child{text-align:left}.best{font-weight:bold}</style></head><body>",
             "<h1>Switchboard evaluation</h1>",
             f"<p>Datasets: {e(', '.join(doc['datasets']))}. Created {e(doc['created'])}.</p>",
             "<h2>Summary</h2>", _html_table(summary_rows(combos))]
    for c in combos:
        m = c["metrics"]
        parts += [f"<h2>{e(c['name'])}</h2>", "<h3>Per destination</h3>", _html_table(per_destination_rows(m)),
                  "<h3>Confusion matrix</h3>", _confusion_html(m)]
        wrong = wrong_calls(c)
        parts.append("<h3>Wrong calls</h3><ul>" + "".join(
            f"<li><code>{e(r['id'])}</code>: expected <b>{e(r['expected'])}</b>, chose <b>{e(r['predicted'])}</b>"
            f" ({e(r['outcome'])})</li>" for r in wrong) + "</ul>" if wrong else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _confusion_html(metrics: dict[str, Any]) -> str:
    e = html.escape
    confusion = metrics["confusion"]
    cols = list(next(iter(confusion.values())).keys())
    peak = max((v for row in confusion.values() for v in row.values()), default=1)
    out = ["<table class='confusion'><tr><th>expected \\ chosen</th>" + "".join(f"<th>{e(c)}</th>" for c in cols)
           + "</tr>"]
    for expected, row in confusion.items():
        if not sum(row.values()):
            continue
        cells = "".join(f"<td{_heat(row.get(c, 0), peak, c == expected)}>{row.get(c, 0) or ''}</td>" for c in cols)
        out.append(f"<tr><th>{e(expected)}</th>{cells}</tr>")
    return "".join(out) + "</table>"


def write(doc: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {"results.json": json.dumps(doc, indent=1), "report.md": markdown(doc), "report.html": html_page(doc)}
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
