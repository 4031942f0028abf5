"""What one evaluation produces, typed: per combination its metrics (accuracy with its interval, per-destination
precision and recall, the confusion matrix, calibration and the threshold sweep, costs, latency), every call's
result, its comparisons and threshold fit; and the run that holds the combinations.

Evaluation builds these and every report reads them by attribute. `RunResult.to_json()` writes results.json and
`RunResult.from_json()` reads it back (for --baseline), in exactly the format earlier versions wrote: the same keys in
the same order, and the same keys left out when there is nothing to say (a combination's `vs_best`, `vs_baseline`
and `fit`; a comparison's `paired_calls`), so a file read and written again is the same bytes.

What is scored is what the caller got: a call is right when the destination it was answered with (after
business hours, earlier failed transfers, the fallback and a low confidence) is its label (`CallResult.right`);
`accuracy`, `correct`, the per-destination scores, the confusion matrix, accuracy by tag and the paired comparisons
all count that. The router's own pick is scored beside it (`chosen_accuracy`, `CallResult.chosen_right`), and
`metrics.scored` says "answered". A results.json from before scored the router's pick in `accuracy` and has no
`scored`; its calls' `answered` is null where nothing was transferred, and is read as the pick then.

A results.json from an earlier version lacks some fields (`accuracy_ci`, `correct`, `scores`, `chosen_accuracy`,
...): they read as absent (None) or empty, so it still serves as a baseline. Only what a baseline comparison needs
is required: each combination's `name` and `metrics.accuracy`, and for each call its `id`, `expected` and
`predicted`. A value of the wrong type is refused with where it is. Values are never converted, so what is read is
written back as it was.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.evaluation import statistics as stats
from app.evaluation.errors import EvaluationError
from app.evaluation.fields import JsonFields
from app.evaluation.statistics import NONE

ERROR = "error"  # predicted when no destination could be decided at all
NO_SCORES = "this router gave no scores (an LLM server without log-probabilities)"
FIX = "give the results.json an earlier `switchboard eval -o DIR` wrote"


@dataclass(slots=True)
class CallResult:
    id: str
    expected: str
    predicted: str  # the router's answer: an id, "none", or "error"
    outcome: str
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cached: bool = False
    failure: str | None = None
    tags: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # every repeat's prediction, with --repeat
    score: float | None = None  # the router's confidence, when it gives one
    candidate: str | None = None  # its best id before any threshold (for calibration and the sweep)
    # What the caller got: the id whose destination was answered (hours, failed transfers, fallback and all),
    # "none" when nothing was transferred, "error" when no answer could be decided. None: an older results.json.
    answered: str | None = None
    excerpt: str = ""  # the caller's last words, for reading a wrong call
    # The catalogue's fallback answered because nothing matched, the router declined or it failed: what every
    # call that fits no entry gets, so it is what a `none` label asks for.
    by_fallback: bool = False

    @property
    def got(self) -> str:
        """What the caller got, in the label's terms: the id answered, "none" (no transfer, or the fallback
        taking a call labelled none) or "error"; a call from an older results.json without it: the router's pick."""
        got = self.answered or self.predicted
        return NONE if self.by_fallback and self.expected == NONE else got

    @property
    def right(self) -> bool:
        """The caller ended up where the label says: what evaluation scores."""
        return self.got == self.expected

    @property
    def chosen_right(self) -> bool:
        """The router's own pick was the label (before hours, failed transfers and the fallback)."""
        return self.predicted == self.expected


@dataclass
class ClassScore:
    """One destination (or `none`) as a class: precision, recall and F1 (None where undefined), its calls."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int  # calls expected to go there
    predicted: int | None  # calls sent there (None: a results.json from before it was recorded)


@dataclass
class Latency:
    p50: float
    p95: float
    max: float


@dataclass
class Tokens:
    prompt: int
    completion: int
    cached: int = 0


@dataclass
class TagScore:
    calls: int
    accuracy: float
    accuracy_ci: tuple[float, float] | None  # 95% Wilson interval


@dataclass
class NoneAnswers:
    """The router's own "none" answers: how many, how many rightly, their mean score."""

    count: int
    correct: int
    mean_score: float | None


@dataclass
class Scores:
    """For a router that gives scores: calibration and the threshold sweep over its candidates."""

    setting: str | None  # the setting that holds its threshold, e.g. SWITCHBOARD_OFFLINE_THRESHOLD
    current: float | None  # that setting's value in this run
    scored: int
    calibration: stats.Calibration
    sweep: stats.Sweep
    none_answers: NoneAnswers


