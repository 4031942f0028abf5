"""What an OpenAI-compatible server's answer looks like, and how it is read without trusting its size.

The pydantic models are the part of a chat completion that routing reads (message, finish reason,
log-probabilities, usage); fields nobody reads are dropped, and log-probabilities that fail validation leave
the answer standing without a score (`Completion.read`). The body is read as a stream and abandoned past the
most an honest answer to the request can take (`response_cap`), so parsing is bounded by construction; an
error body is cut at ERROR_BODY_BYTES before the SDK reads it (`bound_error_bodies`: an event hook on the
client's HTTP stack, so both transports are covered).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import httpx2  # the openai package's own HTTP stack
import openai
from pydantic import Field, PrivateAttr, ValidationError

from app.routers.base import ModelError, Usage
from app.routers.confidence import MAX_TOKEN_BYTES
from app.vapi.messages import Loose as _Loose  # one base for what other parties send: unread fields dropped

# The most bytes an honest response can take (see `response_cap`): each generated token appears once in the
# content, JSON-escaped, and, with log-probabilities, once more in its own entry and once in each of its
# top_logprobs entries: the token's text, its bytes as a list of numbers (up to 4 characters a byte), the
# log-probability and the keys, about 60 bytes plus 5 a byte of token. 256 bytes a token a place covers
# tokens of about 35 bytes (they average 4); the allowance covers the envelope (ids, usage, llama.cpp's
# timings and other servers' extras). A 60-token answer with 3 alternatives: 64 KiB + 75 KiB.
RESPONSE_BYTES_PER_TOKEN = 256
RESPONSE_ALLOWANCE_BYTES = 64 * 1024
# Of an error body, only its message is read; some servers (vLLM) echo the request in it, which can take
# tens of KB, so this leaves room for that and nothing near what an endless body would take.
ERROR_BODY_BYTES = 256 * 1024
MAX_LOGPROB_TOKENS = 16_384  # more tokens than any max_tokens this service sends: not log-probabilities
# Read as a stream (the SDK's own streaming-response header: the body is left unread for us to read with a
# cap), and uncompressed: an answer is a few KB, and a compressed body could expand far past what was read.
STREAMED = {"X-Stainless-Raw-Response": "stream", "Accept-Encoding": "identity"}


class Message(_Loose):
    content: str | None = None
    refusal: str | None = None


class LogprobToken(_Loose):
    token: str = Field("", max_length=MAX_TOKEN_BYTES)
    logprob: float = 0.0
    bytes: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(None, max_length=MAX_TOKEN_BYTES)


class Logprobs(_Loose):
    content: list[LogprobToken] | None = Field(None, max_length=MAX_LOGPROB_TOKENS)
    # Set when the server's log-probabilities failed validation (bytes that are not bytes, absurd lengths,
    # wrong types): why the answer has no score. Never read from the response.
    _unusable: str | None = PrivateAttr(None)


class _ChoiceBase(_Loose):
    message: Message
    finish_reason: str | None = None


class CompletionChoice(_ChoiceBase):
    logprobs: Logprobs | None = None


class _ChoiceIgnoringLogprobs(_ChoiceBase):
    """For a response whose only fault is in its log-probabilities: the answer stands, without a score."""


class PromptDetails(_Loose):
    cached_tokens: int | None = 0


class CompletionUsage(_Loose):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: PromptDetails | None = None

    def usage(self) -> Usage:
        cached = self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0
        return Usage(self.prompt_tokens or 0, self.completion_tokens or 0, cached or 0)


class Completion(_Loose):
    """The part of an OpenAI chat completion that routing reads."""

    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None

    @classmethod
    def read(cls, body: bytes) -> Completion:
        """Parse a response. Log-probabilities that fail validation do not fail the response: its choices
        come back with `logprobs._unusable` saying why. Raises ValidationError (or ValueError) otherwise."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            if not all(len(e["loc"]) > 2 and e["loc"][0] == "choices" and e["loc"][2] == "logprobs" for e in errors):
                raise
            why = f"malformed log-probabilities ({exc.error_count()} errors; first: " \
                  f"{'.'.join(map(str, errors[0]['loc']))}: {errors[0]['msg']})"
        loose = _CompletionIgnoringLogprobs.model_validate_json(body)
        unusable = Logprobs(content=None)
        unusable._unusable = why[:300]
        return cls.model_construct(usage=loose.usage, choices=[
            CompletionChoice.model_construct(message=c.message, finish_reason=c.finish_reason, logprobs=unusable)
            for c in loose.choices])


class _CompletionIgnoringLogprobs(_Loose):
    choices: list[_ChoiceIgnoringLogprobs]
    usage: CompletionUsage | None = None


def response_cap(request: dict[str, Any]) -> int:
    """The most bytes an honest response to `request` can take (see RESPONSE_BYTES_PER_TOKEN): the answer,
    plus its entry and its top alternatives' when log-probabilities are asked for, for every token."""
    places = 1 + (1 + int(request.get("top_logprobs") or 0) if request.get("logprobs") else 0)
    return RESPONSE_ALLOWANCE_BYTES + int(request["max_tokens"]) * RESPONSE_BYTES_PER_TOKEN * places


async def read_capped(response: httpx2.Response, cap: int) -> bytes:
    """The body, read as it comes and abandoned past `cap` bytes (decoded, so compression cannot hide any)."""
    declared = response.headers.get("content-length", "")
    if len(declared) > 12 or (declared.isdigit() and int(declared) > cap):
        raise _too_large(cap, f"{declared[:20]} bytes announced")
    parts: list[bytes] = []
    size = 0
    async with contextlib.aclosing(response.aiter_bytes()) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > cap:
                raise _too_large(cap, f"over {cap} bytes sent")
            parts.append(chunk)
    return b"".join(parts)


def _too_large(cap: int, what: str) -> ModelError:
    return ModelError("bad_response", f"the response is larger than any answer to this request can be ({what}; "
                      f"at most {cap} bytes are read): the server, or a proxy in front of it, sent something "
                      "other than the answer", retryable=True)


def bound_error_bodies(client: openai.AsyncOpenAI) -> None:
    """Cut error bodies at ERROR_BODY_BYTES before the SDK reads them whole to build its APIStatusError (a
    server answering 500 with an endless body grew memory by 1 GB in 3 s). An httpx2 response hook, so it
    holds on either transport; installed once per client. The SDK offers no public handle on its HTTP
    client, hence `_client`."""
    hooks = client._client.event_hooks
    if _cut_error_body not in hooks["response"]:
        hooks["response"].append(_cut_error_body)


async def _cut_error_body(response: httpx2.Response) -> None:
    if response.status_code < 400 or not isinstance(response.stream, httpx2.AsyncByteStream):
        return
    stream = response.stream
    parts: list[bytes] = []
    size = 0
    chunks = stream.__aiter__()
    try:
        async for chunk in chunks:
            parts.append(chunk[:ERROR_BODY_BYTES - size])
            size += len(chunk)
            if size >= ERROR_BODY_BYTES:
                break
    finally:  # cut short, cancelled at the deadline or done: the connection is not read from again
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
        await stream.aclose()
    response.stream = httpx2.ByteStream(b"".join(parts))
