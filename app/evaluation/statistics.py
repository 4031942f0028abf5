"""Small, pure statistics for trustworthy evaluation on few labelled calls (30–100).

Standard library only. With so few calls, a raw accuracy difference or a tuned threshold is easily noise, so
these functions say how sure we can be: an exact McNemar test for comparing two routers on the same calls, Wilson
intervals for proportions, calibration of a router's scores, and a threshold sweep/fit that warns when the data
is too thin to trust.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NONE = "none"  # the label / prediction meaning "do not transfer" (same spelling as app.catalogue.NONE)
Z95 = 1.959963984540054  # two-sided 95% normal quantile
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(21))  # 0.00, 0.05, ..., 1.00
MIN_SCORED = 50  # fewer scored calls than this: a fitted threshold is a rough guide
MIN_ANSWERED = 10  # fewer answered calls than this at the chosen threshold: its precision means little


# --- comparing two routers -----------------------------------------------------------------------------------


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Exact two-sided McNemar p-value on the discordant pairs.

    `fixed` = calls the candidate gets right and the baseline wrong, `broken` = the reverse. Under "no difference"
    each discordant call is a fair coin, so p = min(1, 2 * P(Binomial(n, 1/2) <= min(fixed, broken))). Computed
    with exact integers and one correctly rounded division, so it stays right for thousands of pairs (a result
    below the smallest float, ~5e-324, is returned as 0.0).
    """
    if fixed < 0 or broken < 0:
        raise ValueError(f"counts must be non-negative, got fixed={fixed}, broken={broken}")
    n = fixed + broken
    if n == 0 or fixed == broken:
        return 1.0  # nothing discordant, or the lower tail already holds at least half the mass
    k_max = min(fixed, broken)
    term = 1  # C(n, 0)
    tail = 1
    for k in range(1, k_max + 1):
        term = term * (n - k + 1) // k  # C(n, k) from C(n, k-1), exact
        tail += term
    return min(1.0, (2 * tail) / (1 << n))  # int / int is correctly rounded, even for huge ints


def format_p(p: float) -> str:
    """`p` with two significant figures ("p = 0.012"), or "p < 0.001" below that."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2g}"


def verdict(fixed: int, broken: int, p: float, alpha: float = 0.05) -> str:
    """Plain words for a McNemar result: "better, p = 0.004", "worse, p = 0.012", "no significant change (p = 0.41)".

    Significant means p < alpha; the direction comes from which of fixed/broken is larger.
    """
    if fixed + broken == 0:
        return "no change (identical answers)"
    if p < alpha and fixed != broken:
        return f"{'better' if fixed > broken else 'worse'}, {format_p(p)}"
    return f"no significant change ({format_p(p)})"


# --- proportions ---------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); (0.0, 1.0) when n = 0.

    Unlike the normal ("Wald") interval it behaves at 0/n and n/n and with small n, which is our usual case.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends at 0/n and n/n despite rounding
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


# --- calibration ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    mean_score: float | None  # None for an empty bin
    accuracy: float | None  # None for an empty bin


@dataclass(frozen=True)
class Calibration:
    ece: float | None  # None when there are no scores
    bins: list[CalibrationBin]


def _bin_index(score: float, bins: int) -> int:
    """The bin [i/bins, (i+1)/bins) holding `score`, consistent with the reported edges; 1.0 goes in the last."""
    i = min(int(score * bins), bins - 1)
    while i > 0 and score < i / bins:  # guard against float rounding in score * bins
        i -= 1
    while i < bins - 1 and score >= (i + 1) / bins:
        i += 1
    return i


def calibration(scores: Sequence[float], correct: Sequence[bool], bins: int = 10) -> Calibration:
    """Expected calibration error over `bins` equal-width bins on [0, 1], with every bin listed.

    A well-calibrated router that says 0.8 is right 80% of the time; ECE is the call-weighted mean gap
    |accuracy - mean score| over non-empty bins, so thresholds chosen on the score mean what they say.
    """
    if len(scores) != len(correct):
        raise ValueError(f"scores and correct differ in length: {len(scores)} != {len(correct)}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    counts = [0] * bins
    score_sums = [0.0] * bins
    right = [0] * bins
    for score, ok in zip(scores, correct, strict=True):
        if not 0.0 <= score <= 1.0:  # also rejects NaN
            raise ValueError(f"scores must lie in [0, 1], got {score}")
        i = _bin_index(score, bins)
        counts[i] += 1
        score_sums[i] += score
        right[i] += bool(ok)
    total = len(scores)
    rows: list[CalibrationBin] = []
    ece = 0.0
    for i in range(bins):
        count = counts[i]
        mean_score = score_sums[i] / count if count else None
        accuracy = right[i] / count if count else None
        if mean_score is not None and accuracy is not None:
            ece += count / total * abs(accuracy - mean_score)
        rows.append(CalibrationBin(low=i / bins, high=(i + 1) / bins, count=count, mean_score=mean_score,
                                   accuracy=accuracy))
    return Calibration(ece=ece if total else None, bins=rows)


# --- thresholds ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredCall:
    """One labelled call: the router's best id before any threshold (may be "none"), its score, and the label."""

    candidate: str
    score: float | None
    expected: str


