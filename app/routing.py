"""What the service routes with, read from files (the catalogue and the prompt), and the start-up checks that
`serve` and `check` share: everything that can be known to be wrong before the first call arrives.

Kept free of the model client and the web framework, so `switchboard check` stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import catalogue as catalogue_mod
from . import prompt as prompt_mod
from .catalogue import Catalogue, CatalogueError
from .prompt import CompiledPrompt, Prompt
from .settings import Settings


class ConfigError(Exception):
    """The settings cannot work together; the message says what to set."""


@dataclass(frozen=True)
class Routing:
    """What is read from files: replaced as a whole on reload."""

    catalogue: Catalogue
    prompt: Prompt
    compiled: dict[tuple[str, ...], CompiledPrompt]


def load_routing(settings: Settings) -> Routing:
    catalogue = catalogue_mod.load(settings.destinations)
    if settings.on_llm_failure == "fallback" and not catalogue.fallback:
        raise CatalogueError(f"{settings.destinations}: fallback: SWITCHBOARD_ON_LLM_FAILURE=fallback needs a "
                             "top-level \"fallback\" id in the catalogue")
    prompt = prompt_mod.load(settings.prompt)
    return Routing(catalogue, prompt, prompt_mod.compile_all(prompt, catalogue))


def startup_checks(settings: Settings) -> Routing:
    """Everything `serve` refuses to start on, short of binding the port. Raises CatalogueError, PromptError
    or ConfigError with the fix in the message."""
    routing = load_routing(settings)
    if settings.router_choice()[0] == "llm" and not settings.llm_configured:
        raise ConfigError("SWITCHBOARD_ROUTER=llm needs OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (any "
                          "OpenAI-compatible server); or set SWITCHBOARD_ROUTER=offline")
    if settings.record_dir is not None:
        from .recording import Recorder, RecordingError

        try:
            Recorder(settings.record_dir, settings.record_redact)
        except RecordingError as exc:
            raise ConfigError(str(exc)) from None
    return routing
