"""The `switchboard` command: serve, route, check, eval, label.

Domain errors become one readable line and exit code 2 here, at the CLI boundary, and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import click

from . import __version__, logs
from .catalogue import CatalogueError
from .conversation import NoConversation
from .engine import Clients, ConfigError, build_engine, load_routing
from .payload import DESTINATION_REQUESTS, PayloadError, parse_json, parse_request
from .prompt import PromptError
from .settings import Settings, SettingsError

USER_ERRORS = (CatalogueError, PromptError, ConfigError, SettingsError, PayloadError)


def fail(message: str) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(2)


def settings_from(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        fail(str(exc))
        raise  # unreachable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="switchboard")
def cli() -> None:
    """Switchboard: answers Vapi's transfer-destination-request with a destination from your catalogue.

    Settings come from environment variables (see README, 'Settings'); flags override them.
    """


@cli.command()
@click.option("--host", help="Interface to listen on (default: SWITCHBOARD_HOST, else 127.0.0.1). Use 0.0.0.0 to "
              "accept outside traffic.")
@click.option("--port", type=int, help="Port, 1 to 65535 (default: SWITCHBOARD_PORT, else 8000).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes; each keeps its own model client and recording file; metrics are shared.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the webhook service with uvicorn.

    \b
    Example:
      switchboard serve --port 8000
      curl -s localhost:8000/healthz
    """
    from . import server

    metrics_dir = server.prepare_metrics_dir(workers)  # before prometheus-client is imported
    import uvicorn

    from .app import create_app

    settings = settings_from(host=host, port=port)
    logs.setup(settings.log_format, settings.log_level)
    try:
        create_app(settings)  # fail fast, in this process, on a broken catalogue, prompt or settings
        server.check_port_free(settings.host, settings.port)
    except (*USER_ERRORS, server.ServeError) as exc:
        fail(str(exc))
    fd_limit = server.raise_fd_limit()
    options = server.uvicorn_options(max_connections=settings.max_connections, read_timeout=settings.read_timeout,
                                     fd_limit=fd_limit)
    if options["limit_concurrency"] < settings.max_connections:
        logs.event(logging.getLogger(logs.LOGGER), "connection_limit_lowered", logging.WARNING,
                   wanted=settings.max_connections, allowed=options["limit_concurrency"], open_file_limit=fd_limit,
                   hint="raise the open-file limit (ulimit -n, or LimitNOFILE= in systemd)")
    try:
        uvicorn.run("app.asgi:build", factory=True, host=settings.host, port=settings.port, workers=workers,
                    **options)
    finally:
        server.cleanup_metrics_dir(metrics_dir)


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option("--router", type=click.Choice(["llm", "offline"]), help="Router to use (default: as the service).")
def route(file: Any, router: str | None) -> None:
    """Decide one saved webhook body (FILE, or - for stdin) as the service would.

    Prints the JSON answer on stdout and the decision details on stderr.

    \b
    Example:
      switchboard route --router offline examples/billing.json
    """
    settings = settings_from()
    body = file.read()
    try:
        answer, details = asyncio.run(_route_one(settings, body, router))
    except USER_ERRORS as exc:
        fail(str(exc))
    click.echo(json.dumps(answer))
    click.echo(json.dumps(details), err=True)


async def _route_one(settings: Settings, body: bytes, router: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    started = time.monotonic()
    message = parse_json(body)
    if message["type"] not in DESTINATION_REQUESTS:
        return {}, {"type": message["type"], "note": "not a destination request: the service answers {} at once"}
    request = parse_request(message)
    routing = load_routing(settings)
    name = router or settings.router_choice()[0]
    clients = Clients.from_settings(settings) if name == "llm" else None
    try:
        engine = build_engine(settings, routing, clients, router_name=router)
        try:
            decision = await engine.decide(request, started)
        except NoConversation as exc:
            return {"error": str(exc)}, {"outcome": "no_conversation"}
    finally:
        if clients is not None:
            await clients.close()
    details = {"type": request.type, "call_id": request.call_id, "unreachable": decision.unreachable or None,
               "chosen": decision.chosen, "answered": decision.answered,
               "outcome": decision.outcome, "failure": decision.failure, "rescued_by": decision.rescued_by,
               "router": decision.router, "model": decision.model, "score": decision.score,
               "reason": decision.reason, "attempts": decision.attempts, "total_ms": round(decision.total_ms, 1),
               "llm_ms": round(decision.llm_ms, 1), "prompt_tokens": decision.prompt_tokens,
               "completion_tokens": decision.completion_tokens, "prompt": engine.routing.prompt.name,
               "prompt_hash": engine.routing.prompt.hash}
    return decision.body, details


@cli.command()
def check() -> None:
    """Validate the catalogue and the prompt; exit 2 naming the entry and field at fault."""
    settings = settings_from()
    try:
        routing = load_routing(settings)
    except USER_ERRORS as exc:
        fail(str(exc))
    cat, prompt = routing.catalogue, routing.prompt
    kinds: dict[str, int] = {}
    for entry in cat.entries:
        for target in (entry.destination, entry.handoff):
            if target is not None:
                name = f"{target['type']}{' handoff' if target is entry.handoff else ''}"
                kinds[name] = kinds.get(name, 0) + 1
    click.echo(f"{cat.source}: {len(cat.entries)} destinations "
               f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
               f"fallback: {cat.fallback or 'none (errors are answered)'}; "
               f"assistant subsets: {len(cat.assistants)}")
    click.echo(f"{prompt.path}: prompt {prompt.name!r}, hash {prompt.hash}")
    name, why = settings.router_choice()
    click.echo(f"router: {name} ({why})")


def _register() -> None:
    from .evaluation_cli import eval_command
    from .labelling import label_command

    cli.add_command(eval_command)
    cli.add_command(label_command)


def main() -> None:
    _register()
    cli()
