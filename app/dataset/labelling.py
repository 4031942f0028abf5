"""Labelling recorded calls: what `switchboard label` (app/cli/label.py) does with the files.

Each label is written back at once, under the lock recording takes to append: the file is read again, the
one row is changed, and a temporary copy is renamed over it (with the file's mode and owner). Calls recorded
while labelling are kept, and an interruption (Ctrl-C, a closed terminal, a crash) never loses or truncates
a line.

Each call is shown with what it takes to judge where the caller should have ended up (the label): its
conversation, its time and which entries were open then, its earlier transfers, what the router chose, what was
answered, and how sure the router was.

What the labeller types (KEYS): Enter accepts what was answered, an id in any case labels the call with it (an
unknown one gets the nearest id suggested, and the question again), `#words` add tags, `u` undoes the last label
(the row is put back as it was, in the file too), `s` skips, `q` quits.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app import files
from app.catalogue.destinations import HANDOFF, TRANSFER, Catalogue
from app.catalogue.hours import local_text, read_moment
from app.dataset.locking import locked
from app.errors import UserError, did_you_mean, first_error
from app.vapi.conversation import NoConversation, extract, render
from app.vapi.messages import DestinationRequest, PayloadError, parse_json, parse_request
from app.vapi.transfers import unreachable


class LabelError(UserError):
    """A file cannot be labelled; the message names the file and line."""


class _Decided(BaseModel):
    model_config = ConfigDict(extra="allow", title="decision")
    chosen: str | None = None


class _Row(BaseModel):
    """What labelling reads of a row; the rest is kept as it is."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    expected: str | None = None
    tags: list[str] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    decision: _Decided | None = None


FIX = "fix or remove the line, then label again"
LOW_SCORE = 0.5  # a decision scored below this is offered early: the router itself was unsure
COMMANDS = ("s", "q", "u")  # skip, quit, undo: typed alone; they win over an id spelt the same
KEYS = ("Keys: Enter accepts what was answered; an id (any case) labels the call with it; #words add tags "
        "(billing #angry #repeat, or #angry alone to accept with a tag); u undoes the last label; s skips; q quits.")
PROMPT = "[Enter] accept {decided} | an id | #tag | u undo | s skip | q quit"
END_PROMPT = "end of {path}: [Enter] go on | u undo the last label | q quit"
FOREIGN_SHOWN = 8  # ids named in the unknown-ids warning; the rest are counted


def _rows(path: Path, warn: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    try:
        for n, line, complete in files.lines(path, files.DATASET_LINE_BYTES):
            try:
                row = _Row.model_validate_json(line)  # bounded nesting, unlike json.loads (a RecursionError)
            except ValidationError as exc:
                err = first_error(exc)
                if err.type == "json_invalid":
                    if not complete:
                        warn(f"{path}:{n}: skipped: the last line is cut off (a write that did not finish)")
                        continue
                    raise LabelError(f"{path}:{n}: not JSON ({err.message.removeprefix('Invalid JSON: ')}); {FIX}") \
                        from None
                if not err.where and err.type == "model_type":
                    raise LabelError(f"{path}:{n}: a row must be a JSON object, got {_json_type(err.input)}; {FIX}") \
                        from None
                raise LabelError(f"{path}:{n}: {err.where or 'row'}: {err.message}; {FIX}") from None
            rows.append(row.model_dump())
    except files.FileProblem as exc:
        raise LabelError(f"{exc}; give the JSON Lines files recording wrote (calls-*.jsonl)") from None
    except OSError as exc:
        raise LabelError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return rows


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "true or false", type(None): "null"}.get(type(value), "a number")


