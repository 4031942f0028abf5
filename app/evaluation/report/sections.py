"""Each report section, built once as rows of text (a header row first) or lines, from the typed results; the
terminal, Markdown and HTML formats render the same rows.

Every proportion comes with its 95% (Wilson) interval where it matters, and a metric without support (no calls
expected or predicted) is "-", never "0.0%". Accuracy is of what the caller got (the answered destination), with
the router's own pick beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.evaluation.results import (
    ERROR,
    CallResult,
    CombinationResult,
    Comparison,
    Metrics,
    RunResult,
    Scores,
    best_index,
)
from app.evaluation.statistics import Calibration, SweepRow, wilson_interval

DASH = "-"
SWEEP_THRESHOLDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)  # the compact sweep, plus the current and fitted rows
NO_RECOMMENDATION = "no recommendation"

# --- cells ---------------------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


def acc(x: float | None, ci: Sequence[float] | None, digits: int = 1) -> str:
    """ "90.6% (83.1–95.0)": a proportion with its 95% interval ("91% (83–95)" with digits=0, for narrow
    terminals)."""
    if x is None:
        return DASH
    if not ci:
        return pct(x)
    return f"{100 * x:.{digits}f}% ({100 * ci[0]:.{digits}f}–{100 * ci[1]:.{digits}f})"


def acc_of(right: int, n: int, digits: int = 1) -> str:
    return DASH if n <= 0 else acc(right / n, wilson_interval(right, n), digits)


def accuracy(metrics: Metrics, digits: int = 1) -> str:
    return acc(metrics.accuracy, metrics.accuracy_ci, digits) if metrics.calls else DASH


def chosen_accuracy(metrics: Metrics, digits: int = 1) -> str:
    """The router's own pick (a results.json from before it was scored apart: "-")."""
    return acc(metrics.chosen_accuracy, metrics.chosen_accuracy_ci, digits) if metrics.calls else DASH


SCORED_NOTE = ("Accuracy scores what the caller got: the destination each call was answered with at its own time "
               "(business hours, earlier failed transfers, the fallback and low confidence included); the router's "
               "own pick is scored beside it.")


def f3(x: float | None) -> str:
    return DASH if x is None else f"{x:.3f}"


def ms(x: float | None) -> str:
    return DASH if x is None else f"{x:.1f}" if x < 10 else f"{x:.0f}"


def usd(x: float | None) -> str:
    return DASH if x is None else f"${x:.4f}"


def score(x: float | None) -> str:
    return DASH if x is None or x != x else f"{x:.2f}"


def threshold(x: float | None) -> str:
    return DASH if x is None else f"{x:g}"


