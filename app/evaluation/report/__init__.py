"""Evaluation reports: the terminal summary (terminal.py), results.json, Markdown (markdown.py) and a
self-contained HTML page (html.py, with SVG charts from charts.py), all read from the typed results
(app/evaluation/results.py). Each section is built once as rows (sections.py) and rendered by each format.

Every output says how sure the numbers are: accuracy always comes with its 95% (Wilson) interval, and each
combination is compared call by call with this run's best and with the baseline (fixed, broken, McNemar p).
"""

from __future__ import annotations

from pathlib import Path

from app.evaluation.report.html import html_page
from app.evaluation.report.markdown import markdown
from app.evaluation.report.terminal import print_summary
from app.evaluation.results import RunResult

__all__ = ["html_page", "markdown", "print_summary", "write"]


def write(run: RunResult, directory: Path) -> list[Path]:
    """results.json, report.md and report.html in `directory` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"results.json": run.to_json(), "report.md": markdown(run), "report.html": html_page(run)}
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
