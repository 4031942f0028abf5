"""The LLM router: one structured-output chat completion picks an id from the allowed set.

The model only ever names an id. Anything else it writes (a phone number, a refusal, prose, malformed
JSON) is an InvalidAnswer; numbers and URIs come from the catalogue alone.

OpenAI-compatible servers differ in what they accept, so what a server refuses is learned once per server
(and kept across reloads, see Clients.traits): the output mode steps down from a strict `json_schema` to
`json_object` with the schema attached (llama.cpp and llama-cpp-python constrain by it), to a bare
`json_object`, to plain text; log-probabilities stop being asked for; length keywords leave the schema.

Nothing the server sends is trusted to be small, quick to parse or well formed. The body is read with a cap
and an error body is cut short (app.routers.completion, which also holds the response's models); the answer
text is searched with plain string operations over bounded slices, never a regular expression;
log-probabilities that cannot be used mean no score (and why), never a failed attempt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import httpx2  # the openai package's own HTTP stack
import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from app.catalogue.destinations import NONE
from app.routers.base import Capabilities, Choice, InvalidAnswer, ModelError, Parts, Query, Retry, Usage
from app.routers.completion import STREAMED, Completion, CompletionChoice, bound_error_bodies, read_capped, response_cap
from app.routers.confidence import SCAN_CHARS, TokenLogprob, find_word, id_span, measure
from app.routers.prompt import CompiledPrompt, Prompt

MODES = ("json_schema", "json_object_schema", "json_object", "text")
TOP_LOGPROBS = 3
ERROR_TEXT_CHARS = 32_000  # of an error's text, searched for what the server refused
# Literal alternatives (no repeats), searched in an error's text cut at ERROR_TEXT_CHARS: linear and bounded.
# A refusal of the output format names it: OpenAI and vLLM say response_format/json_schema; llama.cpp says
# 'response_format type must be one of "text" or "json_object"'; llama-cpp-python answers HTTP 500 with
# pydantic's "Input should be 'text' or 'json_object'".
_REFUSED_FORMAT = re.compile(r"response_format|json_schema|json_object", re.IGNORECASE)
_REFUSED_LOGPROBS = re.compile(r"logprobs", re.IGNORECASE)
_REFUSED_LENGTH = re.compile(r"maxLength|minLength", re.IGNORECASE)
_REFUSAL_WORDS = re.compile(r"must be|should be|not supported|unsupported|invalid|unknown|not allowed|expected",
                            re.IGNORECASE)


class ModelAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    destination: str
    reason: str | None = None


@dataclass
class ServerTraits:
    """What one server was seen to refuse; learned on the first refusal, then never asked again."""

    mode: str = "json_schema"
    # unknown (no answer yet) | given | refused (an HTTP error named them) | absent (asked, none came back)
    logprobs: str = "unknown"
    length_keywords: bool = True  # maxLength in the schema

    @property
    def ask_logprobs(self) -> bool:
        return self.logprobs in ("unknown", "given")


@dataclass
class Endpoint:
    client: openai.AsyncOpenAI
    model: str

    def __post_init__(self) -> None:
        bound_error_bodies(self.client)

    @property
    def key(self) -> str:
        """What traits are learned for: a server and a model (a fallback model on the same server may differ)."""
        return f"{self.client.base_url} ({self.model})"


@dataclass
class LLMRouter:
    primary: Endpoint
    prompt: Prompt
    compiled: dict[tuple[str, ...], CompiledPrompt]
    output_mode: str = "auto"
    secondary: Endpoint | None = None  # where the hedged request goes; default the primary
    # Shared with the clients, so that what was learned outlives a reload (see Clients.traits).
    traits: dict[str, ServerTraits] = field(default_factory=dict)
    on_learned: Callable[[str, str, str], None] | None = None  # (server, what, now): for the log
    name: str = ""  # given by the registry (app.routers.registry), which owns router names

    # A model server answers: breaker, hedging, warm-up apply; its score is the probability of the id it wrote.
    capabilities: ClassVar[Capabilities] = Capabilities(calls_model=True, scored_by="logprobs")

    @classmethod
    def build(cls, parts: Parts, name: str) -> Self:
        clients, settings = parts.clients, parts.settings
        if clients is None:  # the engine refuses this first, with the fix; here it would be a bug
            raise ValueError("the LLM router needs model clients")
        secondary = None  # where hedged requests go: the fallback model and/or server, else the primary
        if settings.fallback_model or clients.secondary is not None:
            secondary = Endpoint(clients.secondary or clients.primary, settings.fallback_model or settings.model)
        return cls(Endpoint(clients.primary, settings.model), parts.prompt, parts.compiled, settings.output_mode,
                   secondary, traits=clients.traits, on_learned=clients.on_learned, name=name)

    @property
    def model(self) -> str:
        return self.primary.model

    @property
    def mode(self) -> str:
        return self._traits(self.primary).mode

    @property
    def logprobs(self) -> str:
        """Whether the model's server gives log-probabilities: unknown, given, refused or absent."""
        return self._traits(self.primary).logprobs

    def _traits(self, endpoint: Endpoint) -> ServerTraits:
        traits = self.traits.get(endpoint.key)
        if traits is None:
            start = "json_object_schema" if self.output_mode == "json_object" else \
                "json_schema" if self.output_mode == "auto" else self.output_mode
            traits = self.traits[endpoint.key] = ServerTraits(mode=start)
        return traits

    async def choose(self, query: Query, timeout: float, *, retry: Retry | None = None,
                     hedge: bool = False) -> Choice:
        compiled = self.compiled[query.compiled_key].for_allowed(query.allowed)
        messages = compiled.messages(query.text, query.conversation.hint, query.unreachable)
        if retry is not None:
            messages.append({"role": "assistant", "content": (retry.answer or "")[:200]})
            messages.append({"role": "user", "content": f"That answer was refused: {retry.problem}. Answer again "
                                                        f"with exactly one of these ids: {compiled.ids_text}."})
        endpoint = self.secondary if hedge and self.secondary is not None else self.primary
        choice = await self._once(endpoint, compiled, messages, timeout)
        return dataclasses.replace(choice, hedged=True) if hedge else choice

    async def _once(self, endpoint: Endpoint, compiled: CompiledPrompt, messages: list[dict[str, str]],
                    timeout: float) -> Choice:
        traits = self._traits(endpoint)
        for _ in range(len(MODES) + 3):  # each pass asks for less: the loop ends
            sent = dataclasses.replace(traits)  # what this request asks for, whatever others learn meanwhile
            request = self._request(endpoint.model, compiled, messages, sent)
            try:
                # The client's documented raw-request path: same HTTP stack, auth, timeouts and error mapping as
                # chat.completions.create, without its generic request transform and response model, which
                # cost about half of the client's CPU per call. Streamed: the body is ours to read, with a cap
                # (cancellation at the deadline lands in the read, and `finally` drops the connection).
                raw = await endpoint.client.post(
                    "/chat/completions", body=request, cast_to=httpx2.Response,
                    options={"timeout": max(timeout, 0.001), "headers": STREAMED})
                try:
                    body = await read_capped(raw, response_cap(request))
                finally:
                    await raw.aclose()
                response = Completion.read(body)  # after the cap: parsing is bounded by it
            except openai.APIStatusError as exc:
                if self._learn(endpoint, traits, sent, exc):
                    continue  # the server refused something optional: ask again without it, at once
                raise _classify(exc) from None
            except openai.APIError as exc:
                raise _classify(exc) from None
            except (httpx2.TransportError, httpx2.StreamError) as exc:  # reading the body: the SDK maps the rest
                if isinstance(exc, httpx2.TimeoutException) and not _refused(exc):
                    raise ModelError("timeout", "the model's answer stalled", retryable=True) from None
                raise ModelError("connection", f"the response broke off: {_short(exc)}", retryable=True) from None
            except (ValidationError, ValueError, TypeError, httpx2.DecodingError) as exc:
                raise ModelError("bad_response", f"unreadable response: {_short(exc)}", retryable=True) from None
            return self._parse(response, compiled, sent, endpoint, traits)
        raise ModelError("bad_request", "the server refused every form of the request", retryable=False)

    def _learn(self, endpoint: Endpoint, traits: ServerTraits, sent: ServerTraits,
               exc: openai.APIStatusError) -> bool:
        """Step down from what an HTTP error says the server does not do, judged against what this request
        sent (several refusals of one burst step down once, not once each). True: ask again."""
        message = str(exc)[:ERROR_TEXT_CHARS]  # what the server said, searched for what it refused: bounded
        if exc.status_code < 400 or exc.status_code == 429:
            return False
        if sent.ask_logprobs and _REFUSED_LOGPROBS.search(message):  # o4-mini says so with a 403
            if traits.ask_logprobs:
                self._note(endpoint, traits, "logprobs", "refused")
            return True
        if exc.status_code in (401, 403, 404):
            return False
        if sent.length_keywords and _REFUSED_LENGTH.search(message) and sent.mode != "text":
            if traits.length_keywords:
                self._note(endpoint, traits, "length_keywords", False)
            return True
        can_step = self.output_mode == "auto" or (self.output_mode == "json_object" and
                                                  sent.mode == "json_object_schema")
        # A 5xx counts only when it reads as a refusal (llama-cpp-python's "must be text or json_object"),
        # not a passing error that happens to quote the request.
        refusal = exc.status_code < 500 or _REFUSAL_WORDS.search(message)
        if can_step and sent.mode != "text" and refusal and _REFUSED_FORMAT.search(message):
            if traits.mode == sent.mode:
                self._note(endpoint, traits, "mode", MODES[MODES.index(sent.mode) + 1])
            return True
        return False

    def _note(self, endpoint: Endpoint, traits: ServerTraits, what: str, value: str | bool) -> None:
        setattr(traits, what, value)
        if self.on_learned is not None:
            self.on_learned(endpoint.key, what, str(value))

    def _request(self, model: str, compiled: CompiledPrompt, messages: list[dict[str, str]],
                 traits: ServerTraits) -> dict[str, Any]:
        header = self.prompt.header
        mode = traits.mode
        request: dict[str, Any] = {"model": model, "n": 1,
                                   "max_tokens": header.max_tokens or compiled.max_tokens(mode == "text")}
        if header.temperature is not None:
            request["temperature"] = header.temperature
        if traits.ask_logprobs:
            request["logprobs"], request["top_logprobs"] = True, TOP_LOGPROBS
        schema = compiled.schema if traits.length_keywords else _without_length(compiled.schema)
        if mode == "json_schema":
            request["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "transfer_choice", "strict": True, "schema": schema}}
            request["messages"] = messages
            return request
        keys = '{"reason": "...", "destination": "<id>"}' if header.reason else '{"destination": "<id>"}'
        shape = "Answer with the id alone." if mode == "text" else f"Answer with JSON only, exactly {keys}."
        note = f"\n\n{shape} The id must be one of: {compiled.ids_text}."
        request["messages"] = [*messages[:-1], {"role": messages[-1]["role"],
                                                "content": messages[-1]["content"] + note}]
        if mode == "json_object_schema":
            request["response_format"] = {"type": "json_object", "schema": schema}
        elif mode == "json_object":
            request["response_format"] = {"type": "json_object"}
        return request

    def _parse(self, response: Completion, compiled: CompiledPrompt, sent: ServerTraits, endpoint: Endpoint,
               traits: ServerTraits) -> Choice:
        mode = sent.mode
        usage = response.usage.usage() if response.usage else Usage()
        if not response.choices:
            raise InvalidAnswer("the response has no choices", usage=usage)
        first = response.choices[0]
        message = first.message
        if message.refusal:
            raise InvalidAnswer("the model refused", message.refusal, usage)
        raw = message.content or ""
        content = raw.strip()
        if first.finish_reason == "length" and mode != "text":
            raise InvalidAnswer("the answer was cut off at max_tokens", content, usage)
        allowed = (*compiled.allowed, NONE)
        if mode == "text":
            destination, reason = _id_from_text(content, allowed, usage), None
        else:
            answer = _answer_from_json(content, usage)
            destination, reason = answer.destination.strip(), answer.reason
        if destination not in allowed:
            raise InvalidAnswer(f"answer is not an allowed id ({len(destination)} chars)", content, usage)
        score, unscored = self._confidence(first, raw, destination, sent, endpoint, traits)
        return Choice(destination=destination, reason=reason, model=endpoint.model, usage=usage, score=score,
                      candidate=destination, unscored=unscored)

    def _confidence(self, choice: CompletionChoice, raw: str, destination: str, sent: ServerTraits,
                    endpoint: Endpoint, traits: ServerTraits) -> tuple[float | None, str | None]:
        """(score, None), or (None, why this answer has no score though the server gives log-probabilities).
        (None, None) when the server gives none at all: there is no score to have (see the README)."""
        if not sent.ask_logprobs:
            return None, None
        logprobs = choice.logprobs
        if logprobs is not None and logprobs._unusable is not None:
            if traits.logprobs != "given":
                self._note(endpoint, traits, "logprobs", "given")  # it does send them, if broken
            return None, logprobs._unusable
        tokens = logprobs.content if logprobs is not None else None
        if not tokens:
            if traits.logprobs == "given":  # it gave them before: this answer lacks them, the server does not
                return None, "the answer came without log-probabilities"
            # The server takes the parameter but gives nothing back: stop asking.
            self._note(endpoint, traits, "logprobs", "absent")
            return None, None
        if traits.logprobs != "given":
            self._note(endpoint, traits, "logprobs", "given")
        span = id_span(raw, destination, json_answer=sent.mode != "text")
        if span is None:
            return None, "the id could not be located in the answer's text"
        value, why = measure(raw, span, [TokenLogprob(t.token, t.logprob, tuple(t.bytes) if t.bytes is not None
                                                      else None) for t in tokens])
        return (None, why) if value is None else (round(value, 4), None)


def _without_length(schema: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(schema)
    cleaned: dict[str, Any] = json.loads(text)
    for prop in cleaned.get("properties", {}).values():
        prop.pop("maxLength", None)
        prop.pop("minLength", None)
    return cleaned


def _strip_fence(content: str) -> str:
    """The JSON inside a Markdown code fence (```json ... ```), by slicing: a regular expression for it took
    cubic time on a fence opened and never closed (2,000 spaces: 3.9 s, the event loop blocked)."""
    if len(content) >= 6 and content.startswith("```") and content.endswith("```"):
        inner = content[3:-3]
        return (inner[4:] if inner.startswith("json") else inner).strip()
    return content


def _answer_from_json(content: str, usage: Usage) -> ModelAnswer:
    content = _strip_fence(content)
    try:
        return ModelAnswer.model_validate_json(content)
    except ValidationError:
        raise InvalidAnswer("answer is not JSON with a string 'destination'", content, usage) from None


def _id_from_text(content: str, allowed: tuple[str, ...], usage: Usage) -> str:
    cleaned = content[:SCAN_CHARS].strip().strip("`'\".").lower()
    if cleaned in allowed:
        return cleaned
    mentioned = {a for a in allowed if find_word(content, a) >= 0}  # plain string search over a bounded prefix
    if len(mentioned) == 1:
        return mentioned.pop()
    raise InvalidAnswer("text answer does not name exactly one allowed id", content, usage)


def _classify(exc: openai.APIError) -> ModelError:
    if isinstance(exc, openai.APITimeoutError) and not _refused(exc):
        return ModelError("timeout", "the model did not answer in time", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ModelError("connection", _short(exc), retryable=True)
    if isinstance(exc, openai.RateLimitError):
        return ModelError("rate_limited", _short(exc), retryable=True, retry_after=_retry_after(exc))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500:
            return ModelError("server_error", f"HTTP {status}", retryable=True)
        if status in (401, 403):
            return ModelError("auth", f"HTTP {status}: check OPENAI_API_KEY", retryable=False)
        if status == 404:
            return ModelError("not_found", "HTTP 404: check SWITCHBOARD_MODEL and OPENAI_BASE_URL", retryable=False)
        if status == 400:
            return ModelError("bad_request", _short(exc), retryable=False)
        return ModelError("http_error", f"HTTP {status}", retryable=status in (408, 409))
    return ModelError("bad_response", _short(exc), retryable=True)


def _refused(exc: BaseException) -> bool:
    """True when a 'timeout' is really a refused or reset connection: the aiohttp transport reports a refused
    connection as a connect timeout, which would send operators looking at the wrong thing."""
    seen: BaseException | None = exc
    for _ in range(8):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, ConnectionError):
            return True
    return False


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) / scale
            except ValueError:
                return None
            return max(0.0, seconds) if math.isfinite(seconds) else None
    return None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc)[:1000].split())[:200]