def short(text: str, limit: int) -> str:
    """One line, at most `limit` characters; the end is kept (the caller's last words decide)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    tail = text[-(limit - 1):]
    cut = tail.find(" ")
    return "…" + (tail[cut + 1:] if 0 <= cut < limit // 3 else tail)


def calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def chosen(call: CallResult) -> str:
    if call.predicted == ERROR and call.failure:
        return f"error ({call.failure})"
    return str(call.predicted)


def answered(call: CallResult) -> str:
    if call.got == ERROR and call.failure:
        return f"error ({call.failure})"
    return call.got


def near(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


# --- sections ------------------------------------------------------------------------------------------------


def intro(run: RunResult) -> tuple[str, str]:
    combos = run.combinations
    n = combos[0].metrics.calls if combos else 0
    return (f"{n} labelled calls from {', '.join(run.datasets)} (created {run.created or '?'}).",
            f"{len(combos)} combination{'s' if len(combos) != 1 else ''}; best: {combos[best_index(combos)].name}.")


SUMMARY_HEADER = ["best", "combination", "answered accuracy (95% CI)", "router's pick (95% CI)", "macro-F1", "none P",
                  "none R", "errors", "timeouts",
                  "latency ms p50/p95/max", "tokens in/out/cached", "cost", "consistency"]


def summary_rows(combos: list[CombinationResult], digits: int = 1, pick_digits: int = 1) -> list[list[str]]:
    """A row per combination; `digits` and `pick_digits`: decimals of the answered accuracy and of the router's pick
    (the terminal narrows the router's pick first: the answered accuracy is the one gated)."""
    best = best_index(combos)
    rows = [SUMMARY_HEADER]
    for i, c in enumerate(combos):
        m = c.metrics
        lat, tok = m.latency_ms, m.tokens
        # Tokens are a model's: a combination without one (the offline router) shows "-".
        tokens = DASH if c.model is None else f"{tok.prompt}/{tok.completion}/{tok.cached}"
        rows.append(["best" if i == best else "", c.name, accuracy(m, digits), chosen_accuracy(m, pick_digits),
                     f3(m.macro_f1) if m.calls else DASH,
                     pct(m.none_precision), pct(m.none_recall), str(m.errors), str(m.timeouts),
                     "/".join(ms(x) for x in (lat.p50, lat.p95, lat.max)) if m.calls else DASH, tokens,
                     usd(m.cost_usd), pct(m.consistency)])
    return rows


def comparison_text(cmp: Comparison | None, n: int | None = None, what: str = "") -> str:
    """ "fixed 1, broke 9 vs offline: worse, p = 0.021" (paired by call id, exact McNemar)."""
    if cmp is None:
        return DASH
    against = f"{what}{cmp.against}"
    if cmp.fixed is None or cmp.broken is None:
        return f"vs {against}: {cmp.verdict}"
    paired = cmp.paired_calls
    on = f", {paired} calls paired" if paired is not None and paired != n else ""
    return f"fixed {cmp.fixed}, broke {cmp.broken} vs {against}{on}: {cmp.verdict}"


def comparison_rows(run: RunResult) -> list[list[str]]:
    """combination | vs this run's best | vs baseline; empty when there is nothing to compare."""
    combos = run.combinations
    baseline = any(c.vs_baseline for c in combos)
    if len(combos) < 2 and not baseline:
        return []
    best = best_index(combos)
    rows = [["combination", "vs this run's best", *(["vs baseline"] if baseline else [])]]
    for i, c in enumerate(combos):
        n = c.metrics.calls
        vs_best = "(the best)" if i == best and not c.vs_best else comparison_text(c.vs_best, n)
        rows.append([c.name, vs_best, *([comparison_text(c.vs_baseline, n, "baseline ")] if baseline else [])])
    return rows


def tag_rows(combos: list[CombinationResult], digits: int = 1) -> list[list[str]]:
    tags: dict[str, int] = {}
    for c in combos:
        for tag, v in c.metrics.by_tag.items():
            tags.setdefault(tag, v.calls)
    if not tags:
        return []
    rows = [["tag", "calls", *(c.name for c in combos)]]
    for tag in sorted(tags):
        cells = []
        for c in combos:
            here = c.metrics.by_tag.get(tag)
            cells.append(acc(here.accuracy, here.accuracy_ci, digits) if here and here.calls else DASH)
        rows.append([tag, str(tags[tag]), *cells])
    return rows


def per_destination_rows(metrics: Metrics) -> list[list[str]]:
    rows = [["destination", "precision", "recall", "F1", "support", "predicted"]]
    for dest, v in metrics.per_destination.items():
        rows.append([dest, pct(v.precision), pct(v.recall), f3(v.f1), str(v.support),
                     DASH if v.predicted is None else str(v.predicted)])
    return rows


def confusion_columns(confusion: dict[str, dict[str, int]]) -> list[str]:
    cols: list[str] = []
    for row in confusion.values():
        cols += [c for c in row if c not in cols]
    return cols


def confusion_rows(metrics: Metrics) -> list[list[str]]:
    confusion = metrics.confusion
    if not confusion:
        return []
    cols = confusion_columns(confusion)
    rows = [["expected \\ chosen", *cols, "calls"]]
    for expected, row in confusion.items():
        if sum(row.values()):
            rows.append([expected, *[str(row.get(c, 0)) for c in cols], str(sum(row.values()))])
    return rows


def sweep_rows(combo: CombinationResult, digits: int = 1) -> list[list[str]]:
    """The compact threshold sweep: a handful of thresholds plus the current setting and the fitted one."""
    scores = combo.metrics.scores
    current, fitted = scores.current if scores else None, combo.fit.threshold if combo.fit else None
    wanted = [*SWEEP_THRESHOLDS, *(t for t in (current, fitted) if t is not None)]
    scored = scores.sweep.scored if scores else 0
    rows = [["threshold", "answered", "right when answered", "accuracy", "none P", "none R", ""]]
    for r in scores.sweep.rows if scores else []:
        if not any(near(r.threshold, t) for t in wanted):
            continue
        notes = [n for n, t in (("current", current), ("recommended", fitted)) if near(r.threshold, t)]
        right = round(r.accuracy * scored)
        rows.append([threshold(r.threshold), f"{pct(r.answered)} ({r.answered_count})",
                     acc_of(r.answered_correct, r.answered_count, digits), acc_of(right, scored, digits),
                     pct(r.none_precision), pct(r.none_recall), ", ".join(notes)])
    return rows if len(rows) > 1 else []


def calibration_rows(calibration: Calibration) -> list[list[str]]:
    """Calibration bins: calls, mean score and the share right with its interval; empty without bins."""
    if not calibration.bins:
        return []
    rows = [["score bin", "calls", "mean score", "right (95% CI)"]]
    rows += [[f"{b.low:.1f}–{b.high:.1f}", str(b.count), score(b.mean_score),
              acc_of(round((b.accuracy or 0) * b.count), b.count)] for b in calibration.bins]
    return rows


def sweep_row(scores: Scores | None, at: float | None) -> SweepRow | None:
    return next((r for r in (scores.sweep.rows if scores else []) if near(r.threshold, at)), None)


def scores_line(combo: CombinationResult) -> str:
    """Calibration and the router's own "none" answers, in one line."""
    scores = combo.metrics.scores
    if not scores:
        return "no scores from this router: no calibration or threshold sweep"
    parts = [f"expected calibration error (ECE) {f3(scores.calibration.ece)} over {scores.scored} scored calls"]
    if scores.sweep.skipped:
        parts.append(f"{scores.sweep.skipped} calls without a score left out")
    nones = scores.none_answers
    if nones.count:
        parts.append(f"the router answered none {nones.count} times, {nones.correct} rightly "
                     f"(mean score {score(nones.mean_score)})")
    return "; ".join(parts)


def current_line(combo: CombinationResult) -> str | None:
    scores = combo.metrics.scores
    return f"{scores.setting}={threshold(scores.current)}" if scores and scores.setting else None


def fit_lines(combo: CombinationResult) -> tuple[str, str, str | None] | None:
    """(the setting line to use, or "no recommendation"; why; any warning), or None without --fit-threshold."""
    fit = combo.fit
    if not fit:
        return None
    if not fit.recommendation:
        return NO_RECOMMENDATION, fit.reason or "", fit.warning
    why = [fit.reason or ""]
    scores = combo.metrics.scores
    current, fitted = scores.current if scores else None, fit.threshold
    row, now = sweep_row(scores, fitted), sweep_row(scores, current)
    if row is not None and scores is not None:
        scored = scores.sweep.scored
        why.append(f"accuracy {acc_of(round(row.accuracy * scored), scored)}, answering {pct(row.answered)}")
    elif fit.accuracy is not None:
        why.append(f"accuracy {pct(fit.accuracy)}, answering {pct(fit.answered)}")
    if current is not None and fitted is not None:
        if near(current, fitted):
            why.append("already the current setting")
        elif row is not None and now is not None and abs(row.accuracy - now.accuracy) < 1e-9:
            why.append(f"no more accurate than the current {threshold(current)}")
        else:
            why.append(f"the current setting is {threshold(current)}")
    return fit.recommendation, "; ".join(w for w in why if w), fit.warning


def wrong_rows(combo: CombinationResult, excerpt: int | None = None) -> list[list[str]]:
    """The calls answered somewhere else than the label: what was answered, and the router's own pick."""
    rows = [["call", "caller said", "expected", "answered", "chosen", "score"]]
    for r in combo.wrong_calls():
        said = r.excerpt or ""
        rows.append([r.id, short(said, excerpt) if excerpt else " ".join(said.split()), r.expected, answered(r),
                     chosen(r), score(r.score)])
    return rows


@dataclass
class Disagreement:
    """A call the combinations answered differently: what each chose, by combination name."""

    id: str
    expected: str
    chosen: dict[str, str]
    excerpt: str


def disagreements(combos: list[CombinationResult]) -> list[Disagreement]:
    if len(combos) < 2:
        return []
    by_id: dict[str, dict[str, str]] = {}
    expected: dict[str, str] = {}
    said: dict[str, str] = {}
    for c in combos:
        for r in c.calls:
            by_id.setdefault(r.id, {})[c.name] = r.got
            expected[r.id] = r.expected
            said.setdefault(r.id, r.excerpt or "")
    return [Disagreement(i, expected[i], v, said[i]) for i, v in sorted(by_id.items()) if len(set(v.values())) > 1]


def disagreement_rows(combos: list[CombinationResult], dis: list[Disagreement]) -> list[list[str]]:
    """call | caller said | expected | each combination's choice (the files list them all)."""
    rows = [["call", "caller said", "expected", *(c.name for c in combos)]]
    rows += [[d.id, " ".join(d.excerpt.split()), d.expected, *(d.chosen.get(c.name, DASH) for c in combos)]
             for d in dis]
    return rows
