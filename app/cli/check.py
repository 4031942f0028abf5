"""`switchboard check [CATALOGUE]`: every start-up check `serve` makes, without serving."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from app.cli import catalogue_option, fail, prompt_option, settings_from


@click.command()
@click.argument("catalogue_file", metavar="[CATALOGUE]", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@catalogue_option
@prompt_option
def check(catalogue_file: Path | None, catalogue: Path | None, prompt: Path | None) -> None:
    """Check the settings, the catalogue (CATALOGUE or --catalogue, else SWITCHBOARD_DESTINATIONS, else
    destinations.json) and the prompt, as `serve` does at start-up; exit 2 naming the variable, entry or field
    at fault. Says which files are in force and where their paths came from.

    \b
    Examples:
      switchboard check
      switchboard check destinations.json --prompt prompts/route-with-reason.md
      switchboard check --catalogue destinations.json
      SWITCHBOARD_ROUTER=llm switchboard check        # refused: no OPENAI_API_KEY or OPENAI_BASE_URL
    """
    from app.loading import startup_checks

    if catalogue_file is not None and catalogue is not None and catalogue_file != catalogue:
        fail(f"two catalogues given ({catalogue_file} and --catalogue {catalogue}); give one")
    settings = settings_from(destinations=catalogue or catalogue_file, prompt=prompt)
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
    click.echo(f"catalogue in force: {settings.destinations.absolute()}, hash {routing.catalogue_hash} "
               f"({settings.origin('destinations')})")
    click.echo(f"prompt in force: {Path(routing.prompt.path).absolute()} ({routing.prompt_origin})")
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
