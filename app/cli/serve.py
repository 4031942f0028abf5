"""`switchboard serve`: the webhook service under uvicorn."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from app.cli import catalogue_option, prompt_option, settings_from, warn_unknown_settings


@click.command()
@click.option("--host", help="Interface to listen on; 0.0.0.0 for outside traffic.  [default: SWITCHBOARD_HOST, "
              "else 127.0.0.1]")
@click.option("--port", type=int, help="Port, 1 to 65535.  [default: SWITCHBOARD_PORT, else 8000]")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes; each keeps its own model client and recording file; metrics are shared; "
                   "SIGHUP reloads each of them.")
@catalogue_option
@prompt_option
def serve(host: str | None, port: int | None, workers: int, catalogue: Path | None, prompt: Path | None) -> None:
    """Answer Vapi's transfer- and handoff-destination requests on POST /webhook.

    Without OPENAI_API_KEY or OPENAI_BASE_URL the offline router decides; with either, the LLM does.

    \b
    Examples:
      switchboard serve
      switchboard serve --catalogue destinations.json --prompt prompts/route.md
      switchboard serve --host 0.0.0.0 --port 8080 --workers 2
      SWITCHBOARD_SECRET=$(openssl rand -hex 32) switchboard serve
      curl -s localhost:8000/healthz                      # from a second terminal
      kill -HUP <pid>                                     # reload the catalogue and prompt now
    """
    from app.service import hangups

    hangups.hold_hangups()  # first: until the service can reload, a SIGHUP would end it
    hangups.hold_stops()  # and a SIGTERM would end it before the finally below removes what it made
    with hangups.ended_by_held_stop():
        started = _serve(host, port, workers, catalogue, prompt)
    if not started:
        sys.exit(3)  # as uvicorn.run does when the app fails at start-up (its log line says why)


def _serve(host: str | None, port: int | None, workers: int, catalogue: Path | None, prompt: Path | None) -> bool:
    from app import logs
    from app.errors import UserError
    from app.service import hangups, server
    from app.settings import unknown_variables

    metrics_dir, made = None, False
    try:  # from here on, a failed or stopped start must not leave the folder serve made behind
        with hangups.stops_deferred():  # a stop between making the folder and noting it here: raised after
            metrics_dir, made = server.prepare_metrics_dir(workers)  # before prometheus-client is first imported
        from app.service.app import create_app

        try:
            settings = settings_from(warn_unknown=False, host=host, port=port, destinations=catalogue, prompt=prompt)
        except UserError:
            warn_unknown_settings()  # no log format to say them in yet: as every command says them, then the error
            raise
        logger = logs.setup(settings.log_format, settings.log_level)
        logs.unknown_settings(logger, unknown_variables())  # once, here, as events (the workers do not repeat it)
        create_app(settings)  # fail fast, in this process, on a broken catalogue, prompt, settings or recording dir
        server.check_port_free(settings.host, settings.port)
        fd_limit = server.raise_fd_limit()
        options = server.uvicorn_options(settings, fd_limit)
        if options["limit_concurrency"] < settings.max_connections:
            logs.event(logger, "connection_limit_lowered", logging.WARNING, wanted=settings.max_connections,
                       allowed=options["limit_concurrency"], open_file_limit=fd_limit,
                       hint="raise the open-file limit (ulimit -n, or LimitNOFILE= in systemd)")
        server.hand_to_workers(settings)  # the workers (new processes) read the settings from the environment
        # the address on stdout, logs on stderr; SIGTERM and SIGINT are given back to uvicorn's handlers in there
        return server.run(settings, workers, options, announce=click.echo)
    finally:
        server.cleanup_metrics_dir(metrics_dir, made)