@dataclass(frozen=True)
class SweepRow:
    """The outcome of answering only calls with candidate != "none" and score >= threshold."""

    threshold: float
    answered: float  # share of scored calls answered
    answered_count: int
    answered_correct: int  # answered calls whose candidate == expected
    accuracy_answered: float | None  # candidate == expected among answered calls; None if none answered
    accuracy: float  # over all scored calls; an unanswered call is right iff expected == "none"
    none_precision: float | None  # of calls predicted "none", share expected "none"; None if none predicted
    none_recall: float | None  # of calls expected "none", share predicted "none"; None if none expected


@dataclass(frozen=True)
class Sweep:
    """Rows in ascending threshold order (empty when no call has a score).

    `scored` = calls in every row's denominator; `skipped` = calls left out because they have no score.
    """

    rows: list[SweepRow]
    scored: int
    skipped: int


def _split(calls: Iterable[ScoredCall]) -> tuple[list[tuple[ScoredCall, float]], int]:
    """Calls that can be thresholded (with their score), and how many cannot (score None or NaN)."""
    scored: list[tuple[ScoredCall, float]] = []
    skipped = 0
    for call in calls:
        if call.score is None or math.isnan(call.score):
            skipped += 1
        else:
            scored.append((call, call.score))
    return scored, skipped


def _row(scored: list[tuple[ScoredCall, float]], threshold: float) -> SweepRow:
    answered = answered_right = right = predicted_none = expected_none = none_right = 0
    for call, score in scored:
        is_answered = call.candidate != NONE and score >= threshold
        prediction = call.candidate if is_answered else NONE
        ok = prediction == call.expected
        right += ok
        if is_answered:
            answered += 1
            answered_right += ok
        else:
            predicted_none += 1
        if call.expected == NONE:
            expected_none += 1
            none_right += prediction == NONE
    n = len(scored)
    return SweepRow(
        threshold=threshold,
        answered=answered / n,
        answered_count=answered,
        answered_correct=answered_right,
        accuracy_answered=answered_right / answered if answered else None,
        accuracy=right / n,
        none_precision=none_right / predicted_none if predicted_none else None,
        none_recall=none_right / expected_none if expected_none else None,
    )


def threshold_sweep(calls: Iterable[ScoredCall], thresholds: Sequence[float] | None = None) -> Sweep:
    """Accuracy, coverage and "none" precision/recall at each threshold (default 0.00, 0.05, ..., 1.00).

    Thresholds are de-duplicated and sorted ascending. Calls whose score is None (or NaN) cannot be thresholded:
    they are left out of every row and counted in `skipped`.
    """
    scored, skipped = _split(calls)
    ts = sorted(set(DEFAULT_THRESHOLDS if thresholds is None else thresholds))
    if not ts:
        raise ValueError("need at least one threshold")
    rows = [_row(scored, t) for t in ts] if scored else []
    return Sweep(rows=rows, scored=len(scored), skipped=skipped)