@dataclass
class Metrics:
    calls: int
    correct: int | None  # calls answered where the label says (older results.json: the router's pick)
    accuracy: float
    accuracy_ci: tuple[float, float] | None  # 95% Wilson interval
    macro_f1: float
    per_destination: dict[str, ClassScore]
    confusion: dict[str, dict[str, int]]  # expected -> chosen -> calls
    none_precision: float | None
    none_recall: float | None
    errors: int
    declined: int  # below SWITCHBOARD_MIN_CONFIDENCE
    timeouts: int
    outcomes: dict[str, int]
    latency_ms: Latency
    tokens: Tokens
    cost_usd: float | None
    cached_calls: int
    consistency: float | None  # with --repeat: share of calls answered the same every time
    by_tag: dict[str, TagScore]
    scores: Scores | None
    seconds: float | None = None  # how long the combination took
    # The router's own pick, scored beside what was answered (None: a results.json from before).
    chosen_correct: int | None = None
    chosen_accuracy: float | None = None
    chosen_accuracy_ci: tuple[float, float] | None = None
    scored: str | None = None  # "answered": accuracy scores what the caller got (None: older, the router's pick)


@dataclass
class Comparison:
    """Calls fixed and broken against another combination, paired by call id, with the exact McNemar p-value.
    `fixed`, `broken` and `p_value` are None when the other side has no per-call results to pair."""

    against: str
    fixed: int | None
    broken: int | None
    p_value: float | None
    verdict: str
    paired_calls: int | None = None


@dataclass
class ThresholdFit:
    """--fit-threshold's answer: the setting line to use (or None), why, and any small-data warning."""

    recommendation: str | None
    reason: str | None
    warning: str | None
    threshold: float | None = None
    accuracy: float | None = None
    answered: float | None = None
    accuracy_answered: float | None = None
    setting: str | None = None
    fitted: bool = False  # False: the router gave no scores, nothing was fitted (and only the first three are written)


@dataclass
class CombinationResult:
    """One router, prompt and model on every labelled call."""

    name: str
    router: str
    model: str | None
    prompt: str | None
    prompt_hash: str | None
    metrics: Metrics
    calls: list[CallResult]
    vs_best: Comparison | None = None  # None for the run's best
    vs_baseline: Comparison | None = None  # None without --baseline
    fit: ThresholdFit | None = None  # None without --fit-threshold

    def wrong_calls(self) -> list[CallResult]:
        return [c for c in self.calls if not c.right]


@dataclass
class RunResult:
    created: str
    datasets: list[str]
    combinations: list[CombinationResult]
    best: str | None  # the best combination's name (None: a baseline from before it was recorded)

    def best_index(self) -> int:
        return best_index(self.combinations)

    def reference_for(self, name: str) -> CombinationResult:
        """This run as a baseline: what the combination `name` is compared with, the combination of the same name,
        else this run's best, else its first."""
        by_name = {c.name: c for c in self.combinations}
        return by_name.get(name) or by_name.get(self.best or "") or self.combinations[0]

    def to_json(self) -> str:
        """The text of results.json."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"not JSON ({exc.msg}, line {exc.lineno})") from None
        except RecursionError:
            raise EvaluationError("not JSON (nested too deeply)") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, "datasets": list(self.datasets),
                "combinations": [_combination_dict(c) for c in self.combinations], "best": self.best}

    @classmethod
    def from_dict(cls, data: object) -> RunResult:
        doc = JsonFields(data, "")
        combinations = [_read_combination(f) for f in doc.each("combinations")]
        if not combinations:
            raise EvaluationError("no combinations in it")
        return cls(doc.text("created", ""), doc.texts("datasets"), combinations, doc.maybe_text("best"))


def best_index(combinations: Sequence[CombinationResult]) -> int:
    """The best combination: the highest accuracy, then macro-F1."""
    return max(range(len(combinations)),
               key=lambda i: (combinations[i].metrics.accuracy, combinations[i].metrics.macro_f1))


def read_results(path: Path) -> RunResult:
    """A results.json an earlier `switchboard eval -o DIR` wrote; EvaluationError saying what is wrong otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read it ({exc})") from None
    try:
        return RunResult.from_json(text)
    except EvaluationError as exc:
        raise EvaluationError(f"{path}: {exc}; {FIX}") from None


# --- writing -------------------------------------------------------------------------------------------------