def write_atomically(path: Path, lines: list[bytes]) -> None:
    """Replace `path` with `lines` through a temporary file and a rename, keeping its mode and owner."""
    before = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.writelines(lines)
            f.flush()
            os.chmod(tmp, before.st_mode & 0o7777)  # mkstemp makes it 0600
            if hasattr(os, "chown") and (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):  # only root may give a file away; the mode stays
                    os.chown(tmp, before.st_uid, before.st_gid)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _replace_row(path: Path, row_id: str, change: Callable[[dict[str, Any], bytes], bytes]) -> bytes | None:
    """Under the lock, as the file is now: the line of the row with this id becomes `change(row, line)`, and the
    file is replaced. Returns the line as it was, or None if the row is gone. Every other line is written back byte
    for byte (a cut-off last line included: it stays last, where readers skip it)."""
    with locked(path):
        lines: list[bytes] = []
        fd = files.open_regular(path)
        with os.fdopen(fd, "rb") as f:
            while raw := f.readline(files.DATASET_LINE_BYTES + 1):
                lines.append(raw)
        for i, raw in enumerate(lines):
            if row_id.encode() not in raw and b"\\" not in raw:  # cheap: most rows are not the one
                continue
            try:
                row = pydantic_core.from_json(raw)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("id") == row_id:
                lines[i] = change(row, raw)
                write_atomically(path, lines)
                return raw
    return None


def save_label(path: Path, row_id: str, label: str, tags: Iterable[str] = ()) -> bytes | None:
    """Set `expected` on the row with this id, and add `tags` to its own (the dataset's `tags`, which eval reports
    accuracy by). Returns the row's line as it was, for undo; None if the row is gone."""
    def labelled(row: dict[str, Any], _: bytes) -> bytes:
        row["expected"] = label
        tagged = row.get("tags")
        had: list[Any] = tagged if isinstance(tagged, list) else []
        added = [tag for tag in dict.fromkeys(tags) if tag not in had]
        if added:
            row["tags"] = [*had, *added]
        return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")

    return _replace_row(path, row_id, labelled)


def restore_row(path: Path, row_id: str, line: bytes) -> bool:
    """Put the row with this id back as `line` (what save_label returned): undo. False if the row is gone."""
    ended = line if line.endswith(b"\n") else line + b"\n"  # it may have been a last line without a break
    return _replace_row(path, row_id, lambda _row, _raw: ended) is not None


def conversation_text(row: dict[str, Any]) -> str:
    try:
        request = parse_request(parse_json(json.dumps(row.get("payload", {})).encode()))
        return render(extract(request, budget_chars=4000))
    except (PayloadError, NoConversation) as exc:
        return f"(no conversation: {exc})"


def judging_lines(row: dict[str, Any], catalogue: Catalogue | None) -> list[str]:
    """What a labeller needs beside the conversation: the call's time and the entries open then (its assistant's
    entries only), the earlier transfers that failed, what the router chose, what was answered, its confidence."""
    decision = _decision(row)
    lines: list[str] = []
    request = _request(row)
    at = read_moment(request.timestamp) if request is not None else None
    if catalogue is not None and at is not None:
        kind = HANDOFF if request is not None and request.is_handoff else TRANSFER
        ids = catalogue.allowed_for(*request.assistant_keys, kind=kind) if request is not None else catalogue.ids
        opened, closed = [], []
        for entry_id in ids:
            entry = catalogue.get(entry_id)
            if entry is None or entry.hours is None or entry.hours.is_open(at):
                opened.append(entry_id)
            else:
                closed.append(entry_id + (f" (after hours: {entry.after_hours})" if entry.after_hours else ""))
        lines.append(f"call at {local_text(at, catalogue.timezone)}; open then: "
                     f"{', '.join(opened) or '-'}" + (f"; closed: {', '.join(closed)}" if closed else ""))
    elif at is not None:
        lines.append(f"call at {local_text(at, None)}")
    else:
        lines.append("call time: not recorded")
    failed = unreachable(request, catalogue, catalogue.ids, HANDOFF if request.is_handoff else TRANSFER) \
        if request is not None and catalogue is not None else ()
    transfers = request.artifact.transfers if request is not None and request.artifact else None
    if failed:
        lines.append("earlier transfers that failed: " + ", ".join(f"{i} ({status})" for i, status in failed))
    elif transfers:
        lines.append(f"earlier transfers: {len(transfers)}, none failed to reach a catalogue entry")
    chosen, answered = decision.get("chosen"), decision.get("answered")
    score, router = decision.get("score"), decision.get("router")
    about = [str(router)] if router else []
    if isinstance(score, int | float) and not isinstance(score, bool):
        about.append(f"confidence {score:.2f}")
    lines.append(f"router chose: {chosen or '-'}" + (f" ({', '.join(about)})" if about else "")
                 + f"; answered: {answered or 'nothing transferred'}"
                 + (f"; outcome: {decision['outcome']}" if decision.get("outcome") else ""))
    return lines


