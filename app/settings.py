"""Every setting, its environment variable and its default: the one source of truth.

The README's settings table is checked against this module by the tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

DEFAULT_MODEL = "gpt-4.1-mini"  # small, fast, non-reasoning; supports strict json_schema output


class SettingsError(Exception):
    """A setting has a value that cannot be used; the message names the variable."""


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The model
    openai_api_key: SecretStr | None = Field(
        None, description="API key for the model server (the openai client's own variable).",
        json_schema_extra=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(
        None, description="Base URL of any OpenAI-compatible server (vLLM, Ollama, llama.cpp, gateways).",
        json_schema_extra=_env("OPENAI_BASE_URL"))
    model: str = Field(DEFAULT_MODEL, description="Model that picks the destination.",
                       json_schema_extra=_env("SWITCHBOARD_MODEL"))
    output_mode: Literal["auto", "json_schema", "json_object", "text"] = Field(
        "auto", description="Structured output: `auto` uses json_schema and steps down when the server refuses it.",
        json_schema_extra=_env("SWITCHBOARD_OUTPUT_MODE"))
    http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp", description="HTTP transport under the openai client: `aiohttp` (the SDK's documented option for "
        "concurrency; about twice the throughput here) or `httpx` (the SDK's default).",
        json_schema_extra=_env("SWITCHBOARD_HTTP_CLIENT"))
    router: Literal["auto", "llm", "offline"] = Field(
        "auto", description="`auto`: the LLM when OPENAI_API_KEY or OPENAI_BASE_URL is set, else offline.",
        json_schema_extra=_env("SWITCHBOARD_ROUTER"))

    # Time and failure
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds for the whole answer, retries included.",
                           json_schema_extra=_env("SWITCHBOARD_TIMEOUT"))
    max_attempts: int = Field(3, ge=1, le=10, description="Model attempts per decision, while the budget allows.",
                              json_schema_extra=_env("SWITCHBOARD_MAX_ATTEMPTS"))
    on_llm_failure: Literal["error", "fallback", "offline"] = Field(
        "error", description="When the LLM fails or runs out of time. `error`: the catalogue's `fallback` if it "
        "names one, else an error. `fallback`: the same, and start-up refuses a catalogue without one. `offline`: "
        "the offline router's confident choice first.",
        json_schema_extra=_env("SWITCHBOARD_ON_LLM_FAILURE"))
    hedge_delay: float = Field(
        1.5, ge=0, description="Seconds without an answer before one more identical request is sent, at the "
        "least: the delay follows the 95th percentile of recent model latencies. 0 turns hedging off.",
        json_schema_extra=_env("SWITCHBOARD_HEDGE_DELAY"))
    hedge_max_share: float = Field(
        0.05, ge=0, le=1, description="The largest share of model attempts that may be hedged.",
        json_schema_extra=_env("SWITCHBOARD_HEDGE_MAX_SHARE"))
    fallback_model: str | None = Field(None, description="Model for the hedged request (default: the same model).",
                                       json_schema_extra=_env("SWITCHBOARD_FALLBACK_MODEL"))
    fallback_base_url: str | None = Field(
        None, description="Base URL for the hedged request (default: the same server).",
        json_schema_extra=_env("SWITCHBOARD_FALLBACK_BASE_URL"))
    breaker_failures: int = Field(5, ge=0, description="Consecutive model failures that open the circuit "
                                  "breaker; 0 turns it off.", json_schema_extra=_env("SWITCHBOARD_BREAKER_FAILURES"))
    breaker_cooldown: float = Field(10.0, gt=0, description="Seconds the breaker stays open before one probe.",
                                    json_schema_extra=_env("SWITCHBOARD_BREAKER_COOLDOWN"))
    warmup: bool = Field(False, description="Send one routing request at start-up so the provider compiles the "
                         "schema (costs one call).", json_schema_extra=_env("SWITCHBOARD_WARMUP"))

    # Catalogue, prompt, conversation
    destinations: Path = Field(Path("destinations.json"), description="The catalogue file.",
                               json_schema_extra=_env("SWITCHBOARD_DESTINATIONS"))
    prompt: Path = Field(Path("prompts/route.md"), description="The routing prompt file.",
                         json_schema_extra=_env("SWITCHBOARD_PROMPT"))
    min_confidence: float = Field(
        0.0, ge=0, le=1, description="An LLM answer whose probability (from the model's log-probabilities) is "
        "below this is not routed: the failure policy answers. 0 turns it off.",
        json_schema_extra=_env("SWITCHBOARD_MIN_CONFIDENCE"))
    offline_threshold: float = Field(
        0.4, ge=0, le=1, description="Offline router confidence below which it answers `none`.",
        json_schema_extra=_env("SWITCHBOARD_OFFLINE_THRESHOLD"))
    include_system_prompt: bool = Field(
        False, description="Show the voice assistant's own system prompt to the router.",
        json_schema_extra=_env("SWITCHBOARD_INCLUDE_SYSTEM_PROMPT"))
    conversation_chars: int = Field(
        8000, ge=500, description="Size budget for the conversation shown to the router; long calls keep the "
        "opening caller turns and the most recent turns.", json_schema_extra=_env("SWITCHBOARD_CONVERSATION_CHARS"))
    reload_interval: float = Field(
        2.0, ge=0, description="Seconds between checks for a changed catalogue or prompt; 0 turns polling off "
        "(SIGHUP still reloads).", json_schema_extra=_env("SWITCHBOARD_RELOAD_INTERVAL"))

    # HTTP and security
    secret: SecretStr | None = Field(
        None, description="Shared secret: accepted as `X-Vapi-Secret`, `Authorization: Bearer`, or in "
        "SWITCHBOARD_SECRET_HEADER.", json_schema_extra=_env("SWITCHBOARD_SECRET"))
    secret_header: str | None = Field(
        None, description="Custom header carrying the bearer token (Vapi's BearerAuthenticationPlan.headerName).",
        json_schema_extra=_env("SWITCHBOARD_SECRET_HEADER"))
    hmac_secret: SecretStr | None = Field(None, description="Turns on HMAC signature checks "
                                          "(Vapi's HMACAuthenticationPlan.secretKey).",
                                          json_schema_extra=_env("SWITCHBOARD_HMAC_SECRET"))
    hmac_algorithm: Literal["sha256", "sha512", "sha1"] = Field(
        "sha256", description="HMAC algorithm.", json_schema_extra=_env("SWITCHBOARD_HMAC_ALGORITHM"))
    hmac_signature_header: str = Field("x-signature", description="Header with the signature.",
                                       json_schema_extra=_env("SWITCHBOARD_HMAC_SIGNATURE_HEADER"))
    hmac_timestamp_header: str = Field("x-timestamp", description="Header with the timestamp.",
                                       json_schema_extra=_env("SWITCHBOARD_HMAC_TIMESTAMP_HEADER"))
    hmac_signature_prefix: str = Field("", description="Prefix before the signature, e.g. `sha256=`.",
                                       json_schema_extra=_env("SWITCHBOARD_HMAC_SIGNATURE_PREFIX"))
    hmac_payload_format: str = Field(
        "{timestamp}.{body}", description="What is signed: `{timestamp}` `{body}` `{method}` `{url}`.",
        json_schema_extra=_env("SWITCHBOARD_HMAC_PAYLOAD_FORMAT"))
    hmac_encoding: Literal["hex", "base64"] = Field("hex", description="Signature encoding.",
                                                    json_schema_extra=_env("SWITCHBOARD_HMAC_ENCODING"))
    hmac_secret_is_base64: bool = Field(False, description="The secret is base64 and is decoded before use.",
                                        json_schema_extra=_env("SWITCHBOARD_HMAC_SECRET_IS_BASE64"))
    hmac_tolerance: float = Field(300.0, gt=0, description="Seconds a signed timestamp stays acceptable "
                                  "(replay window).", json_schema_extra=_env("SWITCHBOARD_HMAC_TOLERANCE"))
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576,
                                description="Largest request body accepted (413 above).",
                                json_schema_extra=_env("SWITCHBOARD_MAX_BODY_BYTES"))
    read_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a client has to send a request's headers, and again its body; "
        "slower ones are cut off (408).", json_schema_extra=_env("SWITCHBOARD_READ_TIMEOUT"))
    max_connections: int = Field(
        2048, ge=16, le=1_000_000, description="Connections and requests served at once (503 beyond); lowered "
        "at start-up to what the open-file limit can hold.", json_schema_extra=_env("SWITCHBOARD_MAX_CONNECTIONS"))
    host: str = Field("127.0.0.1", min_length=1, description="Interface `serve` listens on; 0.0.0.0 for all.",
                      json_schema_extra=_env("SWITCHBOARD_HOST"))
    port: int = Field(8000, ge=1, le=65535, description="Port `serve` listens on.",
                      json_schema_extra=_env("SWITCHBOARD_PORT"))

    # Logs and recording
    log_format: Literal["json", "text"] = Field("json", description="Log line format.",
                                                json_schema_extra=_env("SWITCHBOARD_LOG_FORMAT"))
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level.", json_schema_extra=_env("SWITCHBOARD_LOG_LEVEL"))
    log_conversations: bool = Field(False, description="Put conversation text and phone numbers in logs.",
                                    json_schema_extra=_env("SWITCHBOARD_LOG_CONVERSATIONS"))
    record_dir: Path | None = Field(None, description="Append every answered transfer request to a dataset "
                                    "file here (one file per process).",
                                    json_schema_extra=_env("SWITCHBOARD_RECORD_DIR"))
    record_redact: bool = Field(True, description="Redact caller numbers, customer details and phoneNumber "
                                "secrets in recordings.", json_schema_extra=_env("SWITCHBOARD_RECORD_REDACT"))

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

    @classmethod
    def env_names(cls) -> dict[str, str]:
        return {name: str((f.json_schema_extra or {})["env"])  # type: ignore[index]
                for name, f in cls.model_fields.items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from the environment; keyword overrides (CLI flags) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, env in cls.env_names().items():
            raw = environ.get(env)
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            names = cls.env_names()
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                env = names.get(field, field)
                problems.append(f"{env}={values.get(field)!r}: {err['msg']}")
            raise SettingsError("Invalid settings: " + "; ".join(problems)) from None