def _combination_dict(c: CombinationResult) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "router": c.router, "model": c.model, "prompt": c.prompt,
                           "prompt_hash": c.prompt_hash, "metrics": _metrics_dict(c.metrics),
                           "calls": [_call_dict(r) for r in c.calls]}
    if c.vs_best is not None:
        out["vs_best"] = _comparison_dict(c.vs_best)
    if c.vs_baseline is not None:
        out["vs_baseline"] = _comparison_dict(c.vs_baseline)
    if c.fit is not None:
        out["fit"] = _fit_dict(c.fit)
    return out


def _call_dict(r: CallResult) -> dict[str, Any]:
    out = dataclasses.asdict(r)
    if not r.by_fallback:  # said only when true: a file from before has no such key, and reads back the same
        del out["by_fallback"]
    return out


def _metrics_dict(m: Metrics) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": m.calls}
    if m.correct is not None:
        out["correct"] = m.correct
    out["accuracy"] = m.accuracy
    if m.accuracy_ci is not None:
        out["accuracy_ci"] = list(m.accuracy_ci)
    if m.scored is not None:
        out["scored"] = m.scored
    if m.chosen_correct is not None:
        out["chosen_correct"] = m.chosen_correct
    if m.chosen_accuracy is not None:
        out["chosen_accuracy"] = m.chosen_accuracy
    if m.chosen_accuracy_ci is not None:
        out["chosen_accuracy_ci"] = list(m.chosen_accuracy_ci)
    out.update({
        "macro_f1": m.macro_f1,
        "per_destination": {d: _class_dict(v) for d, v in m.per_destination.items()},
        "confusion": {e: dict(row) for e, row in m.confusion.items()},
        "none_precision": m.none_precision, "none_recall": m.none_recall, "errors": m.errors,
        "declined": m.declined, "timeouts": m.timeouts, "outcomes": dict(m.outcomes),
        "latency_ms": dataclasses.asdict(m.latency_ms), "tokens": dataclasses.asdict(m.tokens),
        "cost_usd": m.cost_usd, "cached_calls": m.cached_calls, "consistency": m.consistency,
        "by_tag": {t: _tag_dict(v) for t, v in m.by_tag.items()},
        "scores": None if m.scores is None else _scores_dict(m.scores),
    })
    if m.seconds is not None:
        out["seconds"] = m.seconds
    return out


def _class_dict(v: ClassScore) -> dict[str, Any]:
    out: dict[str, Any] = {"precision": v.precision, "recall": v.recall, "f1": v.f1, "support": v.support}
    if v.predicted is not None:
        out["predicted"] = v.predicted
    return out


def _tag_dict(v: TagScore) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": v.calls, "accuracy": v.accuracy}
    if v.accuracy_ci is not None:
        out["accuracy_ci"] = list(v.accuracy_ci)
    return out


def _scores_dict(s: Scores) -> dict[str, Any]:
    return {"setting": s.setting, "current": s.current, "scored": s.scored,
            "calibration": dataclasses.asdict(s.calibration), "sweep": dataclasses.asdict(s.sweep),
            "none_answers": dataclasses.asdict(s.none_answers)}


def _comparison_dict(c: Comparison) -> dict[str, Any]:
    out: dict[str, Any] = {"against": c.against}
    if c.paired_calls is not None:
        out["paired_calls"] = c.paired_calls
    out.update({"fixed": c.fixed, "broken": c.broken, "p_value": c.p_value, "verdict": c.verdict})
    return out


def _fit_dict(f: ThresholdFit) -> dict[str, Any]:
    if not f.fitted:
        return {"recommendation": f.recommendation, "reason": f.reason, "warning": f.warning}
    return {"threshold": f.threshold, "accuracy": f.accuracy, "answered": f.answered,
            "accuracy_answered": f.accuracy_answered, "reason": f.reason, "warning": f.warning,
            "setting": f.setting, "recommendation": f.recommendation}


# --- reading -------------------------------------------------------------------------------------------------


def _read_combination(f: JsonFields) -> CombinationResult:
    name = f.text("name")
    metrics = f.fields("metrics")
    if metrics is None:
        raise EvaluationError(f"{f.at('metrics')}: missing")
    comparisons = {key: None if (c := f.fields(key)) is None else _read_comparison(c)
                   for key in ("vs_best", "vs_baseline")}
    fit = f.fields("fit")
    return CombinationResult(name, f.text("router", ""), f.maybe_text("model"), f.maybe_text("prompt"),
                             f.maybe_text("prompt_hash"), _read_metrics(metrics),
                             [_read_call(c) for c in f.each_or_none("calls")], comparisons["vs_best"],
                             comparisons["vs_baseline"], None if fit is None else _read_fit(fit))


