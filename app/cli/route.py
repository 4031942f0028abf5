"""`switchboard route FILE`: one saved webhook body, decided as the service would; `route --text "..."` builds the
body itself from what the caller said. `--explain` says why, for a person: the window of conversation used, the
scores, what was open, what was left out and why, the answer. The decision's log line is serve's, in serve's format."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from app.cli import catalogue_option, prompt_option, settings_from
from app.routers.registry import ROUTERS, spec_for

if TYPE_CHECKING:
    from pathlib import Path

    from app.catalogue.destinations import Catalogue
    from app.decision.decider import Decision
    from app.routers.base import Query
    from app.settings import Settings

# A --text that starts with one of these is the voice assistant's turn; any other text is the caller's.
ASSISTANT_PREFIXES = ("assistant:", "bot:")
CALLER_PREFIXES = ("caller:", "user:")  # to start a caller's turn with "assistant:" itself
TURN_MS = 3000  # built turns are this far apart, the last one ending just before the transfer tool call


def parse_at(value: str | None, default_zone: str | None) -> dt.datetime | None:
    """--at: an ISO 8601 time; without an offset, in the catalogue's time zone (else this machine's)."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time like 2026-12-25T11:00 (optionally with an offset, "
                                 "like 2026-12-25T11:00-08:00)", param_hint="--at") from None
    from app.catalogue.hours import EARLIEST, LATEST

    try:
        if moment.tzinfo is None:
            from zoneinfo import ZoneInfo

            moment = moment.replace(tzinfo=ZoneInfo(default_zone)) if default_zone else moment.astimezone()
        moment = moment.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:00 in Los Angeles is in year 10000 in UTC
        moment = LATEST + dt.timedelta(days=1)
    if not EARLIEST <= moment <= LATEST:
        raise click.BadParameter(f"{value!r} is outside the years business hours are worked out for; give a "
                                 "time between years 2 and 9997", param_hint="--at")
    return moment


@click.command()
@click.argument("file", type=click.File("rb"), required=False)
@click.option("-t", "--text", "texts", multiple=True, metavar="TEXT",
              help="What the caller said, instead of FILE: the request is built here. Repeat for a conversation, "
              "in order; a text starting with 'assistant:' (or 'bot:') is the voice assistant's turn.")
@click.option("--handoff", is_flag=True, help="With --text: build a handoff-destination-request (a squad's "
              "handoff) instead of a transfer-destination-request.")
@click.option("--assistant", metavar="NAME", help="With --text: the voice assistant asking (a key of the "
              "catalogue's `assistants`: its name or id), so only its entries are offered.")
@click.option("-r", "--router", type=click.Choice(list(ROUTERS), case_sensitive=False),
              help="Router to use.  [default: as the service would choose]")
@click.option("--at", "at", metavar="TIME", help="Decide as of this time, for business hours: "
              "2026-12-25T11:00 is in the catalogue's time zone.  [default: the request's timestamp, else now]")
@click.option("--explain", is_flag=True, help="Print why, for a person: the conversation window used, the scores, "
              "what was open, what was left out and why, and the answer.")
@catalogue_option
@prompt_option
def route(file: Any, texts: tuple[str, ...], handoff: bool, assistant: str | None, router: str | None,
          at: str | None, explain: bool, catalogue: Path | None, prompt: Path | None) -> None:
    """Decide one webhook body as the service would: a saved one (FILE, or - for stdin), or one built from
    --text.

    Prints the JSON answer on stdout and the decision's log line (serve's, in SWITCHBOARD_LOG_FORMAT) on stderr;
    with --explain, an explanation (ending with the answer) on stdout instead.

    \b
    Examples:
      switchboard route examples/transfer-request.json
      switchboard route --text "I was charged twice"
      switchboard route --text "hi, I'm moving" --text "assistant: where to?" --text "Denver, next month"
      switchboard route --text "I want to upgrade my plan" --assistant "Brightline Sales Line" --explain
      switchboard route -r offline examples/handoff-request.json
      switchboard route examples/failed-transfer-request.json
      switchboard route examples/transfer-request.json --at 2026-11-26T11:00     # Thanksgiving: billing is closed
      switchboard route --explain examples/failed-transfer-request.json
    """
    if (file is None) == (not texts):
        ways = 'FILE (a saved webhook body, or - for stdin) or --text "what the caller said" (repeat it for a ' \
               'conversation)'
        raise click.UsageError(f"FILE and --text both given: give {ways}, not both" if texts else
                               f"no call to decide: give {ways}")
    if file is not None and (handoff or assistant):
        raise click.UsageError("--handoff and --assistant build a request with --text; a FILE already says its "
                               "type and assistant")
    turns = [text_turn(text) for text in texts]
    settings = settings_from(destinations=catalogue, prompt=prompt)
    with _serve_logging(settings) as logger:
        body = file.read() if file is not None else None
        answer, lines = asyncio.run(_route_one(settings, logger, body, turns, handoff, assistant,
                                               router.lower() if router else None, at))
    if explain:
        click.echo("\n".join([*lines, f"Answer sent to Vapi: {json.dumps(answer)}"]))
    else:
        click.echo(json.dumps(answer))


