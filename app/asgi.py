"""Entry point for uvicorn workers: `uvicorn --factory app.asgi:build`. Settings come from the environment."""

from __future__ import annotations

from starlette.applications import Starlette

from . import logs
from .app import create_app
from .settings import Settings


def build() -> Starlette:
    settings = Settings.from_env()
    logs.setup(settings.log_format, settings.log_level, settings.log_conversations)
    return create_app(settings)
