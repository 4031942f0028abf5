"""What the service routes with, read from files (the catalogue and the prompt), and the start-up checks that
`serve` and `check` share: everything that can be known to be wrong before the first call arrives.

Kept free of the model client and the web framework, so `switchboard check` stays quick.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from app import defaults
from app.catalogue import destinations as catalogue_mod
from app.catalogue.destinations import Catalogue, CatalogueError
from app.errors import UserError
from app.files import FileProblem, read_regular
from app.routers import prompt as prompt_mod
from app.routers.prompt import CompiledPrompt, Prompt, PromptError
from app.routers.registry import spec_for
from app.settings import Settings

# The most a catalogue or prompt file may hold. A constant, not a setting: the catalogue goes into the model's
# prompt, and 3,000 short entries (0.5 MB, some 125,000 tokens) already fill a large context window, so 8 MiB
# is far past any catalogue that can work; the cap bounds what one reload reads, parses and compiles (about
# 16 times the 0.3 s a 3,000-entry catalogue takes). Raise it here if an offline-only catalogue ever needs more.
MAX_FILE_BYTES = 8 * 1024 * 1024


class ConfigError(UserError):
    """The settings cannot work together; the message says what to set."""


@dataclass(frozen=True)
class Routing:
    """What is read from files: replaced as a whole on reload."""

    catalogue: Catalogue
    prompt: Prompt
    compiled: dict[tuple[str, ...], CompiledPrompt]
    digest: str = ""  # of the files' bytes: a reload that finds the same files has nothing to compile
    catalogue_hash: str = ""  # of the catalogue file's bytes, short: names the catalogue in force (logs, /healthz)
    prompt_origin: str = ""  # where the prompt file read (prompt.path) came from, in words (check says it)
    prompt_packaged: bool = False  # the packaged prompt, the prompt setting's file being absent (/healthz says)


def _read(path: Path, setting: str, missing: str, error: type[Exception]) -> bytes:
    """A catalogue or prompt file's bytes: a regular file (a named pipe would block whoever reads it) of at
    most MAX_FILE_BYTES."""
    try:
        return read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise error(f"{path}: file not found; {missing}") from None
    except FileProblem as exc:
        raise error(f"{exc}; set {setting} to a regular file of at most {MAX_FILE_BYTES // 1048576} MiB") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc}") from None


def _text(path: Path, data: bytes, error: type[Exception]) -> str:
    """UTF-8, with line ends read as `Path.read_text` reads them."""
    try:
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: cannot read: {exc}") from None


def _catalogue(path: Path, data: bytes) -> Catalogue:
    try:
        parsed = json.loads(_text(path, data, CatalogueError))
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"{path}: not valid JSON: {exc}") from None
    return catalogue_mod.parse(parsed, str(path))


def _read_catalogue(path: Path, origin: str | None = None) -> bytes:
    # No fallback to the packaged sample: a service started in the wrong folder must not send real callers to
    # its fictional numbers. So the error says where it looked, why there, and the three ways to fix it.
    came = f" (looked for it at {path.absolute()}: {origin})" if origin else ""
    return _read(path, "SWITCHBOARD_DESTINATIONS", "set SWITCHBOARD_DESTINATIONS or pass --catalogue FILE to name "
                 f"your catalogue, or run `switchboard init` to create a project folder with one{came}",
                 CatalogueError)


def _read_prompt(path: Path, origin: str | None = None, in_force: bool = False) -> bytes:
    """`in_force`: the operator's file is the prompt in force (a reload), so a missing one is not replaced."""
    came = f" (looked for it at {path.absolute()}: {origin})" if origin else ""
    if in_force:
        fix = "the prompt in force is kept until it is back: restore the file, or restart to use the packaged prompt"
    else:  # a path someone wrote never falls back (a typo must not route with another prompt): say how to get that
        fix = "set SWITCHBOARD_PROMPT or pass --prompt FILE to name an existing prompt, or unset both for the " \
              "default (prompts/route.md, else the packaged one)"
    return _read(path, "SWITCHBOARD_PROMPT", fix + came, PromptError)