def text_turn(text: str) -> tuple[str, str]:
    """One --text as ("user" | "bot", words): a leading 'assistant:' or 'bot:' (any case) makes it the voice
    assistant's turn, a leading 'caller:' or 'user:' is dropped, and anything else is the caller's."""
    folded = text.lstrip().lower()
    role, words = "user", text
    for prefixes, who in ((ASSISTANT_PREFIXES, "bot"), (CALLER_PREFIXES, "user")):
        prefix = next((p for p in prefixes if folded.startswith(p)), None)
        if prefix is not None:
            role, words = who, text.lstrip()[len(prefix):]
            break
    if not words.strip():
        raise click.BadParameter(f"{text!r} has no words; give what was said, e.g. --text \"I was charged twice\"",
                                 param_hint="--text")
    return role, words.strip()


def text_request(turns: list[tuple[str, str]], at: dt.datetime, *, handoff: bool = False,
                 assistant: str | None = None) -> dict[str, Any]:
    """A `{"message": ...}` webhook body as Vapi sends it for these turns (a call in progress, the transfer or
    handoff tool call last, at `at`), in the shape Vapi's SDK validates (tests/test_route_text.py checks it)."""
    end = int(at.timestamp() * 1000)
    start = end - TURN_MS * len(turns) - 1000
    messages: list[dict[str, Any]] = []
    for n, (role, words) in enumerate(turns):
        t = start + TURN_MS * n
        duration = TURN_MS - 500
        messages.append({"role": role, "message": words, "time": t, "endTime": t + duration,
                         "secondsFromStart": (t - start) / 1000, "duration": duration})
    tool = "handoff" if handoff else "transferCall"
    messages.append({"role": "tool_calls", "message": "", "time": end, "secondsFromStart": (end - start) / 1000,
                     "toolCalls": [{"id": "call_text_1", "type": "function",
                                    "function": {"name": tool, "arguments": "{}"}}]})
    call: dict[str, Any] = {"id": f"route-text-{end}", "orgId": "local", "type": "webCall", "status": "in-progress",
                            "createdAt": _iso(start), "updatedAt": _iso(end)}
    message: dict[str, Any] = {"type": f"{'handoff' if handoff else 'transfer'}-destination-request",
                               "timestamp": end, "artifact": {"messages": messages}, "call": call}
    if assistant:  # the catalogue's `assistants` keys are ids or names: one of the two matches
        message["assistant"] = {"name": assistant}
        call["assistantId"] = assistant
    if handoff:
        message["parameters"] = {}  # the handoff tool's arguments: none, so no hint
    return {"message": message}