@dataclass(frozen=True)
class Fit:
    """A chosen threshold (None if none qualifies), its outcome, why it was chosen, and any small-data warning."""

    threshold: float | None
    accuracy: float | None
    answered: float | None
    accuracy_answered: float | None
    reason: str
    warning: str | None


def _pct(x: float) -> str:
    """0.95 -> "95%", 0.8235 -> "82.4%"."""
    return f"{x * 100:.1f}".removesuffix(".0") + "%"


def fit_threshold(calls: Iterable[ScoredCall], target_precision: float | None = None,
                  thresholds: Sequence[float] | None = None) -> Fit:
    """Choose a score threshold from labelled calls, and say when the data is too thin to trust it.

    Without a target: the threshold with the highest overall accuracy (ties: the lowest, which answers most).
    With `target_precision` P: the lowest threshold whose accuracy on answered calls is >= P, i.e. the one
    answering the most calls while meeting P; threshold None if no threshold reaches P.
    Warns with fewer than 50 scored calls, fewer than 10 answered calls at the choice, or (with a target) when
    the 95% Wilson lower bound of the answered-call precision falls below P.
    """
    if target_precision is not None and not 0.0 <= target_precision <= 1.0:
        raise ValueError(f"target_precision must lie in [0, 1], got {target_precision}")
    sweep = threshold_sweep(calls, thresholds)
    if not sweep.scored:
        what = f"all {sweep.skipped} calls lack a score" if sweep.skipped else "no calls"
        return Fit(None, None, None, None, reason=f"no scored calls to fit on ({what})",
                   warning="no scored calls: nothing to fit")
    warnings: list[str] = []
    if sweep.scored < MIN_SCORED:
        warnings.append(f"only {sweep.scored} scored calls (fewer than {MIN_SCORED}): the threshold is a rough guide")

    if target_precision is None:
        chosen = max(sweep.rows, key=lambda r: (r.accuracy, -r.threshold))
        reason = "maximises accuracy"
    else:
        answering = [(r, r.accuracy_answered) for r in sweep.rows if r.accuracy_answered is not None]
        reaching = [r for r, precision in answering if precision >= target_precision]
        if not reaching:
            if answering:
                best, top = max(answering, key=lambda rp: (rp[1], -rp[0].threshold))
                reason = (f"no threshold reaches {_pct(target_precision)} precision on answered calls; the best is "
                          f"{_pct(top)} at threshold {best.threshold:g} ({best.answered_count} calls answered)")
            else:
                reason = f"no threshold reaches {_pct(target_precision)} precision: no threshold answers any call"
            return Fit(None, None, None, None, reason=reason, warning="; ".join(warnings) or None)
        chosen = max(reaching, key=lambda r: (r.answered_count, -r.threshold))
        reason = (f"the lowest threshold reaching {_pct(target_precision)} precision on answered calls, "
                  f"answering {_pct(chosen.answered)} of calls")

    if chosen.answered_count < MIN_ANSWERED:
        warnings.append(f"only {chosen.answered_count} calls answered at threshold {chosen.threshold:g} "
                        f"(fewer than {MIN_ANSWERED})")
    if target_precision is not None and chosen.accuracy_answered is not None:
        right = chosen.answered_correct
        low, _ = wilson_interval(right, chosen.answered_count)
        if low < target_precision:
            warnings.append(f"precision on answered calls is {right}/{chosen.answered_count} = "
                            f"{_pct(chosen.accuracy_answered)}, but its 95% Wilson lower bound {_pct(low)} is below "
                            f"the {_pct(target_precision)} target")
    return Fit(threshold=chosen.threshold, accuracy=chosen.accuracy, answered=chosen.answered,
               accuracy_answered=chosen.accuracy_answered, reason=reason, warning="; ".join(warnings) or None)

