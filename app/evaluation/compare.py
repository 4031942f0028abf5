"""Judging a run: each combination against this run's best and against a baseline, call by call (fixed, broken,
the exact McNemar p-value); the threshold --fit-threshold recommends; and the gates (--min-accuracy, --baseline)
whose failure is exit 1. The comparisons and the gates judge what the caller got (the answered destination), not
the router's own pick."""

from __future__ import annotations

import dataclasses

from app.evaluation import statistics as stats
from app.evaluation.results import NO_SCORES, CallResult, CombinationResult, Comparison, RunResult, ThresholdFit
from app.evaluation.score import scored_calls

UNPAIRED = "the baseline has no per-call results to pair"


class GateFailed(Exception):
    """A gate is not met; the message lists each combination and figure that fails it."""


def compare(calls: list[CallResult], reference: list[CallResult], against: str) -> Comparison:
    """Paired by call id: the calls this run fixed and broke against `reference` (right: answered where the
    label says), and whether that is more than chance (exact McNemar)."""
    before = {c.id: c.right for c in reference}
    pairs = [(before[c.id], c.right) for c in calls if c.id in before]
    fixed = sum(1 for was, now in pairs if now and not was)
    broken = sum(1 for was, now in pairs if was and not now)
    p = stats.mcnemar_exact(fixed, broken)
    return Comparison(against, fixed, broken, p, stats.verdict(fixed, broken, p), paired_calls=len(pairs))


def compare_run(run: RunResult, baseline: RunResult | None, baseline_path: str | None) -> None:
    """Each combination against the baseline (RunResult.reference_for: the same name, else the baseline's best),
    and each against this run's best: calls fixed and broken, paired by call id, with the exact McNemar p-value."""
    best = next(c for c in run.combinations if c.name == run.best)
    for combo in run.combinations:
        if combo is not best:
            combo.vs_best = compare(combo.calls, best.calls, best.name)
        if baseline is not None:
            ref = baseline.reference_for(combo.name)
            against = f"{baseline_path} ({ref.name})"
            combo.vs_baseline = compare(combo.calls, ref.calls, against) if ref.calls else \
                Comparison(against, None, None, None, UNPAIRED)


def fit_thresholds(run: RunResult, target_precision: float | None) -> None:
    """--fit-threshold: for each combination whose router gives scores, the threshold setting to use."""
    for combo in run.combinations:
        scores = combo.metrics.scores
        if scores is None:
            combo.fit = ThresholdFit(recommendation=None, reason=NO_SCORES, warning=None)
            continue
        calls = scored_calls(combo.calls)
        fit = stats.fit_threshold(calls, target_precision)
        current = scores.current
        if target_precision is None and fit.threshold is not None and current is not None:
            # A tie with the setting in use: keep it (ties otherwise go to the lowest threshold).
            now = stats.threshold_sweep(calls, [current]).rows
            if now and fit.accuracy is not None and now[0].accuracy >= fit.accuracy - 1e-12:
                fit = dataclasses.replace(fit, threshold=current, answered=now[0].answered,
                                          accuracy_answered=now[0].accuracy_answered,
                                          reason=f"the current setting ({current:g}) is already among the most "
                                                 "accurate thresholds")
        setting = scores.setting
        combo.fit = ThresholdFit(
            recommendation=f"{setting}={fit.threshold:g}" if fit.threshold is not None else None, reason=fit.reason,
            warning=fit.warning, threshold=fit.threshold, accuracy=fit.accuracy, answered=fit.answered,
            accuracy_answered=fit.accuracy_answered, setting=setting, fitted=True)


def answered_accuracy(combo: CombinationResult) -> float:
    """The share of calls answered where the label says. A results.json from before scored the router's pick in
    `accuracy`: its calls are scored again by what they were answered with, when it has them."""
    m = combo.metrics
    if m.scored == "answered" or not combo.calls:
        return m.accuracy
    return sum(c.right for c in combo.calls) / len(combo.calls)


def gate(run: RunResult, min_accuracy: float | None, lower_bound: bool, baseline: RunResult | None,
         tolerance: float) -> None:
    """GateFailed when a combination's accuracy on what was answered (or, with `lower_bound`, its interval's lower
    end) is below `min_accuracy`, or when against the baseline that accuracy or any destination's recall dropped by
    more than `tolerance`. The router's own pick (`chosen_accuracy`) is reported, never gated."""
    problems = []
    for combo in run.combinations:
        m = combo.metrics
        acc = m.accuracy_ci[0] if lower_bound and m.accuracy_ci else m.accuracy
        what = "answered accuracy's 95% lower bound" if lower_bound else "answered accuracy"
        if min_accuracy is not None and acc < min_accuracy:
            problems.append(f"{combo.name}: {what} {acc:.3f} < --min-accuracy {min_accuracy}")
    if baseline is not None:
        for combo in run.combinations:
            ref = baseline.reference_for(combo.name)
            m, r, before = combo.metrics, ref.metrics, answered_accuracy(ref)
            if m.accuracy < before - tolerance:
                problems.append(f"{combo.name}: answered accuracy {m.accuracy:.3f} dropped from {before:.3f}")
            for dest, v in m.per_destination.items():
                old = r.per_destination.get(dest)
                if old and old.support and v.support and old.recall is not None and \
                        v.recall is not None and v.recall < old.recall - tolerance:
                    problems.append(f"{combo.name}: recall of {dest} {v.recall:.3f} dropped from {old.recall:.3f}")
    if problems:
        raise GateFailed("; ".join(problems))
