"""Evaluation: run labelled recorded calls through the same decision code as the service, and score it.

Datasets are streamed (a JSONL file, or a directory of .json files), so memory stays flat; each call
keeps only a small result record.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .catalogue import NONE
from .conversation import NoConversation
from .engine import Engine
from .payload import PayloadError, parse_json, parse_request

ERROR = "error"  # predicted when no destination could be decided at all
# USD per million tokens (input, output); override with --prices FILE.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1-nano": (0.10, 0.40), "gpt-4.1": (2.00, 8.00),
    "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-5-mini": (0.25, 2.00), "gpt-5-nano": (0.05, 0.40),
}


class DatasetError(Exception):
    """A dataset line cannot be used; the message names the file and line."""


class Case(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    expected: str | None = None
    tags: list[str] = Field(default_factory=list)
    payload: dict[str, Any]


def iter_cases(paths: list[Path]) -> Iterator[tuple[str, Case]]:
    """(where, case) for every call in the files or directories, in order, one at a time."""
    for path in paths:
        if path.is_dir():
            for file in sorted(path.glob("*.json")):
                yield from _parse(str(file), file.read_text(encoding="utf-8"))
        elif path.exists():
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, start=1):
                    if line.strip():
                        yield from _parse(f"{path}:{n}", line)
        else:
            raise DatasetError(f"{path}: no such file or directory")


def _parse(where: str, text: str) -> Iterator[tuple[str, Case]]:
    try:
        yield where, Case.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "line"
        raise DatasetError(f"{where}: {loc}: {err['msg']}") from None


@dataclass(slots=True)
class CallResult:
    id: str
    expected: str
    predicted: str  # an id, "none", or "error"
    outcome: str
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    failure: str | None = None
    tags: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # every repeat's prediction, with --repeat


async def evaluate(engines: list[Engine], paths: list[Path], *, concurrency: int = 8,
                   progress: Callable[[int], None] | None = None) -> list[CallResult]:
    """Decide every labelled call once per engine (one engine per `--repeat`), at most `concurrency` calls at
    once; unlabelled calls are skipped."""
    queue: asyncio.Queue[Case | None] = asyncio.Queue(maxsize=concurrency * 2)
    results: list[CallResult] = []
    done = 0

    async def worker() -> None:
        nonlocal done
        while (case := await queue.get()) is not None:
            runs = [await decide_case(engine, case) for engine in engines]
            first = runs[0]
            first.runs = [r.predicted for r in runs] if len(runs) > 1 else []
            results.append(first)
            done += 1
            if progress:
                progress(done)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for _, case in iter_cases(paths):
            if case.expected:
                await queue.put(case)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return results


async def decide_case(engine: Engine, case: Case) -> CallResult:
    started = time.monotonic()
    expected = str(case.expected)
    try:
        request = parse_request(parse_json(json.dumps(case.payload).encode()))
        decision = await engine.decide(request, started)
    except (PayloadError, NoConversation) as exc:
        return CallResult(case.id, expected, ERROR, f"bad_payload: {exc}"[:80], 0.0, tags=case.tags)
    predicted = decision.chosen if decision.chosen is not None else ERROR
    return CallResult(case.id, expected, predicted, decision.outcome, decision.total_ms, decision.prompt_tokens,
                      decision.completion_tokens, cached=decision.cached, failure=decision.failure, tags=case.tags)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def score(results: list[CallResult], labels: list[str], model: str | None,
          prices: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-destination P/R/F1, the confusion matrix (with none and error), and costs.

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
    per: dict[str, dict[str, float]] = {}
    for c in classes:
        tp = sum(1 for r in results if r.expected == c and r.predicted == c)
        fp = sum(1 for r in results if r.expected != c and r.predicted == c)
        fn = sum(1 for r in results if r.expected == c and r.predicted != c)
        support = tp + fn
        p, rec, f = _prf(tp, fp, fn)
        per[c] = {"precision": p, "recall": rec, "f1": f, "support": support, "predicted": tp + fp}
    present = [c for c in classes if per[c]["support"] or per[c]["predicted"]]
    macro_f1 = sum(per[c]["f1"] for c in present) / len(present) if present else 0.0
    latencies = [r.latency_ms for r in results]
    prompt_tokens = sum(r.prompt_tokens for r in results)
    completion_tokens = sum(r.completion_tokens for r in results)
    price = (prices or PRICES).get(model or "")
    cost = (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6 if price else None
    outcomes = Counter(r.outcome for r in results)
    repeated = [r for r in results if r.runs]
    return {
        "calls": n,
        "accuracy": correct / n if n else 0.0,
        "macro_f1": macro_f1,
        "per_destination": per,
        "confusion": confusion,
        "none_precision": per[NONE]["precision"],
        "none_recall": per[NONE]["recall"],
        "errors": sum(1 for r in results if r.failure is not None),
        "timeouts": sum(1 for r in results if r.failure == "timeout"),
        "outcomes": dict(outcomes),
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                       "max": max(latencies, default=0.0)},
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
        "cost_usd": cost,
        "cached_calls": sum(r.cached for r in results),
        "consistency": (sum(len(set(r.runs)) == 1 for r in repeated) / len(repeated)) if repeated else None,
        "by_tag": _by_tag(results),
    }


def _by_tag(results: list[CallResult]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[CallResult]] = defaultdict(list)
    for r in results:
        for tag in r.tags:
            groups[tag].append(r)
    return {t: {"calls": len(rs), "accuracy": sum(r.predicted == r.expected for r in rs) / len(rs)}
            for t, rs in sorted(groups.items())}


def result_rows(results: list[CallResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