def _decision(row: dict[str, Any]) -> dict[str, Any]:
    decision = row.get("decision")
    return decision if isinstance(decision, dict) else {}


def _request(row: dict[str, Any]) -> DestinationRequest | None:
    try:
        return parse_request(parse_json(json.dumps(row.get("payload", {})).encode()))
    except PayloadError:
        return None


def default_label(row: dict[str, Any]) -> str:
    """What Enter accepts: what the caller was answered with (a label names where the caller should end up),
    else what the router chose."""
    decision = _decision(row)
    return str(decision.get("answered") or decision.get("chosen") or "")


def likely_mistakes_first(rows: list[dict[str, Any]], low_score: float = LOW_SCORE) -> list[dict[str, Any]]:
    """Rows in the order a few minutes of labelling are best spent: those whose outcome (from `switchboard
    export`) is rerouted, then low confidence (the decision's score below `low_score`, or its outcome
    low_confidence), then unreachable, then the rest; in file order within each group."""
    def group(row: dict[str, Any]) -> int:
        decision = row.get("decision")
        score = decision.get("score") if isinstance(decision, dict) else None
        low = (isinstance(decision, dict) and decision.get("outcome") == "low_confidence") or (
            isinstance(score, int | float) and not isinstance(score, bool) and score < low_score)
        outcome = row.get("outcome")
        return 0 if outcome == "rerouted" else 1 if low else 2 if outcome == "unreachable" else 3

    return sorted(rows, key=group)  # sorted is stable: file order within a group


def foreign_ids(rows: list[dict[str, Any]], valid: set[str]) -> list[str]:
    """Ids the rows' decisions (chosen, answered) and labels name that are not in `valid`, in first-seen order:
    a sign the file was recorded with another catalogue."""
    named: dict[str, None] = {}
    for row in rows:
        decision = _decision(row)
        for value in (decision.get("chosen"), decision.get("answered"), row.get("expected")):
            if isinstance(value, str) and value and value not in valid:
                named.setdefault(value)
    return list(named)


def resolve(word: str, valid: set[str]) -> str | None:
    """The id `word` names: itself, else the one id equal to it in another case (`Service` is service)."""
    if word in valid:
        return word
    folded = [v for v in valid if v.casefold() == word.casefold()]
    return folded[0] if len(folded) == 1 else None


def read_answer(answer: str) -> tuple[str, list[str]]:
    """(the word typed, or "" for Enter; the tags) from `billing #angry #repeat`. ValueError says what is wrong."""
    words = answer.split()
    tags = [w[1:] for w in words if w.startswith("#")]
    rest = [w for w in words if not w.startswith("#")]
    if any(not tag for tag in tags):
        raise ValueError("a tag is # and a word, e.g. #angry")
    if len(rest) > 1:
        raise ValueError(f"one id at a time, then any #tags (e.g. {rest[0]} #angry), not {' '.join(rest)!r}")
    word = rest[0] if rest else ""
    if word.lower() in COMMANDS:
        if tags:
            raise ValueError(f"tags go with a label: an id and #tags, or #tags alone to accept; not with {word}")
        word = word.lower()
    return word, tags


