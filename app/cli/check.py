"""`switchboard check [CATALOGUE]`: every start-up check `serve` makes, without serving."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from app.cli import settings_from


@click.command()
@click.argument("catalogue", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-p", "--prompt", type=click.Path(dir_okay=False, path_type=Path),
              help="Prompt file.  [default: SWITCHBOARD_PROMPT, else prompts/route.md]")
def check(catalogue: Path | None, prompt: Path | None) -> None:
    """Check the settings, the catalogue (CATALOGUE, else SWITCHBOARD_DESTINATIONS, else destinations.json)
    and the prompt, as `serve` does at start-up; exit 2 naming the variable, entry or field at fault.

    \b
    Examples:
      switchboard check
      switchboard check destinations.json --prompt prompts/route-with-reason.md
      SWITCHBOARD_ROUTER=llm switchboard check        # refused: no OPENAI_API_KEY or OPENAI_BASE_URL
    """
    from app.loading import startup_checks

    settings = settings_from(destinations=catalogue, prompt=prompt)
    routing = startup_checks(settings)
    if settings.record_dir is not None:  # as serve opens it: a directory it cannot write is refused
        from app.dataset.recording import Recorder

        Recorder(settings.record_dir, settings.record_redact)
    cat = routing.catalogue
    kinds: dict[str, int] = {}
    for entry in cat.entries:
        for target, what in ((entry.destination, ""), (entry.handoff, " handoff")):
            if target is not None:
                kinds[f"{target['type']}{what}"] = kinds.get(f"{target['type']}{what}", 0) + 1
    click.echo(f"{cat.source}: {len(cat.entries)} destinations "
               f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
               f"fallback: {cat.fallback or 'none (errors are answered)'}; "
               f"assistant subsets: {len(cat.assistants)}")
    now = cat.hours_now(dt.datetime.now(dt.UTC))
    if now["open"] or now["closed"]:
        closed = "; ".join(f"{i}: {when}" for i, when in now["closed"].items())
        click.echo(f"hours: open now: {', '.join(now['open']) or '-'}; closed now: {closed or '-'}; "
                   f"always open: {len(now['always_open'])}")
    click.echo(f"{routing.prompt.path}: prompt {routing.prompt.name!r}, hash {routing.prompt.hash}")
    name, why = settings.router_choice()
    click.echo(f"router: {name} ({why})")
    from app.routers.registry import spec_for

    if settings.min_confidence > 0 and spec_for(name).capabilities.probability:
        click.echo(f"SWITCHBOARD_MIN_CONFIDENCE={settings.min_confidence:g}: applies only if the model's server "
                   "gives log-probabilities (known after the first call; /healthz says)")
    from app.service.server import ServeError, check_port_free

    try:
        check_port_free(settings.host, settings.port)
    except ServeError as exc:
        click.secho(f"Note: {exc} (fine if that is this service already running)", fg="yellow", err=True)
