"""The LLM router: one structured-output chat completion picks an id from the allowed set.

The model only ever names an id. Anything else it writes (a phone number, a refusal, prose, malformed
JSON) is an InvalidAnswer; numbers and URIs come from the catalogue alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import httpx2  # the openai package's own HTTP stack
import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from .catalogue import NONE
from .prompt import CompiledPrompt, Prompt
from .router import Choice, InvalidAnswer, ModelError, Query

MODES = ("json_schema", "json_object", "text")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_REFUSED_FORMAT = re.compile(r"response_format|json_schema|json_object|structured|grammar|not supported",
                             re.IGNORECASE)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Message(_Loose):
    content: str | None = None
    refusal: str | None = None


class CompletionChoice(_Loose):
    message: Message


class Usage(_Loose):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0


class Completion(_Loose):
    """The part of an OpenAI chat completion that routing reads."""

    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    destination: str
    reason: str | None = None


@dataclass
class Endpoint:
    client: openai.AsyncOpenAI
    model: str


@dataclass
class LLMRouter:
    primary: Endpoint
    prompt: Prompt
    compiled: dict[tuple[str, ...], CompiledPrompt]
    output_mode: str = "auto"
    hedge_delay: float = 0.0
    secondary: Endpoint | None = None  # where the hedged request goes; default the primary
    # Output mode learned per server by stepping down from json_schema; shared with the clients so that it
    # outlives a reload (see Clients.learned_modes).
    learned: dict[str, str] = field(default_factory=dict)
    name: str = "llm"

    @property
    def model(self) -> str:
        return self.primary.model

    @property
    def mode(self) -> str:
        return self._mode_for(self.primary)

    def _mode_for(self, endpoint: Endpoint) -> str:
        if self.output_mode != "auto":
            return self.output_mode
        return self.learned.get(str(endpoint.client.base_url), "json_schema")

    async def choose(self, query: Query, timeout: float) -> Choice:
        compiled = self.compiled[query.compiled_key].for_allowed(query.allowed)
        messages = compiled.messages(query.text, query.conversation.hint, query.unreachable)
        if self.hedge_delay <= 0 or timeout <= self.hedge_delay:
            return await self._once(self.primary, compiled, messages, timeout)
        return await self._hedged(compiled, messages, timeout)

    async def _hedged(self, compiled: CompiledPrompt, messages: list[dict[str, str]], timeout: float) -> Choice:
        """Send one more identical request if the first is slow; the first valid answer wins."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.ensure_future(self._once(self.primary, compiled, messages, timeout))
        tasks: set[asyncio.Future[Choice]] = {first}
        try:
            done, _ = await asyncio.wait(tasks, timeout=self.hedge_delay)
            if not done:
                second = asyncio.ensure_future(self._once(self.secondary or self.primary, compiled, messages,
                                                          timeout - (loop.time() - started)))
                tasks.add(second)
            error: BaseException | None = None
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        choice = task.result()
                        if task is not first:
                            choice = dataclasses.replace(choice, hedged=True)
                        return choice
                    error = error or exc
            assert error is not None
            raise error
        finally:
            for task in tasks:
                task.cancel()

    async def _once(self, endpoint: Endpoint, compiled: CompiledPrompt, messages: list[dict[str, str]],
                    timeout: float) -> Choice:
        while True:
            mode = self._mode_for(endpoint)
            try:
                # The client's documented raw-request path: same HTTP stack, auth, timeouts and error mapping as
                # chat.completions.create, without its generic request transform and response model, which
                # cost about half of the client's CPU per call. The answer is validated by our own model below.
                raw = await endpoint.client.post(
                    "/chat/completions", body=self._request(endpoint.model, compiled, messages, mode),
                    cast_to=httpx2.Response, options={"timeout": max(timeout, 0.001)})
                response = Completion.model_validate_json(raw.content)
            except openai.BadRequestError as exc:
                if self.output_mode == "auto" and mode != "text" and _REFUSED_FORMAT.search(str(exc)):
                    # The server does not do this kind of structured output: step down for good, try again.
                    self.learned[str(endpoint.client.base_url)] = MODES[MODES.index(mode) + 1]
                    continue
                raise ModelError("bad_request", _short(exc), retryable=False) from None
            except openai.APIError as exc:
                raise _classify(exc) from None
            except (ValidationError, ValueError, TypeError) as exc:
                raise ModelError("bad_response", f"unreadable response: {_short(exc)}", retryable=True) from None
            return self._parse(response, compiled, mode, endpoint.model)

    def _request(self, model: str, compiled: CompiledPrompt, messages: list[dict[str, str]],
                 mode: str) -> dict[str, Any]:
        header = self.prompt.header
        request: dict[str, Any] = {"model": model, "max_tokens": header.max_tokens, "n": 1}
        if header.temperature is not None:
            request["temperature"] = header.temperature
        if mode == "json_schema":
            request["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "transfer_choice", "strict": True, "schema": compiled.schema}}
            request["messages"] = messages
        else:
            keys = '{"reason": "...", "destination": "<id>"}' if header.reason else '{"destination": "<id>"}'
            shape = f"Answer with JSON only, exactly {keys}." if mode == "json_object" else \
                "Answer with the id alone."
            note = f"\n\n{shape} The id must be one of: {compiled.ids_text}."
            request["messages"] = [messages[0], {"role": "user", "content": messages[1]["content"] + note}]
            if mode == "json_object":
                request["response_format"] = {"type": "json_object"}
        return request

    def _parse(self, response: Completion, compiled: CompiledPrompt, mode: str, model: str) -> Choice:
        usage = response.usage or Usage()
        if not response.choices:
            raise InvalidAnswer("the response has no choices")
        message = response.choices[0].message
        if message.refusal:
            raise InvalidAnswer("the model refused")
        content = (message.content or "").strip()
        allowed = (*compiled.allowed, NONE)
        if mode == "text":
            destination, reason = _id_from_text(content, allowed), None
        else:
            answer = _answer_from_json(content)
            destination, reason = answer.destination.strip(), answer.reason
        if destination not in allowed:
            raise InvalidAnswer(f"answer is not an allowed id ({len(destination)} chars)")
        return Choice(destination=destination, reason=reason, model=model, prompt_tokens=usage.prompt_tokens or 0,
                      completion_tokens=usage.completion_tokens or 0)


def _answer_from_json(content: str) -> ModelAnswer:
    fenced = _FENCE.match(content)
    if fenced:
        content = fenced.group(1)
    try:
        return ModelAnswer.model_validate_json(content)
    except ValidationError:
        raise InvalidAnswer("answer is not JSON with a string 'destination'") from None


def _id_from_text(content: str, allowed: tuple[str, ...]) -> str:
    cleaned = content.strip().strip("`'\".").lower()
    if cleaned in allowed:
        return cleaned
    mentioned = {a for a in allowed if re.search(rf"(?<![\w-]){re.escape(a)}(?![\w-])", content.lower())}
    if len(mentioned) == 1:
        return mentioned.pop()
    raise InvalidAnswer("text answer does not name exactly one allowed id")


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
                return max(0.0, float(value) / scale)
            except ValueError:
                return None
    return None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
