"""Evaluation: run labelled recorded calls through the same decision code as the service (scored by
app/evaluation/score.py into the typed results of app/evaluation/results.py).

Datasets are streamed (a JSONL file, or a directory of .json files), so memory stays flat; each call
keeps only a small result record. Each call is decided at its own recorded timestamp (business hours), and
its payload may be a transfer- or a handoff-destination-request.

With 30 to 100 labelled calls most differences between two prompts are noise, so the scores say how sure
they are: accuracy with its 95% (Wilson) interval, and paired comparisons (calls fixed and broken, the exact
McNemar p-value) against a baseline and between the combinations of one run (app/evaluation/statistics.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app import files
from app.catalogue.destinations import NONE
from app.engine import Engine
from app.errors import first_error
from app.evaluation.errors import EvaluationError
from app.evaluation.results import ERROR, CallResult
from app.vapi.conversation import NoConversation
from app.vapi.messages import PayloadError, parse_json, parse_request

EXCERPT_CHARS = 160


class DatasetError(EvaluationError):
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
        err = first_error(exc)
        if not err.where and err.type == "model_type":  # valid JSON, but an array, a number or a string
            raise DatasetError(f"{where}: a call must be a JSON object {{\"id\", \"expected\", \"payload\", ...}}, "
                               f"got {_json_type(err.input)}; fix or remove it") from None
        raise DatasetError(f"{where}: {err.where or 'line'}: {err.message}") from None


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
        return CallResult(case.id, expected, ERROR, f"bad_payload: {exc}"[:80], 0.0, tags=case.tags, answered=ERROR)
    decision = await engine.decider.decide(query, started)
    # What was decided, a rescue included; a model that was not sure enough declined: none.
    predicted = decision.chosen or (NONE if decision.failure == "low_confidence" else ERROR)
    # What the caller got, as of the call's own timestamp: the entry answered (after hours, earlier failed
    # transfers, the fallback); no transfer at all is none (a closed entry with nowhere open, a declined or
    # unmatched call), unless the decision failed outright.
    answered = decision.answered or (ERROR if predicted == ERROR else NONE)
    callers = [t.text for t in query.conversation.turns if t.speaker == "caller"][-2:]
    excerpt = " / ".join(callers)
    return CallResult(case.id, expected, predicted, decision.outcome, decision.total_ms, decision.prompt_tokens,
                      decision.completion_tokens, decision.cached_tokens, cached=decision.cached,
                      failure=decision.failure, tags=case.tags, score=decision.score,
                      candidate=decision.candidate, answered=answered,
                      by_fallback=decision.rescued_by == "fallback" or (
                          decision.outcome == "no_match" and decision.answered is not None),
                      excerpt=excerpt if len(excerpt) <= EXCERPT_CHARS else "..." + excerpt[-EXCERPT_CHARS:])