def _iso(ms: int) -> str:
    """A time as Vapi writes it: 2026-12-25T19:00:01.500000Z."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


@contextlib.contextmanager
def _serve_logging(settings: Settings) -> Iterator[logging.Logger]:
    """Logging set up as serve sets it up (format, level, stderr), and put back as it was afterwards: route also
    runs inside other processes (tests, scripts), whose logging it must not take over."""
    from app import logs

    names = (logs.LOGGER, *logs.SERVER_LOGGERS)
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, names)]
    logger = logs.setup(settings.log_format, settings.log_level)
    try:
        yield logger
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


async def _route_one(settings: Settings, logger: logging.Logger, body: bytes | None, turns: list[tuple[str, str]],
                     handoff: bool, assistant: str | None, router: str | None,
                     at: str | None) -> tuple[dict[str, Any], list[str]]:
    """The answer and the explanation; the decision is logged as serve logs it (app.service.webhook)."""
    from app.engine import Clients, build_engine
    from app.loading import load_routing
    from app.logs import event, request_id
    from app.service.webhook import decision_fields, no_conversation_fields
    from app.vapi.conversation import NoConversation
    from app.vapi.messages import DESTINATION_REQUESTS, parse_json, parse_request

    started = time.monotonic()
    token = request_id.set(uuid.uuid4().hex[:16])  # as serve gives every request one
    try:
        routing = load_routing(settings)
        moment = parse_at(at, routing.catalogue.timezone)
        if body is None:
            if assistant and assistant not in routing.catalogue.assistants:
                known = ", ".join(repr(k) for k in routing.catalogue.assistants) or "none"
                click.secho(f"Warning: --assistant {assistant!r} is not in {settings.destinations}'s assistants "
                            f"({known}): every entry is offered", fg="yellow", err=True)
            body = json.dumps(text_request(turns, moment or dt.datetime.now(dt.UTC), handoff=handoff,
                                           assistant=assistant)).encode()
        message = parse_json(body)
        if message["type"] not in DESTINATION_REQUESTS:
            note = "not a destination request: the service answers {} at once"
            event(logger, "not_a_destination_request", type=message["type"], note=note)
            return {}, [f"{message['type']}: {note}."]
        request = parse_request(message)
        name = router or settings.router_choice()[0]
        clients = Clients.from_settings(settings) if spec_for(name).capabilities.calls_model else None
        try:
            engine = build_engine(settings, routing, clients, router_name=router)
            engine.at = moment
            try:
                query = engine.query(request)
            except NoConversation as exc:
                event(logger, "decision", **no_conversation_fields(request, engine))  # serve's line, as below
                return {"error": str(exc)}, [f"No conversation to decide on: {exc}."]
            decision = await engine.decider.decide(query, started)
        finally:
            if clients is not None:
                await clients.close()
        fields = decision_fields(decision, request, engine)  # serve's line, field for field
        if settings.log_conversations:
            fields["conversation"] = query.text
        event(logger, "decision", **fields)
        return decision.body, explanation(query, decision, routing.catalogue)
    finally:
        request_id.reset(token)


def explanation(query: Query, decision: Decision, catalogue: Catalogue) -> list[str]:
    """The decision in words: the window of conversation the router read, the moment and what was open then,
    what was left out and why, the router's scores, and the answer."""
    from app.catalogue.destinations import NONE
    from app.catalogue.hours import local_text
    from app.catalogue.hours import moment as default_moment
    from app.vapi.conversation import render

    conversation = query.conversation
    omitted = f", {conversation.omitted} messages left out of the middle" if conversation.omitted else ""
    lines = [f"Conversation used (the window the router read, from {conversation.source}: "
             f"{len(conversation.turns)} turns{omitted}):"]
    lines += [f"  {line}" for line in render(conversation).splitlines()]
    if conversation.hint:
        lines.append(f"  hint from the voice assistant's tool call: {conversation.hint}")
    at = query.at or default_moment(None)
    lines += ["", f"Decided as of {local_text(at, catalogue.timezone)}:"]
    subset = query.subset or query.allowed
    unreachable = dict(query.unreachable)
    opened: list[str] = []
    closed: list[str] = []
    for entry_id in subset:
        entry = catalogue.get(entry_id)
        if entry is None or entry_id in unreachable:
            continue
        if entry.hours is None or entry.hours.is_open(at):
            opened.append(entry_id)
        else:
            after = f"; after hours: {entry.after_hours}" if entry.after_hours else ""
            closed.append(f"{entry_id} ({entry.hours.opens_text(at)}{after})")
    lines.append(f"  open: {', '.join(opened) or 'none'}")
    if closed:
        lines.append(f"  closed (offered, but answered by its after-hours entry, or not at all): {'; '.join(closed)}")
    left = [f"{i}: an earlier transfer in this call ended {status}" for i, status in query.unreachable]
    others = [e for e in catalogue.entries if e.id not in subset]
    for why in (f"no {query.kind} destination in the catalogue", "not in this assistant's set"):
        ids = [e.id for e in others if (e.target(query.kind) is None) == why.startswith("no ")]
        if ids:
            left.append(f"{', '.join(ids)}: {why}")
    lines += ["", "Left out of the offer:"] + [f"  {x}" for x in left] if left else ["", "Left out of the offer: none"]
    lines += ["", f"Router {decision.router}" + (f" ({decision.model})" if decision.model else "") + ":"]
    for n, r in enumerate(decision.runner_ups, start=1):
        lines.append(f"  {n}. {r.id}  score {r.score:g}" + (f"  words: {', '.join(r.words)}" if r.words else ""))
    if not decision.runner_ups and decision.candidate is None and decision.chosen == NONE:
        lines.append("  no word of the conversation matched any entry: no candidate")
    if decision.score is not None:
        lines.append(f"  confidence {decision.score:g}" + (f" in {decision.candidate}" if decision.candidate else ""))
    if decision.reason:
        lines.append(f"  reason: {decision.reason}")
    lines += ["", f"Decision: {decision.outcome}" + (f" ({decision.failure})" if decision.failure else "")]
    lines.append(f"  chosen: {decision.chosen or '-'}" + (f"; rescued by {decision.rescued_by}"
                                                           if decision.rescued_by else ""))
    if decision.closed:
        lines.append(f"  {decision.closed} was closed then")
    lines.append(f"  answered: {decision.answered or 'nothing transferred'}")
    return lines