def label_file(path: Path, valid: set[str], ask: Callable[[str], str], show: Callable[[str], None],
               warn: Callable[[str], None] | None = None, low_score: float = LOW_SCORE,
               catalogue: Catalogue | None = None, catalogue_name: str = "the catalogue",
               ask_at_end: bool = True) -> dict[str, int]:
    """Go through unlabelled rows, likely mistakes first (likely_mistakes_first); returns counts of labelled,
    skipped and remaining rows (and `quit` when the labeller quit at the end). What may be typed: KEYS; once every
    row was offered, and if any was labelled, the labeller is asked once more (END_PROMPT), to undo the last one,
    when `ask_at_end` (a person at a terminal: piped answers have no answer for it)."""
    warn = warn or show
    with locked(path):
        rows = _rows(path, warn)
    foreign = foreign_ids(rows, valid)
    if foreign:
        more = f" and {len(foreign) - FOREIGN_SHOWN} more" if len(foreign) > FOREIGN_SHOWN else ""
        warn(f"{path}: its decisions and labels name {', '.join(map(repr, foreign[:FOREIGN_SHOWN]))}{more}, which "
             f"{catalogue_name} does not have: were they recorded with another catalogue? pass --catalogue FILE")
    todo = likely_mistakes_first([row for row in rows if not row.get("expected")], low_score)
    done: list[tuple[int, str, bytes]] = []  # (index in todo, row id, its line before the label): for undo
    skipped: set[str] = set()
    i = 0

    def undo() -> int | None:
        """Put the last labelled row back as it was; its place in `todo`, to offer it again."""
        if not done:
            show(f"nothing to undo in {path}")
            return None
        index, undone, previous = done.pop()
        if restore_row(path, undone, previous):
            show(f"undone: {undone} is as it was before its label")
        else:
            show(f"{undone} is no longer in {path}; nothing to undo")
        return index

    while True:
        if i == len(todo):  # the last label may be the one to undo: asked once more before the next file
            if not done or not ask_at_end:
                break
            word = ask(END_PROMPT.format(path=path)).strip().lower()
            if word == "u":
                i = undo() or 0
            elif word == "q":
                return {"labelled": len(done), "skipped": len(skipped), "remaining": 0, "quit": 1}
            elif word:
                show("Enter goes on, u undoes the last label, q quits")
            else:
                break
            continue
        row = todo[i]
        row_id = str(row.get("id"))
        decided = default_label(row)
        show(f"\n--- {i + 1}/{len(todo)}  {row_id}  tags: {', '.join(row.get('tags', [])) or '-'}")
        show(conversation_text(row))
        for line in judging_lines(row, catalogue):
            show(line)
        while True:
            try:
                word, tags = read_answer(ask(PROMPT.format(decided=decided or "-")))
            except ValueError as exc:
                show(str(exc))
                continue
            if word == "q":
                return {"labelled": len(done), "skipped": len(skipped), "remaining": len(todo) - i}
            if word == "s":
                skipped.add(row_id)
                i += 1
                break
            if word == "u":
                back = undo()
                if back is None:
                    continue
                i = back
                break
            if not word and not decided:
                show("nothing was answered to accept: type an id, or s to skip")
                continue
            label = resolve(word or decided, valid)
            if label is None:
                show(_not_an_id(word or decided, bool(word), valid, catalogue_name))
                continue
            before = save_label(path, row_id, label, tags)
            if before is None:
                show(f"{row_id} is no longer in {path}; not saved")
            else:
                done.append((i, row_id, before))
                skipped.discard(row_id)
            i += 1
            break
    return {"labelled": len(done), "skipped": len(skipped), "remaining": 0}


def _not_an_id(word: str, typed: bool, valid: set[str], catalogue_name: str) -> str:
    # ids are lower case (the catalogue's ID_PATTERN) and typed in any case: compared folded
    hint = did_you_mean(word.casefold(), sorted(valid))
    if not typed:  # Enter on what was answered: the recording names an id this catalogue lacks
        why = f"'{word}' (what was answered) is not an id in {catalogue_name}{hint}: recorded with another " \
              "catalogue? pass --catalogue FILE, or type an id"
    else:
        why = f"'{word}' is not an id in {catalogue_name}{hint}"
    return f"{why}. Ids: {', '.join(sorted(valid))}"
