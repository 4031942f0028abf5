"""Reports: the terminal summary, Markdown and HTML show what a reader needs to judge a run, and stay safe.

Rendered from two kinds of results, read back from results.json into the typed RunResult: one combination (the
offline router, --fit-threshold) and three (two LLM prompts against a fake model and the offline router, with
--baseline and --fit-threshold). Both are built here by `switchboard eval`; the reference documents under /tmp/sb
are rendered too when present.
"""

from __future__ import annotations

import copy
import io
import os
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from app.cli import cli
from app.evaluation import report
from app.evaluation.report import sections
from app.evaluation.results import ClassScore, Comparison, RunResult, TagScore, ThresholdFit
from tests.conftest import ROOT
from tests.fake_openai import FakeOpenAI, allowed_ids, answer

REFERENCE = Path("/tmp/sb")
KEYWORDS = {"bill": "billing", "charge": "billing", "internet": "tech_support", "modem": "tech_support",
            "cancel": "cancellations", "outage": "outages", "moving": "moving", "move": "moving",
            "password": "account_security", "hacked": "account_security", "español": "spanish", "hola": "spanish",
            "plan": "sales", "sign up": "sales"}


def fallible(request: dict[str, Any]) -> Any:
    """A deterministic, fallible model: a keyword guess, sometimes a wrong id, "none" for the unknown, and a
    confidence that varies by call (so calibration and the threshold sweep have something to show)."""
    prompt = request["messages"][0]["content"]
    text = request["messages"][-1]["content"].lower()
    h = zlib.crc32((prompt + text).encode())
    ids = [i for i in allowed_ids(request) if i != "none"]
    guess = next((dest for word, dest in KEYWORDS.items() if word in text and dest in ids), None)
    confidence = 0.3 + (h % 70) / 100
    if guess is None:
        return answer("none", confidence=confidence)
    if h % 7 == 0:
        return answer(ids[h % len(ids)], confidence=min(confidence, 0.6))
    return answer(guess, confidence=confidence)


