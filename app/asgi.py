"""Entry point for uvicorn workers: `uvicorn --factory app.asgi:build`. Settings come from the environment."""

from __future__ import annotations

from starlette.applications import Starlette

from . import logs
from .app import create_app
from .server import GuardedHttpToolsProtocol
from .settings import Settings


def build() -> Starlette:
    settings = Settings.from_env()
    logs.setup(settings.log_format, settings.log_level)
    GuardedHttpToolsProtocol.header_timeout = settings.read_timeout  # each worker process sets its own
    return create_app(settings)
