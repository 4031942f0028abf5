"""Evaluation: run labelled recorded calls through the same decision code as the service, and score it.

Datasets are streamed (a JSONL file, or a directory of .json files), so memory stays flat; each call
keeps only a small result record. Each call is decided at its own recorded timestamp (business hours), and
its payload may be a transfer- or a handoff-destination-request.

With 30 to 100 labelled calls most differences between two prompts are noise, so the scores say how sure
they are: accuracy with its 95% (Wilson) interval, and paired comparisons (calls fixed and broken, the exact
McNemar p-value) against a baseline and between the combinations of one run (app/evaluation/statistics.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app import files
from app.catalogue.destinations import NONE
from app.engine import Engine
from app.evaluation import statistics as stats
from app.vapi.conversation import NoConversation
from app.vapi.messages import PayloadError, parse_json, parse_request

ERROR = "error"  # predicted when no destination could be decided at all
# USD per million tokens: input, output, cached input. Override or add with --prices FILE.
PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4.1-mini": (0.40, 1.60, 0.10), "gpt-4.1-nano": (0.10, 0.40, 0.025), "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4o-mini": (0.15, 0.60, 0.075), "gpt-4o": (2.50, 10.00, 1.25), "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5-nano": (0.05, 0.40, 0.005),
}
EXCERPT_CHARS = 160


class DatasetError(Exception):
    """A dataset cannot be used; the message names the file and line, and the fix."""


class Case(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    expected: str | None = None
    tags: list[str] = Field(default_factory=list)
    payload: dict[str, Any]


def iter_cases(paths: list[Path], warn: Callable[[str], None] | None = None) -> Iterator[tuple[str, Case]]:
    """(where, case) for every call in the files or directories, in order, one at a time. Only regular files
    are read, a line (or .json file) of at most files.DATASET_LINE_BYTES; a last line that was cut off (a
    recording's write that did not finish) is skipped, and `warn` is told."""
    for path in paths:
        try:
            if path.is_dir():
                for file in sorted(path.glob("*.json")):
                    yield from _parse(str(file), _decode(file, files.read_regular(file, files.DATASET_LINE_BYTES)))
            elif path.exists():
                for n, line, complete in files.lines(path, files.DATASET_LINE_BYTES):
                    try:
                        yield from _parse(f"{path}:{n}", line)
                    except DatasetError:
                        if complete or _is_json(line):
                            raise
                        if warn is not None:
                            warn(f"{path}:{n}: skipped: the last line is cut off (a write that did not finish)")
            else:
                raise DatasetError(f"{path}: no such file or directory")
        except files.FileProblem as exc:
            raise DatasetError(f"{exc}; a dataset is a JSON Lines file, one call per line (or a directory of .json "
                               "files, one call each)") from None
        except OSError as exc:
            raise DatasetError(f"{exc.filename or path}: cannot read: {exc.strerror or exc}") from None


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise files.FileProblem(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None


def _is_json(text: str) -> bool:
    try:
        pydantic_core.from_json(text)
    except ValueError:
        return False
    return True


def _parse(where: str, text: str) -> Iterator[tuple[str, Case]]:
    try:
        yield where, Case.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        if not loc and err["type"] == "model_type":  # valid JSON, but an array, a number or a string
            raise DatasetError(f"{where}: a call must be a JSON object {{\"id\", \"expected\", \"payload\", ...}}, "
                               f"got {_json_type(err.get('input'))}; fix or remove it") from None
        raise DatasetError(f"{where}: {loc or 'line'}: {err['msg']}") from None


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "true or false", type(None): "null"}.get(type(value), "a number")


def check_dataset(paths: list[Path], ids: tuple[str, ...], warn: Callable[[str], None] | None = None) -> int:
    """Refuse, before any call is decided, labels that are no catalogue id (they were silently counted as
    wrong) and ids used twice (paired comparisons match calls by id). Returns the labelled calls' count."""
    known = {*ids, NONE}
    seen: dict[str, str] = {}
    twice: list[str] = []
    labelled = 0
    for where, case in iter_cases(paths, warn):
        if case.id in seen:
            twice.append(f"{case.id!r} ({seen[case.id]} and {where})")
        seen[case.id] = where
        if not case.expected:
            continue
        labelled += 1
        if case.expected not in known:
            raise DatasetError(f"{where}: expected: {case.expected!r} is not a destination id of this catalogue "
                               f"nor 'none' (ids: {', '.join(sorted(known))}); fix the label or the catalogue")
    if twice:
        raise DatasetError(f"call ids used twice: {'; '.join(twice[:5])}{' ...' if len(twice) > 5 else ''}; ids "
                           "must be unique (paired comparisons match calls by id)")
    if labelled == 0:
        raise DatasetError("no labelled calls in the dataset(s): label them first (switchboard label FILE)")
    return labelled


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
    answered: str | None = None  # what the caller would have been sent to (hours, fallback and all)
    excerpt: str = ""  # the caller's last words, for reading a wrong call


async def evaluate(engines: list[Engine], paths: list[Path], *, concurrency: int = 8,
                   progress: Callable[[int], None] | None = None) -> list[CallResult]:
    """Decide every labelled call once per engine (one engine per `--repeat`), at most `concurrency` calls at
    once; unlabelled calls are skipped. Results come back in the dataset's order."""
    queue: asyncio.Queue[tuple[int, Case] | None] = asyncio.Queue(maxsize=concurrency * 2)
    results: dict[int, CallResult] = {}

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            index, case = item
            runs = [await decide_case(engine, case) for engine in engines]
            first = runs[0]
            first.runs = [r.predicted for r in runs] if len(runs) > 1 else []
            results[index] = first
            if progress:
                progress(len(results))

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for index, (_, case) in enumerate(iter_cases(paths)):
            if case.expected:
                await queue.put((index, case))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return [results[i] for i in sorted(results)]


async def decide_case(engine: Engine, case: Case) -> CallResult:
    started = time.monotonic()
    expected = str(case.expected)
    try:
        request = parse_request(parse_json(json.dumps(case.payload).encode()))
        query = engine.query(request)
    except (PayloadError, NoConversation) as exc:
        return CallResult(case.id, expected, ERROR, f"bad_payload: {exc}"[:80], 0.0, tags=case.tags)
    decision = await engine.decider.decide(query, started)
    # What was decided, a rescue included; a model that was not sure enough declined: none.
    predicted = decision.chosen or (NONE if decision.failure == "low_confidence" else ERROR)
    callers = [t.text for t in query.conversation.turns if t.speaker == "caller"][-2:]
    excerpt = " / ".join(callers)
    return CallResult(case.id, expected, predicted, decision.outcome, decision.total_ms, decision.prompt_tokens,
                      decision.completion_tokens, decision.cached_tokens, cached=decision.cached,
                      failure=decision.failure, tags=case.tags, score=decision.score,
                      candidate=decision.candidate, answered=decision.answered,
                      excerpt=excerpt if len(excerpt) <= EXCERPT_CHARS else "..." + excerpt[-EXCERPT_CHARS:])


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
          threshold: float | None = None) -> dict[str, Any]:
    """Accuracy (with its 95% interval), macro-F1, per-destination P/R/F1, the confusion matrix (with none and
    error), costs, and for a router that gives scores, calibration and a threshold sweep.

    `labels` are the catalogue ids; `none` is scored as a class of its own. Macro-F1 averages over the
    classes that occur in the expected labels or the predictions.
    """
    n = len(results)
    correct = sum(r.predicted == r.expected for r in results)
    classes = [*labels, NONE]
    confusion: dict[str, dict[str, int]] = {e: dict.fromkeys([*classes, ERROR], 0) for e in classes}
    for r in results:
        confusion.setdefault(r.expected, dict.fromkeys([*classes, ERROR], 0))
        confusion[r.expected][r.predicted] = confusion[r.expected].get(r.predicted, 0) + 1
    per: dict[str, dict[str, Any]] = {}
    for c in classes:
        tp = sum(1 for r in results if r.expected == c and r.predicted == c)
        fp = sum(1 for r in results if r.expected != c and r.predicted == c)
        fn = sum(1 for r in results if r.expected == c and r.predicted != c)
        p, rec, f = _prf(tp, fp, fn)
        per[c] = {"precision": p, "recall": rec, "f1": f, "support": tp + fn, "predicted": tp + fp}
    present = [c for c in classes if per[c]["support"] or per[c]["predicted"]]
    macro_f1 = sum(per[c]["f1"] or 0.0 for c in present) / len(present) if present else 0.0
    latencies = [r.latency_ms for r in results]
    tokens = {"prompt": sum(r.prompt_tokens for r in results), "completion": sum(r.completion_tokens for r in results),
              "cached": sum(r.cached_tokens for r in results)}
    repeated = [r for r in results if r.runs]
    low, high = stats.wilson_interval(correct, n)
    return {
        "calls": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci": [low, high],
        "macro_f1": macro_f1,
        "per_destination": per,
        "confusion": confusion,
        "none_precision": per[NONE]["precision"],
        "none_recall": per[NONE]["recall"],
        "errors": sum(1 for r in results if r.failure is not None and r.failure != "low_confidence"),
        "declined": sum(1 for r in results if r.failure == "low_confidence"),  # below SWITCHBOARD_MIN_CONFIDENCE
        "timeouts": sum(1 for r in results if r.failure == "timeout"),
        "outcomes": dict(Counter(r.outcome for r in results)),
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                       "max": max(latencies, default=0.0)},
        "tokens": tokens,
        "cost_usd": cost(model, tokens["prompt"], tokens["completion"], tokens["cached"], prices),
        "cached_calls": sum(r.cached for r in results),
        "consistency": (sum(len(set(r.runs)) == 1 for r in repeated) / len(repeated)) if repeated else None,
        "by_tag": _by_tag(results),
        "scores": _scores(results, threshold_setting, threshold),
    }