def load_catalogue(path: Path, origin: str | None = None) -> Catalogue:
    """`origin`: where the path came from (Settings.origin("destinations")), said if the file is missing."""
    return load_catalogue_hashed(path, origin)[0]


def load_catalogue_hashed(path: Path, origin: str | None = None) -> tuple[Catalogue, str]:
    """The catalogue and its hash (catalogue_digest), both from the one read of the file: a second read could
    find another file (an edit, a ConfigMap swap) than the one whose entries are used."""
    data = _read_catalogue(path, origin)
    return _catalogue(path, data), catalogue_digest(data)


def prompt_in_force(settings: Settings, current: Routing | None = None) -> tuple[Path, str, bool]:
    """The prompt file to read now, where it came from in words, and whether it is the packaged one: the prompt
    setting's file; only when that setting is unset (its default) and the file is not there, the packaged prompt
    of the same name. Decided at each load, not once when settings are read, so an operator's prompts/route.md
    created later wins at the next reload; a path someone wrote (flag, environment, .env) is never replaced: its
    typo is an error. Nor is the operator's file once in force (`current`): deleted while serving, or missing
    for a moment while an editor saves it, the reload fails and keeps it rather than switch prompts silently."""
    path, origin = settings.prompt, settings.origin("prompt")
    fallback_allowed = current is None or current.prompt_packaged
    if settings.prompt_is_default() and fallback_allowed and not path.exists():
        packaged = defaults.prompt(path.name)
        if packaged is not None:
            return packaged, f"the packaged {path.name}: there is no {path.absolute()}, {origin}", True
    return path, origin, False


def load_routing(settings: Settings, current: Routing | None = None) -> Routing:
    """Reads and compiles (touching no event loop, so a reload runs it in a thread). Returns `current` itself
    when the files hold what it was built from: a SIGHUP with nothing changed compiles nothing."""
    catalogue_bytes = _read_catalogue(settings.destinations, settings.origin("destinations"))
    prompt_path, prompt_origin, packaged = prompt_in_force(settings, current)
    # the operator's prompts/route.md in force: if it is gone, the error says it is kept (prompt_in_force)
    operators = current is not None and not current.prompt_packaged and settings.prompt_is_default()
    prompt_bytes = _read_prompt(prompt_path, prompt_origin, operators)
    # the prompt's path too: the operator's file replacing the packaged one is a change, even with the same bytes
    digest = hashlib.sha256(b"%d:%b%d:%b%b" % (len(catalogue_bytes), catalogue_bytes, len(bytes(prompt_path)),
                                               bytes(prompt_path), prompt_bytes)).hexdigest()
    if current is not None and current.digest == digest:
        return current
    catalogue = _catalogue(settings.destinations, catalogue_bytes)
    if settings.on_llm_failure == "fallback" and not catalogue.fallback:
        raise CatalogueError(f"{settings.destinations}: fallback: SWITCHBOARD_ON_LLM_FAILURE=fallback needs a "
                             "top-level \"fallback\" id in the catalogue")
    prompt = prompt_mod.parse(_text(prompt_path, prompt_bytes, PromptError), str(prompt_path))
    return Routing(catalogue, prompt, prompt_mod.compile_all(prompt, catalogue), digest,
                   catalogue_digest(catalogue_bytes), prompt_origin, packaged)


def catalogue_digest(data: bytes) -> str:
    """The catalogue's hash as /healthz, metrics and every decision line name it: 12 hex digits of SHA-256."""
    return hashlib.sha256(data).hexdigest()[:12]


def startup_checks(settings: Settings) -> Routing:
    """What `serve` refuses to start on in the files and settings, short of binding the port and opening the
    recording directory (the dataset's to check: `serve` opens its recorder, `check` tries one). Raises
    CatalogueError, PromptError or ConfigError with the fix in the message."""
    routing = load_routing(settings)
    if spec_for(settings.router_choice()[0]).capabilities.calls_model and not settings.llm_configured:
        raise ConfigError("SWITCHBOARD_ROUTER=llm needs OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (any "
                          "OpenAI-compatible server); or set SWITCHBOARD_ROUTER=offline")
    return routing