def _read_metrics(f: JsonFields) -> Metrics:
    latency, tokens, scores = f.fields("latency_ms"), f.fields("tokens"), f.fields("scores")
    return Metrics(
        calls=f.whole("calls", 0), correct=f.maybe_whole("correct"), accuracy=f.number("accuracy"),
        accuracy_ci=f.interval("accuracy_ci"), macro_f1=f.number("macro_f1", 0.0),
        per_destination={d: ClassScore(v.maybe_number("precision"), v.maybe_number("recall"), v.maybe_number("f1"),
                                       v.whole("support", 0), v.maybe_whole("predicted"))
                         for d, v in f.named("per_destination").items()},
        confusion={e: row.as_counts() for e, row in f.named("confusion").items()},
        none_precision=f.maybe_number("none_precision"), none_recall=f.maybe_number("none_recall"),
        errors=f.whole("errors", 0), declined=f.whole("declined", 0), timeouts=f.whole("timeouts", 0),
        outcomes=f.counts("outcomes"),
        latency_ms=Latency(0.0, 0.0, 0.0) if latency is None else Latency(
            latency.number("p50", 0.0), latency.number("p95", 0.0), latency.number("max", 0.0)),
        tokens=Tokens(0, 0) if tokens is None else Tokens(tokens.whole("prompt", 0), tokens.whole("completion", 0),
                                                          tokens.whole("cached", 0)),
        cost_usd=f.maybe_number("cost_usd"), cached_calls=f.whole("cached_calls", 0),
        consistency=f.maybe_number("consistency"),
        by_tag={t: TagScore(v.whole("calls", 0), v.number("accuracy", 0.0), v.interval("accuracy_ci"))
                for t, v in f.named("by_tag").items()},
        scores=None if scores is None else _read_scores(scores), seconds=f.maybe_number("seconds"),
        chosen_correct=f.maybe_whole("chosen_correct"), chosen_accuracy=f.maybe_number("chosen_accuracy"),
        chosen_accuracy_ci=f.interval("chosen_accuracy_ci"), scored=f.maybe_text("scored"))


def _read_scores(f: JsonFields) -> Scores:
    calibration, sweep, nones = f.fields("calibration"), f.fields("sweep"), f.fields("none_answers")
    bins = [] if calibration is None else [
        stats.CalibrationBin(b.number("low"), b.number("high"), b.whole("count"), b.maybe_number("mean_score"),
                             b.maybe_number("accuracy")) for b in calibration.each_or_none("bins")]
    rows = [] if sweep is None else [
        stats.SweepRow(r.number("threshold"), r.number("answered"), r.whole("answered_count"),
                       r.whole("answered_correct"), r.maybe_number("accuracy_answered"), r.number("accuracy"),
                       r.maybe_number("none_precision"), r.maybe_number("none_recall"))
        for r in sweep.each_or_none("rows")]
    return Scores(
        f.maybe_text("setting"), f.maybe_number("current"), f.whole("scored", 0),
        stats.Calibration(None if calibration is None else calibration.maybe_number("ece"), bins),
        stats.Sweep(rows, 0 if sweep is None else sweep.whole("scored", 0),
                    0 if sweep is None else sweep.whole("skipped", 0)),
        NoneAnswers(0, 0, None) if nones is None else NoneAnswers(nones.whole("count", 0), nones.whole("correct", 0),
                                                                  nones.maybe_number("mean_score")))


def _read_comparison(f: JsonFields) -> Comparison:
    return Comparison(f.text("against", ""), f.maybe_whole("fixed"), f.maybe_whole("broken"),
                      f.maybe_number("p_value"), f.text("verdict", ""), f.maybe_whole("paired_calls"))


def _read_fit(f: JsonFields) -> ThresholdFit:
    return ThresholdFit(f.maybe_text("recommendation"), f.maybe_text("reason"), f.maybe_text("warning"),
                        f.maybe_number("threshold"), f.maybe_number("accuracy"), f.maybe_number("answered"),
                        f.maybe_number("accuracy_answered"), f.maybe_text("setting"),
                        fitted="setting" in f.data or "threshold" in f.data)


def _read_call(f: JsonFields) -> CallResult:
    return CallResult(
        f.text("id"), f.text("expected"), f.text("predicted"), f.text("outcome", ""), f.number("latency_ms", 0.0),
        f.whole("prompt_tokens", 0), f.whole("completion_tokens", 0), f.whole("cached_tokens", 0),
        f.flag("cached", False), f.maybe_text("failure"), f.texts("tags"), f.texts("runs"), f.maybe_number("score"),
        f.maybe_text("candidate"), f.maybe_text("answered"), f.text("excerpt", ""), f.flag("by_fallback", False))
