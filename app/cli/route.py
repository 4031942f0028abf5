"""`switchboard route FILE`: one saved webhook body, decided as the service would; `--explain` says why, for a
person: the window of conversation used, the scores, what was open, what was left out and why, the answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any

import click

from app.cli import settings_from
from app.routers.registry import ROUTERS, spec_for

if TYPE_CHECKING:
    from app.catalogue.destinations import Catalogue
    from app.decision.decider import Decision
    from app.routers.base import Query


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
@click.argument("file", type=click.File("rb"))
@click.option("-r", "--router", type=click.Choice(list(ROUTERS), case_sensitive=False),
              help="Router to use.  [default: as the service would choose]")
@click.option("--at", "at", metavar="TIME", help="Decide as of this time, for business hours: "
              "2026-12-25T11:00 is in the catalogue's time zone.  [default: the request's timestamp, else now]")
@click.option("--explain", is_flag=True, help="Print why, for a person: the conversation window used, the scores, "
              "what was open, what was left out and why, and the answer.")
def route(file: Any, router: str | None, at: str | None, explain: bool) -> None:
    """Decide one saved webhook body (FILE, or - for stdin) as the service would.

    Prints the JSON answer on stdout and the decision's details on stderr; with --explain, an explanation
    (ending with the answer) on stdout instead.

    \b
    Examples:
      switchboard route examples/transfer-request.json
      switchboard route -r offline examples/handoff-request.json
      switchboard route examples/failed-transfer-request.json
      switchboard route examples/transfer-request.json --at 2026-11-26T11:00     # Thanksgiving: billing is closed
      switchboard route --explain examples/failed-transfer-request.json
    """
    settings = settings_from()
    body = file.read()
    answer, details, lines = asyncio.run(_route_one(settings, body, router.lower() if router else None, at))
    if explain:
        click.echo("\n".join([*lines, f"Answer sent to Vapi: {json.dumps(answer)}"]))
    else:
        click.echo(json.dumps(answer))
    click.echo(json.dumps(details), err=True)


async def _route_one(settings: Any, body: bytes, router: str | None,
                     at: str | None) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    from app.engine import Clients, build_engine
    from app.loading import load_routing
    from app.vapi.conversation import NoConversation
    from app.vapi.messages import DESTINATION_REQUESTS, parse_json, parse_request

    started = time.monotonic()
    message = parse_json(body)
    if message["type"] not in DESTINATION_REQUESTS:
        note = "not a destination request: the service answers {} at once"
        return {}, {"type": message["type"], "note": note}, [f"{message['type']}: {note}."]
    request = parse_request(message)
    routing = load_routing(settings)
    moment = parse_at(at, routing.catalogue.timezone)
    name = router or settings.router_choice()[0]
    clients = Clients.from_settings(settings) if spec_for(name).capabilities.calls_model else None
    try:
        engine = build_engine(settings, routing, clients, router_name=router)
        engine.at = moment
        try:
            query = engine.query(request)
        except NoConversation as exc:
            return {"error": str(exc)}, {"outcome": "no_conversation"}, [f"No conversation to decide on: {exc}."]
        decision = await engine.decider.decide(query, started)
    finally:
        if clients is not None:
            await clients.close()
    details = {"type": request.type, "call_id": request.call_id, "unreachable": decision.unreachable or None,
               "chosen": decision.chosen, "answered": decision.answered, "closed": decision.closed,
               "outcome": decision.outcome, "failure": decision.failure, "rescued_by": decision.rescued_by,
               "router": decision.router, "model": decision.model, "score": decision.score,
               "reason": decision.reason, "attempts": decision.attempts, "total_ms": round(decision.total_ms, 1),
               "llm_ms": round(decision.llm_ms, 1), "prompt_tokens": decision.prompt_tokens,
               "completion_tokens": decision.completion_tokens, "cached_tokens": decision.cached_tokens,
               "prompt": engine.routing.prompt.name, "prompt_hash": engine.routing.prompt.hash,
               "candidate": decision.candidate, "runner_ups": [r.as_dict() for r in decision.runner_ups] or None}
    return decision.body, details, explanation(query, decision, routing.catalogue)


def explanation(query: Query, decision: Decision, catalogue: Catalogue) -> list[str]:
    """The decision in words: the window of conversation the router read, the moment and what was open then,
    what was left out and why, the router's scores, and the answer."""
    from app.catalogue.destinations import NONE
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
    zone = catalogue.timezone
    local = at.astimezone(_zone(zone)) if zone else at
    lines += ["", f"Decided as of {local.strftime('%a %d %b %Y %H:%M')} ({zone or 'UTC'}):"]
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


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