def scored_calls(results: list[CallResult]) -> list[stats.ScoredCall]:
    return [stats.ScoredCall(r.candidate or r.predicted, r.score, r.expected) for r in results]


def _scores(results: list[CallResult], setting: str | None, current: float | None) -> dict[str, Any] | None:
    """Calibration (is a score of 0.8 right 80% of the time?) and the threshold sweep, for routers that give
    scores. The candidate is judged: the router's best id before its threshold, `none` included."""
    with_score = [r for r in results if r.score is not None and r.score == r.score]
    if not with_score:
        return None
    calibration = stats.calibration([float(r.score) for r in with_score if r.score is not None],
                                    [(r.candidate or r.predicted) == r.expected for r in with_score])
    sweep = stats.threshold_sweep(scored_calls(results))
    nones = [r for r in with_score if (r.candidate or r.predicted) == NONE]
    return {"setting": setting, "current": current, "scored": len(with_score), "calibration": calibration,
            "sweep": dataclasses.asdict(sweep),
            "none_answers": {"count": len(nones), "correct": sum(r.expected == NONE for r in nones),
                             "mean_score": sum(float(r.score or 0) for r in nones) / len(nones) if nones else None}}


def _by_tag(results: list[CallResult]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[CallResult]] = defaultdict(list)
    for r in results:
        for tag in r.tags:
            groups[tag].append(r)
    out: dict[str, dict[str, Any]] = {}
    for tag, rs in sorted(groups.items()):
        right = sum(r.predicted == r.expected for r in rs)
        out[tag] = {"calls": len(rs), "accuracy": right / len(rs), "accuracy_ci": list(stats.wilson_interval(right,
                                                                                                         len(rs)))}
    return out


def compare(calls: list[dict[str, Any]], reference: list[dict[str, Any]], against: str) -> dict[str, Any]:
    """Paired by call id: the calls this run fixed and broke against `reference`, and whether that is more
    than chance (exact McNemar)."""
    before = {c["id"]: c["predicted"] == c["expected"] for c in reference}
    pairs = [(before[c["id"]], c["predicted"] == c["expected"]) for c in calls if c["id"] in before]
    fixed = sum(1 for was, now in pairs if now and not was)
    broken = sum(1 for was, now in pairs if was and not now)
    p = stats.mcnemar_exact(fixed, broken)
    return {"against": against, "paired_calls": len(pairs), "fixed": fixed, "broken": broken, "p_value": p,
            "verdict": stats.verdict(fixed, broken, p)}


def result_rows(results: list[CallResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
