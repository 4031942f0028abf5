"""Scoring one combination's calls by what the caller got (the answered destination: business hours, earlier
failed transfers, the fallback and a low confidence included), with the router's own pick scored beside it:
accuracy with its 95% (Wilson) interval, macro-F1, per-destination precision,
recall and F1, the confusion matrix (with none and error), errors, latency, tokens and cost, and for a router that
gives scores, calibration and the threshold sweep. The result is typed (app/evaluation/results.py)."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from app.catalogue.destinations import NONE
from app.evaluation import statistics as stats
from app.evaluation.errors import EvaluationError
from app.evaluation.results import (
    ERROR,
    CallResult,
    ClassScore,
    Latency,
    Metrics,
    NoneAnswers,
    Scores,
    TagScore,
    Tokens,
)

# USD per million tokens: input, output, cached input. Override or add with --prices FILE.
PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4.1-mini": (0.40, 1.60, 0.10), "gpt-4.1-nano": (0.10, 0.40, 0.025), "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4o-mini": (0.15, 0.60, 0.075), "gpt-4o": (2.50, 10.00, 1.25), "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5-nano": (0.05, 0.40, 0.005),
}
PRICES_SHAPE = ('like {"gpt-4.1-mini": [0.40, 1.60, 0.10]} (USD per million input, output and cached input '
                "tokens)")


def read_prices(path: Path) -> dict[str, tuple[float, ...]]:
    """{"model": [input, output] or [input, output, cached input]} in USD per million tokens; EvaluationError
    saying what is wrong otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: must be a JSON object {PRICES_SHAPE}")
    out: dict[str, tuple[float, ...]] = {}
    for model, price in data.items():
        ok = isinstance(price, list) and len(price) in (2, 3) and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in price)
        if not ok:
            raise EvaluationError(f"{path}: {model!r}: {price!r} is not 2 or 3 non-negative numbers; write it "
                                  f"{PRICES_SHAPE}")
        out[model] = tuple(float(x) for x in price)
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _prf(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1; None where undefined (no predictions of the class, no support)."""
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f = 2 * p * r / (p + r) if p is not None and r is not None and p + r else (0.0 if p is not None and r is not None
                                                                              else None)
    return p, r, f


def cost(model: str | None, prompt: int, completion: int, cached: int,
         prices: dict[str, tuple[float, ...]] | None = None) -> float | None:
    price = (prices or PRICES).get(model or "")
    if not price:
        return None
    cached_price = price[2] if len(price) > 2 else price[0]
    return ((prompt - cached) * price[0] + cached * cached_price + completion * price[1]) / 1e6


def score(results: list[CallResult], labels: list[str], model: str | None,
          prices: dict[str, tuple[float, ...]] | None = None, *, threshold_setting: str | None = None,
          threshold: float | None = None) -> Metrics:
    """Accuracy of what was answered and of the router's pick (each with its 95% interval), macro-F1,
    per-destination P/R/F1 and the confusion matrix (with none and error) of what was answered, costs, and for a
    router that gives scores, calibration and a threshold sweep (over its candidates).

    `labels` are the catalogue ids; `none` is scored as a class of its own. Macro-F1 averages over the
    classes that occur in the expected labels or the predictions.
    """
    n = len(results)
    correct = sum(r.right for r in results)
    chosen_correct = sum(r.chosen_right for r in results)
    classes = [*labels, NONE]
    confusion: dict[str, dict[str, int]] = {e: dict.fromkeys([*classes, ERROR], 0) for e in classes}
    for r in results:
        confusion.setdefault(r.expected, dict.fromkeys([*classes, ERROR], 0))
        confusion[r.expected][r.got] = confusion[r.expected].get(r.got, 0) + 1
    per: dict[str, ClassScore] = {}
    for c in classes:
        tp = sum(1 for r in results if r.expected == c and r.got == c)
        fp = sum(1 for r in results if r.expected != c and r.got == c)
        fn = sum(1 for r in results if r.expected == c and r.got != c)
        per[c] = ClassScore(*_prf(tp, fp, fn), support=tp + fn, predicted=tp + fp)
    present = [c for c in classes if per[c].support or per[c].predicted]
    macro_f1 = sum(per[c].f1 or 0.0 for c in present) / len(present) if present else 0.0
    latencies = [r.latency_ms for r in results]
    tokens = Tokens(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results),
                    sum(r.cached_tokens for r in results))
    repeated = [r for r in results if r.runs]
    return Metrics(
        calls=n, correct=correct, accuracy=correct / n if n else 0.0, accuracy_ci=stats.wilson_interval(correct, n),
        macro_f1=macro_f1, per_destination=per, confusion=confusion, none_precision=per[NONE].precision,
        none_recall=per[NONE].recall,
        errors=sum(1 for r in results if r.failure is not None and r.failure != "low_confidence"),
        declined=sum(1 for r in results if r.failure == "low_confidence"),  # below SWITCHBOARD_MIN_CONFIDENCE
        timeouts=sum(1 for r in results if r.failure == "timeout"),
        outcomes=dict(Counter(r.outcome for r in results)),
        latency_ms=Latency(percentile(latencies, 0.5), percentile(latencies, 0.95), max(latencies, default=0.0)),
        tokens=tokens, cost_usd=cost(model, tokens.prompt, tokens.completion, tokens.cached, prices),
        cached_calls=sum(r.cached for r in results),
        consistency=(sum(len(set(r.runs)) == 1 for r in repeated) / len(repeated)) if repeated else None,
        by_tag=_by_tag(results), scores=_scores(results, threshold_setting, threshold),
        chosen_correct=chosen_correct, chosen_accuracy=chosen_correct / n if n else 0.0,
        chosen_accuracy_ci=stats.wilson_interval(chosen_correct, n), scored="answered")


def scored_calls(results: list[CallResult]) -> list[stats.ScoredCall]:
    return [stats.ScoredCall(r.candidate or r.predicted, r.score, r.expected) for r in results]


def _scores(results: list[CallResult], setting: str | None, current: float | None) -> Scores | None:
    """Calibration (is a score of 0.8 right 80% of the time?) and the threshold sweep, for routers that give
    scores. The candidate is judged: the router's best id before its threshold, `none` included."""
    with_score = [r for r in results if r.score is not None and r.score == r.score]
    if not with_score:
        return None
    calibration = stats.calibration([float(r.score) for r in with_score if r.score is not None],
                                    [(r.candidate or r.predicted) == r.expected for r in with_score])
    sweep = stats.threshold_sweep(scored_calls(results))
    nones = [r for r in with_score if (r.candidate or r.predicted) == NONE]
    return Scores(setting, current, len(with_score), calibration, sweep,
                  NoneAnswers(len(nones), sum(r.expected == NONE for r in nones),
                              sum(float(r.score or 0) for r in nones) / len(nones) if nones else None))


def _by_tag(results: list[CallResult]) -> dict[str, TagScore]:
    groups: dict[str, list[CallResult]] = defaultdict(list)
    for r in results:
        for tag in r.tags:
            groups[tag].append(r)
    out: dict[str, TagScore] = {}
    for tag, rs in sorted(groups.items()):
        right = sum(r.right for r in rs)
        out[tag] = TagScore(len(rs), right / len(rs), stats.wilson_interval(right, len(rs)))
    return out
