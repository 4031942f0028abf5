"""Every setting, its environment variable and its default: the one source of truth.

Read by pydantic-settings from the environment (SWITCHBOARD_<NAME>, and the openai client's own
OPENAI_API_KEY and OPENAI_BASE_URL) and, when there is one, a `.env` file: the one SWITCHBOARD_ENV_FILE names,
else `.env` in the working directory; the environment wins over the file, and command-line flags win over both.
A relative path is taken from the working directory when a flag or an environment variable gives it, else (a
value in the .env file, or a path setting left at its default while a .env is in use) from the .env file's folder.
Only an unset prompt setting may fall back to the packaged prompt of the same name, decided at each load
(app/loading.py), never a prompt path someone wrote. The settings table in docs/operations.md is generated from
this module (scripts/settings_table.py) and the tests keep the two equal.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from types import EllipsisType
from typing import Any, Literal

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import UserError, nearest

# The decider keeps RESERVE_S of every answer's time back (for the rescue path, event-loop lag under load and the
# response itself) and starts no retry with less than MIN_ATTEMPT_S left, so the shortest timeout that works is the
# two together. Defined here, the bottom layer, so that settings can refuse a shorter one.
RESERVE_S = 0.15
MIN_ATTEMPT_S = 0.15
MIN_TIMEOUT = RESERVE_S + MIN_ATTEMPT_S

DEFAULT_MODEL = "gpt-4.1-mini"  # small, fast, non-reasoning; supports strict json_schema output
PREFIX = "SWITCHBOARD_"
ENV_FILE = Path(".env")
ENV_FILE_VAR = "SWITCHBOARD_ENV_FILE"  # names another .env file; the environment only (worker processes inherit it)
PATH_FIELDS = ("destinations", "prompt", "record_dir", "data_dir")  # relative ones: from the .env's folder
LOWERCASE = ("output_mode", "http_client", "router", "on_llm_failure", "hmac_algorithm", "hmac_encoding",
             "log_format", "log_level")  # enum-like settings: any case is accepted


class SettingsError(UserError):
    """A setting has a value that cannot be used; the message names the variable."""


class Settings(BaseSettings):
    # Settings(...) reads the environment; Settings.from_env() also reads .env and reports unknown names.
    # extra="ignore" so that an unknown SWITCHBOARD_* name in a .env file is reported as a warning with a guess
    # (see unknown_names), not as a crash; a misspelt keyword argument in code still fails (__init__ below).
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_prefix=PREFIX, case_sensitive=False,
                                      env_file=None, env_ignore_empty=True, populate_by_name=True)

    def __init__(self, **values: Any) -> None:
        names = set(type(self).model_fields) | {"openai_api_key", "openai_base_url"}
        typos = [k for k in values if not k.startswith("_") and k not in names]
        if typos:
            raise TypeError(f"unknown setting(s): {', '.join(typos)}")
        super().__init__(**values)

    # Where each path setting's value came from, in words (from_env fills it): errors about a missing file say it.
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    # The prompt path from_env resolved when the prompt setting is unset: only that one may fall back to the
    # packaged prompt (a path a flag, the environment or a .env names is an error when missing: a typo in it
    # must not silently route with another prompt).
    _default_prompt: Path | None = PrivateAttr(None)

    def origin(self, field: str) -> str:
        """Where a setting's value came from: a flag, the environment, a .env file, or the default."""
        return self._origins.get(field) or f"{self.env_names()[field]}, or its default"

    def prompt_is_default(self) -> bool:
        """The prompt setting is unset (from_env resolved its default): its file may be the packaged one."""
        return self._default_prompt is not None and self.prompt == self._default_prompt

    def with_prompt(self, path: Path, flag: str) -> Settings:
        """These settings with another prompt file, given by a flag (eval's -p): never replaced by the packaged
        one, as with --prompt."""
        settings = self.model_copy(update={"prompt": path})
        settings._origins = {**self._origins, "prompt": origin_text(flag, path)}
        settings._default_prompt = None
        return settings

    # The model
    openai_api_key: SecretStr | None = Field(
        None, description="API key for the model server (the openai client's own variable).",
        validation_alias=AliasChoices("openai_api_key", "OPENAI_API_KEY"))
    openai_base_url: str | None = Field(
        None, description="Base URL of any OpenAI-compatible server (vLLM, Ollama, llama.cpp, gateways).",
        validation_alias=AliasChoices("openai_base_url", "OPENAI_BASE_URL"))
    model: str = Field(DEFAULT_MODEL, description="Model that picks the destination.")
    output_mode: Literal["auto", "json_schema", "json_object", "text"] = Field(
        "auto", description="Structured output: `auto` uses json_schema and steps down when the server refuses it.")
    http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp", description="HTTP transport under the openai client: `aiohttp` (the SDK's documented option for "
        "concurrency; about twice the throughput here) or `httpx` (the SDK's default).")
    router: Literal["auto", "llm", "offline"] = Field(
        "auto", description="`auto`: the LLM when OPENAI_API_KEY or OPENAI_BASE_URL is set, else offline.")

    # Time and failure
    timeout: float = Field(5.0, ge=MIN_TIMEOUT, le=60, description="Seconds for the whole answer, retries "
                           f"included (at least {MIN_TIMEOUT:g}: {RESERVE_S:g} s is kept back for the answer itself).")
    max_attempts: int = Field(3, ge=1, le=10, description="Model attempts per decision, while the budget allows.")
    on_llm_failure: Literal["error", "fallback", "offline"] = Field(
        "error", description="When the LLM fails or runs out of time. `error`: the catalogue's `fallback` if it "
        "names one, else an error. `fallback`: the same, and start-up refuses a catalogue without one. `offline`: "
        "the offline router's confident choice first.")
    hedge_delay: float = Field(
        1.5, ge=0, description="Seconds without an answer before one more identical request is sent, at the "
        "least: the delay follows the 95th percentile of recent model latencies. 0 turns hedging off.")
    hedge_max_share: float = Field(
        0.05, ge=0, le=1, description="The largest share of model attempts that may be hedged.")
    fallback_model: str | None = Field(None, description="Model for the hedged request (default: the same model).")
    fallback_base_url: str | None = Field(
        None, description="Base URL for the hedged request (default: the same server).")
    breaker_failures: int = Field(5, ge=0, description="Consecutive model failures that open the circuit "
                                  "breaker; 0 turns it off.")
    breaker_cooldown: float = Field(10.0, gt=0, description="Seconds the breaker stays open before one probe.")
    warmup: bool = Field(False, description="Send one routing request at start-up so the provider compiles the "
                         "schema (costs one call).")

    # Catalogue, prompt, conversation
    destinations: Path = Field(Path("destinations.json"), description="The catalogue file.")
    prompt: Path = Field(Path("prompts/route.md"), description="The routing prompt file.")
    min_confidence: float = Field(
        0.0, ge=0, le=1, description="An LLM answer whose probability (from the model's log-probabilities) is "
        "below this is not routed: the failure policy answers. 0 turns it off.")
    offline_threshold: float = Field(
        0.4, ge=0, le=1, description="Offline router confidence below which it answers `none`.")
    include_system_prompt: bool = Field(
        False, description="Show the voice assistant's own system prompt to the router.")
    conversation_chars: int = Field(
        8000, ge=500, description="Size budget for the conversation shown to the router; long calls keep the "
        "opening caller turns and the most recent turns.")
    reload_interval: float = Field(
        2.0, ge=0, description="Seconds between checks for a changed catalogue or prompt; 0 turns polling off "
        "(SIGHUP still reloads).")

    # HTTP and security
    secret: SecretStr | None = Field(
        None, description="Shared secret: accepted as `X-Vapi-Secret`, `Authorization: Bearer`, or in "
        "SWITCHBOARD_SECRET_HEADER.")
    secret_header: str | None = Field(
        None, description="Custom header carrying the bearer token (Vapi's BearerAuthenticationPlan.headerName).")
    hmac_secret: SecretStr | None = Field(None, description="Turns on HMAC signature checks "
                                          "(Vapi's HMACAuthenticationPlan.secretKey).")
    hmac_algorithm: Literal["sha256", "sha512", "sha1"] = Field(
        "sha256", description="HMAC algorithm.")
    hmac_signature_header: str = Field("x-signature", description="Header with the signature.")
    hmac_timestamp_header: str = Field("x-timestamp", description="Header with the timestamp.")
    hmac_signature_prefix: str = Field("", description="Prefix before the signature, e.g. `sha256=`.")
    hmac_payload_format: str = Field(
        "{timestamp}.{body}", description="What is signed: `{timestamp}` `{body}` `{method}` `{url}`.")
    hmac_encoding: Literal["hex", "base64"] = Field("hex", description="Signature encoding.")
    hmac_secret_is_base64: bool = Field(False, description="The secret is base64 and is decoded before use.")
    hmac_tolerance: float = Field(300.0, gt=0, description="Seconds a signed timestamp stays acceptable "
                                  "(replay window).")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576,
                                description="Largest request body accepted (413 above).")
    read_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a client has to send a request's headers, and again its body; "
        "slower ones are cut off (408).")
    max_header_bytes: int = Field(
        65_536, ge=4096, le=1_048_576, description="Largest request line and headers together, in bytes, read "
        "before credentials are checked (431 above, and the connection is closed).")
    max_headers: int = Field(100, ge=16, le=1000, description="Most header fields in one request (431 above).")
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token that GET /metrics then requires (401 without it); unset, /metrics is "
        "open, like /healthz.")
    max_connections: int = Field(
        2048, ge=16, le=1_000_000, description="Connections and requests served at once (503 beyond); lowered "
        "at start-up to what the open-file limit can hold.")
    host: str = Field("127.0.0.1", min_length=1, description="Interface `serve` listens on; 0.0.0.0 for all.")
    port: int = Field(8000, ge=1, le=65535, description="Port `serve` listens on.")

    # Logs and recording
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level.")
    log_conversations: bool = Field(False, description="Put conversation text and phone numbers in logs.")
    record_dir: Path | None = Field(None, description="Append every answered transfer request to a dataset "
                                    "file here (one file per process).")
    record_redact: bool = Field(True, description="Redact caller numbers, customer details and phoneNumber "
                                "secrets in recordings.")

    # The decision store (app/store): decisions and Vapi's transfer outcomes
    database_url: str | None = Field(
        None, description="Where decisions and outcomes are kept: unset, an embedded SQLite file in "
        "SWITCHBOARD_DATA_DIR; `sqlite:///PATH`; `postgresql://user@host:port/db` (replicas share it); `none`: "
        "kept nowhere.")
    data_dir: Path = Field(Path("data"), description="Folder of the embedded database (the Docker image uses "
                           "its /data volume).")
    retention_days: float = Field(90.0, gt=0, le=36_500, description="Days decisions and outcomes are kept; older "
                                  "ones are deleted.")
    store_buffer: int = Field(10_000, ge=100, le=1_000_000, description="Rows that wait in memory while the "
                              "database is slow or down; beyond it new rows are dropped (counted and logged).")

    @property
    def llm_configured(self) -> bool:
        return self.openai_api_key is not None or self.openai_base_url is not None

    def router_choice(self) -> tuple[str, str]:
        """Which router runs, and why, in words for the start-up log and /healthz."""
        if self.router == "llm":
            return "llm", "SWITCHBOARD_ROUTER=llm"
        if self.router == "offline":
            return "offline", "SWITCHBOARD_ROUTER=offline"
        if self.llm_configured:
            return "llm", "auto: OPENAI_API_KEY or OPENAI_BASE_URL is set"
        return "offline", "auto: neither OPENAI_API_KEY nor OPENAI_BASE_URL is set"

    @field_validator(*LOWERCASE, mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Settings that each make sense but not together."""
        if "hedge_delay" in self.model_fields_set and 0 < self.timeout <= self.hedge_delay:
            raise ValueError(f"SWITCHBOARD_HEDGE_DELAY={self.hedge_delay:g} is not shorter than SWITCHBOARD_TIMEOUT="
                             f"{self.timeout:g}, so no hedge could ever be sent; lower it, or 0 to turn hedging off")
        if self.fallback_model and self.router == "offline":
            raise ValueError("SWITCHBOARD_FALLBACK_MODEL is set but SWITCHBOARD_ROUTER=offline never calls a model")
        if self.hmac_secret and self.hmac_secret_is_base64:
            try:
                base64.b64decode(self.hmac_secret.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("SWITCHBOARD_HMAC_SECRET is not valid base64, but SWITCHBOARD_HMAC_SECRET_IS_BASE64 "
                                 "is true; paste the secret exactly as Vapi shows it, or set it to false") from None
        if self.secret_header and not self.secret:
            raise ValueError("SWITCHBOARD_SECRET_HEADER names a header for a secret, but SWITCHBOARD_SECRET is unset")
        return self

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Each setting's environment variable."""
        out = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else []
            out[name] = next((str(c) for c in choices if str(c).isupper()), PREFIX + name.upper())
        return out

    @classmethod
    def from_env(cls, env_file: Path | EllipsisType | None = ..., flags: Mapping[str, str] | None = None,
                 **overrides: Any) -> Settings:
        """Every setting from the environment and the .env file (pydantic-settings reads both; the environment
        wins); keyword overrides (CLI flags) win over both. `env_file`: unset, the file env_file() finds; None,
        none. `flags`: the flag that gave each override, named in errors. Raises SettingsError naming the
        variable or flag."""
        use_file = find_env_file() if env_file is ... else env_file if env_file is not None and env_file.is_file() \
            else None
        given = {k: v for k, v in overrides.items() if v is not None}
        names = cls.env_names()
        file_values = _by_name(_read_env_file(use_file))
        try:
            settings = cls(_env_file=use_file, **given)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else ""
                message = str(err["msg"]).removeprefix("Value error, ")
                if field not in names:  # a check across settings: its message names them
                    problems.append(message)
                    continue
                if field in given:  # the value came from a flag: name the flag, as typed
                    flag = (flags or {}).get(field, f"--{field.replace('_', '-')}")
                    problems.append(f"{flag} {given[field]}: {message}")
                    continue
                env = names[field]
                value = _environ(env) or file_values.get(env)
                problems.append(f"{env}={value!r}: {message}")
            raise SettingsError("Invalid settings: " + "; ".join(problems)) from None
        return settings._with_paths(use_file, file_values, given, flags or {})

    def _with_paths(self, env_file: Path | None, file_values: Mapping[str, str], given: Mapping[str, Any],
                    flags: Mapping[str, str]) -> Settings:
        """Relative paths resolved (from the working directory for a flag or an environment variable, else from
        the .env file's folder when one is in use: the value it sets, and a default too, so a project folder
        works from anywhere through SWITCHBOARD_ENV_FILE), and where each path came from, for the errors."""
        names = self.env_names()
        origins: dict[str, str] = {}
        update: dict[str, Path] = {}
        at_default: set[str] = set()
        cwd = Path.cwd()
        for field in PATH_FIELDS:
            env, written = names[field], getattr(self, field)
            base: Path | str = cwd
            if field in given:
                source = flags.get(field, "--" + field.replace("_", "-"))
            elif _environ(env):
                source = f"{env} in the environment"
            elif file_values.get(env) and env_file is not None:  # empty in the file is unset, as pydantic reads it
                source, base = f"{env} in {env_file.absolute()}", env_file.parent.absolute()
            else:
                source = f"the default of {env}"
                at_default.add(field)
                if env_file is not None:
                    base = f"the folder of {env_file.absolute()}"
            origins[field] = origin_text(source, written, base)
            if env_file is not None and base is not cwd and written is not None and not written.is_absolute():
                update[field] = env_file.parent / written  # taken from the .env's folder, as its origin says
        settings = self.model_copy(update=update) if update else self
        settings._origins = origins
        settings._default_prompt = settings.prompt if "prompt" in at_default else None
        return settings

    def llm_configured_text(self) -> str:
        return "OPENAI_API_KEY or OPENAI_BASE_URL is set" if self.llm_configured else \
            "neither OPENAI_API_KEY nor OPENAI_BASE_URL is set"


def origin_text(source: str, path: Path | None, base: Path | str | None = None) -> str:
    """Where a path setting's value came from, in words (Settings.origin): its source (a flag, a variable, a
    default) and, for a relative path, the folder it is taken from (the working directory unless `base`)."""
    if path is None or path.is_absolute():
        return source
    return f"{source}, taken from {Path.cwd() if base is None else base}"


def find_env_file() -> Path | None:
    """The .env file settings are read from: the one SWITCHBOARD_ENV_FILE names (it must exist), else `.env` in
    the working directory if there is one."""
    named = os.environ.get(ENV_FILE_VAR, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SettingsError(f"{ENV_FILE_VAR}={named!r}: no such file ({path.absolute()}); name an existing "
                                ".env file, or unset it to read .env in the working directory")
        return path.absolute()
    return ENV_FILE if ENV_FILE.is_file() else None


def unknown_variables(env_file: Path | EllipsisType | None = ...) -> list[tuple[str, str | None]]:
    """SWITCHBOARD_* names in the environment or the .env file that are no setting, each as written with the
    setting it most likely meant (None: nothing close): the CLI and the service warn about them at start-up
    (SWITCHBOARD_TIMOUT=3 used to be silently ignored), each in its own format."""
    use_file = find_env_file() if env_file is ... else env_file
    found = [*os.environ, *_read_env_file(use_file if use_file is not None and use_file.is_file() else None)]
    return _unknown(found, set(Settings.env_names().values()) | {ENV_FILE_VAR})


def _environ(name: str) -> str | None:
    """A variable's non-empty value in the environment, its name in any case (as pydantic-settings reads it)."""
    value = os.environ.get(name)
    if value is None:
        value = next((v for k, v in os.environ.items() if k.upper() == name), None)
    return value if value else None


def _by_name(values: Mapping[str, str]) -> dict[str, str]:
    """A .env file's values by their variable's name in capitals: pydantic-settings reads a .env's names in any
    case (switchboard_prompt=... sets the prompt), so every look-up here must too; the last line wins, as there."""
    return {name.upper(): value for name, value in values.items()}


def _read_env_file(path: Path | None) -> dict[str, str]:
    if path is None or not path.is_file():
        return {}
    from dotenv import dotenv_values  # pydantic-settings' own .env reader

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _unknown(names: list[str], known: set[str]) -> list[tuple[str, str | None]]:
    out = []
    for name in sorted(set(names)):
        upper = name.upper()
        if upper.startswith(PREFIX) and upper not in known:
            # 0.75, not the usual 0.6: every name shares the SWITCHBOARD_ prefix, which alone makes them look close
            out.append((name, nearest(upper, sorted(known), 0.75)))
    return out

