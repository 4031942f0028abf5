"""Entry point for uvicorn workers: `uvicorn --factory app.service.asgi:build`. Settings come from the environment
(`switchboard serve` puts its flags there, app/service/server.py)."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from app import logs
from app.service.app import create_app
from app.service.protocol import GuardedHttpToolsProtocol
from app.service.server import WARNED_ENV
from app.settings import Settings, unknown_variables


def build() -> Starlette:
    settings = Settings.from_env()
    logger = logs.setup(settings.log_format, settings.log_level)
    if not os.environ.get(WARNED_ENV):  # under `serve`, said once by serve rather than once per worker
        logs.unknown_settings(logger, unknown_variables())
    GuardedHttpToolsProtocol.configure(settings)  # each worker process sets its own limits
    return create_app(settings)