def _eval(args: list[str], env: dict[str, str | None]) -> None:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("SWITCHBOARD_", "OPENAI_"))}
    result = CliRunner().invoke(cli, ["eval", *args], env={**clean, **env}, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output  # 1: a --baseline gate failed; the reports are written


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, RunResult]:
    out = tmp_path_factory.mktemp("eval")
    sample, holdout = str(ROOT / "datasets/sample.jsonl"), str(ROOT / "datasets/holdout.jsonl")
    _eval([sample, "-r", "offline", "--fit-threshold", "-o", str(out / "ev1")], {})
    fake = FakeOpenAI().start()
    try:
        fake.policy = fallible
        _eval([sample, holdout, "-r", "llm", "-r", "offline", "-p", str(ROOT / "prompts/route.md"),
               "-p", str(ROOT / "prompts/route-with-reason.md"), "--baseline", str(out / "ev1/results.json"),
               "--fit-threshold", "--no-cache", "--cache", str(out / "cache.sqlite"), "-o", str(out / "ev2")],
              {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k"})
    finally:
        fake.stop()
    return (RunResult.from_json((out / "ev1/results.json").read_text()),
            RunResult.from_json((out / "ev2/results.json").read_text()))


SOURCES = ["built", *(["reference"] if (REFERENCE / "ev2/results.json").exists() else [])]


@pytest.fixture(params=SOURCES)
def docs(request: pytest.FixtureRequest) -> tuple[RunResult, RunResult]:
    if request.param == "reference":
        return (RunResult.from_json((REFERENCE / "ev1/results.json").read_text()),
                RunResult.from_json((REFERENCE / "ev2/results.json").read_text()))
    return copy.deepcopy(request.getfixturevalue("built"))


def terminal(doc: RunResult, width: int = 120) -> str:
    buf = io.StringIO()
    report.print_summary(doc, Console(file=buf, width=width))
    return buf.getvalue()


def acc(value: float, ci: tuple[float, float] | None, digits: int = 1) -> str:
    assert ci is not None
    return f"{100 * value:.{digits}f}% ({100 * ci[0]:.{digits}f}–{100 * ci[1]:.{digits}f})"


def outputs(doc: RunResult) -> dict[str, str]:
    return {"terminal": terminal(doc), "markdown": report.markdown(doc), "html": report.html_page(doc)}


def test_the_one_combination_run(docs):
    ev1, _ = docs
    combo = ev1.combinations[0]
    m = combo.metrics
    assert combo.fit is not None and combo.fit.recommendation and m.scores is not None
    for kind, text in outputs(ev1).items():
        assert acc(m.accuracy, m.accuracy_ci) in text, kind
        assert combo.fit.recommendation in text, kind  # e.g. SWITCHBOARD_OFFLINE_THRESHOLD=0.35
        assert "calibration error" in text and f"{m.scores.calibration.ece:.3f}" in text, kind
        for tag, v in m.by_tag.items():
            assert tag in text and acc(v.accuracy, v.accuracy_ci) in text, (kind, tag)
    out = terminal(ev1)
    assert "\x1b[" not in out  # not a terminal: plain text
    assert re.search(r"^best +combination +\(95% CI\)", out, re.M) and "answered accuracy" in out
    assert re.search(r"^best +offline +" + re.escape(acc(m.accuracy, m.accuracy_ci)), out, re.M)
    assert "Combinations disagree" not in out


def test_three_combinations_summary_verdicts_and_tags(docs):
    _, ev2 = docs
    combos = ev2.combinations
    assert [c.name for c in combos][-1] == "offline" and len(combos) == 3
    texts = outputs(ev2)
    for kind, text in texts.items():
        words = " ".join(text.replace("&lt;", "<").split())  # a long verdict may wrap in the terminal
        for c in combos:
            m = c.metrics
            assert acc(m.accuracy, m.accuracy_ci) in text, (kind, c.name)
            for cmp in (c.vs_best, c.vs_baseline):
                if cmp is not None:
                    # plain words: "fixed 1, broke 9 vs offline: worse, p = 0.021"
                    assert f"fixed {cmp.fixed}, broke {cmp.broken} vs " in words, kind
                    assert cmp.verdict in words, kind
            for tag, v in m.by_tag.items():
                assert acc(v.accuracy, v.accuracy_ci) in text, (kind, tag)
            if c.fit and c.fit.recommendation:
                assert c.fit.recommendation in text, kind
    out = texts["terminal"]
    head = out.split("Per destination")[0]  # the summary, the verdicts and the tags come first
    assert "Are the differences real?" in head and "Accuracy by tag" in head
    assert len(head.splitlines()) < 60
    assert re.search(r"^best +combination", out, re.M)
    for header in ("errors", "timeouts", "latency ms", "p50/p95/max", "in/out/cached", "cost", "consistency"):
        assert header in out
    assert "Combinations disagree on" in out


def test_summary_best_column_has_a_header_everywhere(docs):
    _, ev2 = docs
    best = ev2.best_index()
    assert ev2.combinations[best].name == ev2.best
    md = report.markdown(ev2)
    assert "| best | combination | answered accuracy (95% CI) | router's pick (95% CI) |" in md
    assert f"| best | {ev2.best} |" in md
    page = report.html_page(ev2)
    assert "<th class='l'>best</th>" in page and "<tr class='best'>" in page


def test_terminal_caps_wrong_calls_and_shows_excerpts_and_scores(docs):
    _, ev2 = docs
    out = terminal(ev2)
    for c in ev2.combinations:
        wrong = c.wrong_calls()
        assert f"Wrong calls: {c.name} ({len(wrong)} of {c.metrics.calls})" in out
        if len(wrong) > 15:
            assert f"... {len(wrong) - 15} more (see --out)" in out
        shown = wrong[0]
        assert shown.id in out and shown.expected in out
        if shown.score is not None:
            assert f"{shown.score:.2f}" in out
    assert max(len(line) for line in out.splitlines()) <= 120
    md = report.markdown(ev2)
    for c in ev2.combinations:  # the files list every wrong call, with what the caller said
        for r in c.wrong_calls():
            assert f"`{r.id}`" in md
    assert md.count("### Per destination") == 3 and md.count("### Confusion matrix") == 3
    assert "## Where combinations disagree" in md


def test_threshold_sweep_is_compact_and_marks_current_and_recommended(docs):
    ev1, ev2 = docs
    for doc in (ev1, ev2):
        for c in doc.combinations:
            rows = sections.sweep_rows(c)
            thresholds = [float(r[0]) for r in rows[1:]]
            assert {0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8} <= set(thresholds) and len(thresholds) <= 9
            notes = {r[0]: r[-1] for r in rows[1:]}
            assert c.metrics.scores is not None and c.fit is not None
            assert "current" in notes[f"{c.metrics.scores.current:g}"]
            assert "recommended" in notes[f"{c.fit.threshold:g}"]
    md = report.markdown(ev1)
    assert "| threshold | answered | right when answered | accuracy | none P | none R |" in md
    fit = ev1.combinations[0].fit
    assert fit is not None and f"- Use: `{fit.recommendation}`" in md


def test_no_support_shows_a_dash_never_zero(docs):
    _, ev2 = docs
    doc = copy.deepcopy(ev2)
    m = doc.combinations[0].metrics
    dest = next(iter(m.per_destination))
    m.per_destination[dest] = ClassScore(precision=None, recall=None, f1=None, support=0, predicted=0)
    m.none_recall = None
    m.consistency = None
    rows = sections.per_destination_rows(m)
    assert rows[1] == [dest, "-", "-", "-", "0", "0"]
    assert sections.summary_rows(doc.combinations)[1][6] == "-"  # none R
    md = report.markdown(doc)
    assert f"| `{dest}` | - | - | - | 0 | 0 |" in md
    page = report.html_page(doc)
    assert (f"<td class='l'>{dest}</td><td>-</td><td>-</td><td>-</td><td>0</td><td>0</td>") in page
    doc.best = doc.combinations[0].name
    for c in doc.combinations[1:]:  # make combination 0 the best, so the terminal shows its destinations
        c.metrics.accuracy = 0.0
    out = terminal(doc)
    assert re.search(rf"^{dest} +- +- +- +0 +0$", out, re.M)
    zero = copy.deepcopy(ev2)
    zero.combinations[0].metrics.calls, zero.combinations[0].metrics.accuracy = 0, 0.0
    assert sections.summary_rows(zero.combinations)[1][2] == "-"


def test_html_is_self_contained_with_charts_and_a_shaded_confusion_matrix(docs):
    _, ev2 = docs
    page = report.html_page(ev2)
    scored = sum(1 for c in ev2.combinations if c.metrics.scores)
    assert page.count("<svg") == 1 + 2 * scored  # accuracy, then a reliability and a coverage chart each
    assert "Accuracy with its 95% interval per combination" in page
    assert page.count("<title>Reliability diagram for") == scored
    assert page.count("<title>Coverage and accuracy for") == scored
    assert "perfectly calibrated" in page and "share of calls answered" in page and "current" in page
    assert "<script" not in page.lower() and "javascript:" not in page.lower()
    assert "<link" not in page and "@import" not in page and "url(" not in page and " src=" not in page
    assert set(re.findall(r"https?://[^\s'\"<>)]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert "<table class='confusion'>" in page and "rgba(" in page
    assert "share of its row (cell ÷ row total)" in page  # the legend says what the shading means
    # shaded by the row's share, not the raw count: a full row of 3 is as dark as a full row of 13
    cells = re.findall(r"style='background:rgba\(26,127,55,([0-9.]+)\)' title='expected [^']*: (\d+) of (\d+)", page)
    assert cells and all(abs(float(a) - (0.08 + 0.92 * int(n) / int(t))) < 0.006 for a, n, t in cells)


def test_everything_from_user_data_is_escaped(docs):
    _, ev2 = docs
    doc = copy.deepcopy(ev2)
    combo = doc.combinations[0]
    wrong = combo.wrong_calls()[0]
    wrong.id, wrong.excerpt = "<b>x</b>", "<script>alert(1)</script> & 'quoted' [bold]not markup[/bold] | pipe"
    combo.name = "<i>evil</i> & co"
    combo.metrics.by_tag["<img src=x onerror=alert(1)>"] = TagScore(calls=1, accuracy=1.0, accuracy_ci=(0.2, 1.0))
    page = report.html_page(doc)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<i>evil</i>" not in page and "&lt;i&gt;evil&lt;/i&gt; &amp; co" in page
    assert "<img" not in page
    md = report.markdown(doc)
    assert "`<b>x</b>`" in md  # a code span shows it as typed
    assert "\\<script>" in md and "\\| pipe" in md and "\\<i>evil\\</i>" in md
    out = terminal(doc, width=200)
    assert "<b>x</b>" in out and "[bold]not markup[/bold]" in out  # printed as typed, never as rich markup


def test_terminal_respects_no_color(docs, monkeypatch):
    _, ev2 = docs
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    report.print_summary(ev2, Console(file=buf, width=120, force_terminal=True))
    assert not re.search(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;)", buf.getvalue())  # no foreground colour at all


def test_comparisons_without_pairs_and_routers_without_scores(docs):
    _, ev2 = docs
    doc = copy.deepcopy(ev2)
    combo = doc.combinations[0]
    combo.vs_baseline = Comparison("old.json (x)", None, None, None, "the baseline has no per-call results to pair")
    combo.metrics.scores = None
    combo.fit = ThresholdFit(recommendation=None, reason="this router gave no scores", warning=None)
    for text in outputs(doc).values():
        assert "vs baseline old.json (x): the baseline has no per-call results to pair" in text
        assert "this router gave no scores" in text
    assert report.html_page(doc).count("<svg") == report.html_page(ev2).count("<svg") - 2


def test_write_puts_three_files(docs, tmp_path):
    _, ev2 = docs
    paths = report.write(ev2, tmp_path / "out")
    assert [p.name for p in paths] == ["results.json", "report.md", "report.html"]
    assert paths[0].read_text() == ev2.to_json()
    assert RunResult.from_json(paths[0].read_text()) == ev2


def test_a_narrow_terminal_keeps_names_ids_and_intervals(docs):
    _, ev2 = docs
    out = terminal(ev2, width=80)  # rich's width when stdout is not a terminal
    assert max(len(line) for line in out.splitlines()) <= 80
    flat = " ".join(out.split())
    for c in ev2.combinations:
        m = c.metrics
        assert acc(m.accuracy, m.accuracy_ci) in out
        assert c.wrong_calls()[0].id in out
    assert "offline" in out and "gpt-4.1-mini / route" in flat
    tag, v = next(iter(ev2.combinations[-1].metrics.by_tag.items()))
    assert re.search(rf"^{re.escape(tag)} +{v.calls} ", out, re.M)  # the tag column is not squeezed out


def test_both_accuracies_in_every_format(docs):
    """What was answered is scored, with the router's own pick beside it, in the terminal, Markdown, HTML and
    results.json; a results.json from before has no router's pick, and shows "-" for it."""
    _, ev2 = docs
    for c in ev2.combinations:
        m = c.metrics
        answered = acc(m.accuracy, m.accuracy_ci)
        pick = sections.DASH if m.chosen_accuracy is None else acc(m.chosen_accuracy, m.chosen_accuracy_ci)
        assert sections.summary_rows(ev2.combinations)[1 + ev2.combinations.index(c)][2:4] == [answered, pick]
        for kind, text in outputs(ev2).items():
            assert answered in text, (kind, c.name)
            if kind != "terminal":  # the terminal shows the router's pick without decimals when it is narrow
                assert pick in text, (kind, c.name)
        if m.chosen_accuracy is not None:
            narrow = acc(m.chosen_accuracy, m.chosen_accuracy_ci, digits=0)
            assert pick in terminal(ev2) and narrow in terminal(ev2, width=80), c.name
            doc = ev2.to_dict()["combinations"][ev2.combinations.index(c)]["metrics"]
            assert doc["scored"] == "answered" and doc["chosen_accuracy"] == m.chosen_accuracy
            assert doc["chosen_accuracy_ci"] == list(m.chosen_accuracy_ci or ())
    for kind, text in outputs(ev2).items():
        assert "answered" in text and "router's pick" in text, kind
