"""Entry point for uvicorn workers: `uvicorn --factory app.service.asgi:build`. Settings come from the environment."""

from __future__ import annotations

import logging

from starlette.applications import Starlette

from app import logs
from app.service.app import create_app
from app.service.protocol import GuardedHttpToolsProtocol
from app.settings import Settings, unknown_variables


def build() -> Starlette:
    settings = Settings.from_env()
    logger = logs.setup(settings.log_format, settings.log_level)
    for name in unknown_variables():
        logs.event(logger, "unknown_setting", logging.WARNING, variable=name)
    GuardedHttpToolsProtocol.configure(settings)  # each worker process sets its own limits
    return create_app(settings)
