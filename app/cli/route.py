"""`switchboard route FILE`: one saved webhook body, decided as the service would."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import click

from app.cli import settings_from
from app.routers.registry import ROUTERS, spec_for


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
def route(file: Any, router: str | None, at: str | None) -> None:
    """Decide one saved webhook body (FILE, or - for stdin) as the service would.

    Prints the JSON answer on stdout and the decision's details on stderr.

    \b
    Examples:
      switchboard route examples/transfer-request.json
      switchboard route -r offline examples/handoff-request.json
      switchboard route examples/failed-transfer-request.json
      switchboard route examples/transfer-request.json --at 2026-11-26T11:00     # Thanksgiving: billing is closed
    """
    settings = settings_from()
    body = file.read()
    answer, details = asyncio.run(_route_one(settings, body, router.lower() if router else None, at))
    click.echo(json.dumps(answer))
    click.echo(json.dumps(details), err=True)


async def _route_one(settings: Any, body: bytes, router: str | None, at: str | None) -> tuple[dict[str, Any],
                                                                                                dict[str, Any]]:
    from app.engine import Clients, build_engine
    from app.loading import load_routing
    from app.vapi.conversation import NoConversation
    from app.vapi.messages import DESTINATION_REQUESTS, parse_json, parse_request

    started = time.monotonic()
    message = parse_json(body)
    if message["type"] not in DESTINATION_REQUESTS:
        return {}, {"type": message["type"], "note": "not a destination request: the service answers {} at once"}
    request = parse_request(message)
    routing = load_routing(settings)
    moment = parse_at(at, routing.catalogue.timezone)
    name = router or settings.router_choice()[0]
    clients = Clients.from_settings(settings) if spec_for(name).capabilities.calls_model else None
    try:
        engine = build_engine(settings, routing, clients, router_name=router)
        engine.at = moment
        try:
            decision = await engine.decide(request, started)
        except NoConversation as exc:
            return {"error": str(exc)}, {"outcome": "no_conversation"}
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
               "prompt": engine.routing.prompt.name, "prompt_hash": engine.routing.prompt.hash}
    return decision.body, details
