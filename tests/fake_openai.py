"""A fake OpenAI-compatible chat-completions server on loopback, scriptable per test.

It is a real HTTP server (uvicorn in a thread), so the tests exercise the real `openai` client, its HTTP
stack, timeouts and error mapping. Each request takes the next scripted Behaviour from the queue, else
asks `policy` (a function of the request), else uses `default`.

Server-wide switches reproduce what real OpenAI-compatible servers were seen to do (see the README's
"Local and self-hosted models"): refuse `json_schema` with a 400 (vLLM without guided decoding) or a 500
(llama-cpp-python), produce arbitrary JSON in `json_object` mode unless a schema comes with it (llama.cpp),
pad the answer with whitespace and cut it at `max_tokens`, report cached prompt tokens, give token
log-probabilities (the id split over several tokens), refuse them (OpenAI's reasoning models), or take the
parameter and give none back.

Hostile behaviours, for the tests that distrust the server (tests/test_hostile_model.py): exact body bytes
(`raw`), a valid answer padded to any size (`huge`), a body that never ends (`endless`), one that trickles a
byte at a time (`trickle`), and log-probabilities altered at will (`answer(..., tweak=...)`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Behaviour:
    kind: str = "answer"  # answer | content | status | hang | malformed | refusal | raw | huge | endless | trickle
    destination: str | None = None  # for "answer": the id to answer (None: the first allowed id)
    content: str = ""  # for "content": the raw message content
    latency: float = 0.0
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    confidence: float = 0.9  # the probability the id's tokens multiply to, when log-probabilities are asked for
    message: str | None = None  # for "status": the error message
    body: bytes = b""  # for "raw" and "trickle": the exact response body
    size: int = 0  # for "huge": bytes of padding in an otherwise valid answer
    interval: float = 0.05  # for "trickle": seconds between bytes
    # for "answer": changes the token log-probabilities (a list of dicts) before they are sent
    tweak: Callable[[list[dict[str, Any]]], Any] | None = None


def answer(destination: str | None = None, latency: float = 0.0, reason: str | None = None,
           confidence: float = 0.9, tweak: Callable[[list[dict[str, Any]]], Any] | None = None) -> Behaviour:
    return Behaviour("answer", destination=destination, latency=latency, reason=reason, confidence=confidence,
                     tweak=tweak)


def content(text: str, latency: float = 0.0) -> Behaviour:
    return Behaviour("content", content=text, latency=latency)


def status(code: int, latency: float = 0.0, headers: dict[str, str] | None = None,
           message: str | None = None) -> Behaviour:
    return Behaviour("status", status=code, latency=latency, headers=headers or {}, message=message)


def raw(body: bytes, code: int = 200) -> Behaviour:
    """Exactly these bytes as the body (content type JSON)."""
    return Behaviour("raw", body=body, status=code)


def huge(size: int) -> Behaviour:
    """A valid answer (the first allowed id) with `size` bytes of padding in a field the client ignores."""
    return Behaviour("huge", size=size)


def endless(code: int = 200) -> Behaviour:
    """A chunked body that never ends: 64 KiB chunks as fast as the client reads them."""
    return Behaviour("endless", status=code)


def trickle(body: bytes, interval: float = 0.05, code: int = 200) -> Behaviour:
    """The body one byte every `interval` seconds."""
    return Behaviour("trickle", body=body, interval=interval, status=code)


HANG = Behaviour("hang")
MALFORMED = Behaviour("malformed")
REFUSAL = Behaviour("refusal")


def allowed_ids(request: dict[str, Any]) -> list[str]:
    """The enum the service sent, or the ids listed in a json_object/text prompt."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return list(fmt["json_schema"]["schema"]["properties"]["destination"]["enum"])
    text = request["messages"][-1]["content"]
    marker = "The id must be one of: "
    if marker in text:
        return [x.strip() for x in text.split(marker, 1)[1].rstrip(".").split(",")]
    return []


def completion(content_text: str | None, model: str, refusal: str | None = None, *, finish: str = "stop",
               completion_tokens: int = 7, cached_tokens: int | None = None,
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": 321, "completion_tokens": completion_tokens,
                             "total_tokens": 321 + completion_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": finish,
                     "logprobs": {"content": logprobs, "refusal": None} if logprobs is not None else None,
                     "message": {"role": "assistant", "content": content_text, "refusal": refusal}}],
        "usage": usage,
    }


def tokenize(text: str, chosen: str) -> list[str]:
    """Split an answer into tokens the way a BPE tokenizer might: the id in pieces of at most four
    characters (so `account_security` is several tokens), the JSON around it in a few chunks."""
    start = text.find(chosen)
    if start < 0:
        return [text[i:i + 3] for i in range(0, len(text), 3)]
    before, after = text[:start], text[start + len(chosen):]
    pieces = [before[i:i + 5] for i in range(0, len(before), 5)]
    pieces += [chosen[i:i + 4] for i in range(0, len(chosen), 4)]
    pieces += [after[i:i + 5] for i in range(0, len(after), 5)]
    return [p for p in pieces if p]


def token_logprobs(text: str, chosen: str, confidence: float) -> list[dict[str, Any]]:
    """Log-probabilities whose product over the id's tokens is `confidence` (every other token is certain)."""
    tokens = tokenize(text, chosen)
    start = text.find(chosen)
    id_tokens, position, out = [], 0, []
    for token in tokens:
        in_id = start >= 0 and position < start + len(chosen) and position + len(token) > start
        id_tokens.append(in_id)
        position += len(token)
    share = math.log(confidence) / max(1, sum(id_tokens)) if confidence > 0 else -math.inf
    for token, in_id in zip(tokens, id_tokens, strict=True):
        logprob = share if in_id else 0.0
        out.append({"token": token, "logprob": logprob, "bytes": list(token.encode()),
                    "top_logprobs": [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]})
    return out


class FakeOpenAI:
    def __init__(self, default: Behaviour | None = None, json_schema_supported: bool = True) -> None:
        self.default = default or answer()
        self.policy: Callable[[dict[str, Any]], Behaviour] | None = None
        # What the server does (see the module docstring):
        self.json_schema_supported = json_schema_supported
        self.json_schema_refusal_status = 400  # llama-cpp-python: 500
        self.json_schema_refusal_message = "response_format json_schema is not supported"
        self.json_object_needs_schema = False  # llama.cpp: without a schema, json_object gives any JSON
        self.pad = 0  # whitespace characters before the JSON, one token each, within max_tokens
        self.cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens
        self.logprobs_supported = True  # False: HTTP 400 naming logprobs, as OpenAI's reasoning models do
        self.logprobs_refused_by: set[str] = set()  # models that refuse them while others on the server don't
        self.logprobs_returned = True  # False: the parameter is accepted and nothing comes back
        self.length_keywords_supported = True  # False: HTTP 400 on maxLength in the schema
        self.requests: list[dict[str, Any]] = []
        self.keep_history = True
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the fake was serving at once
        self.streaming = 0  # endless or trickled bodies still being sent (0 once every client hung up)
        self.streamed_bytes = 0  # bytes of endless or trickled bodies sent
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._lock = threading.Lock()
        self.server = ServerThread(self.app())

    # -- scripting -----------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    def _next(self, request: dict[str, Any]) -> Behaviour:
        with self._lock:
            if self.keep_history:
                self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        return self.policy(request) if self.policy else self.default

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"

    def start(self) -> FakeOpenAI:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def _refuse(self, body: dict[str, Any], kind: str | None) -> Response | None:
        """The server's own refusals, before any scripted behaviour."""
        if not self.json_schema_supported and kind == "json_schema":
            return JSONResponse({"error": {"message": self.json_schema_refusal_message,
                                           "type": "invalid_request_error"}},
                                status_code=self.json_schema_refusal_status)
        if body.get("logprobs") and (not self.logprobs_supported or body.get("model") in self.logprobs_refused_by):
            return JSONResponse({"error": {"message": "Unsupported parameter: 'logprobs' is not supported with this "
                                           "model.", "type": "invalid_request_error", "param": "logprobs",
                                           "code": "unsupported_parameter"}}, status_code=400)
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or \
            (body.get("response_format") or {}).get("schema")
        if not self.length_keywords_supported and schema and "maxLength" in json.dumps(schema):
            return JSONResponse({"error": {"message": "Invalid schema for response_format 'transfer_choice': "
                                           "'maxLength' is not permitted.", "type": "invalid_request_error"}},
                                status_code=400)
        return None

    # -- the HTTP side -------------------------------------------------------------------
    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            self.in_flight += 1  # one event loop serves the fake, so no lock is needed
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await respond(request)
            finally:
                self.in_flight -= 1

        async def respond(request: Request) -> Response:
            body = json.loads(await request.body())
            behaviour = self._next(body)
            if behaviour.latency:
                await asyncio.sleep(behaviour.latency)
            model = body.get("model", "fake")
            fmt = body.get("response_format") or {}
            kind = fmt.get("type")
            refused = self._refuse(body, kind)
            if refused is not None:
                return refused
            if behaviour.kind == "hang":
                await asyncio.sleep(3600)
            if behaviour.kind == "status":
                message = behaviour.message or f"injected {behaviour.status}"
                return JSONResponse({"error": {"message": message, "type": "server_error"}},
                                    status_code=behaviour.status, headers=behaviour.headers)
            if behaviour.kind == "malformed":
                return PlainTextResponse('{"id": "chatcmpl-fake", "choices": [', media_type="application/json")
            if behaviour.kind == "raw":
                return Response(behaviour.body, status_code=behaviour.status, media_type="application/json")
            if behaviour.kind in ("endless", "trickle"):
                return StreamingResponse(stream(behaviour), status_code=behaviour.status,
                                         media_type="application/json")
            if behaviour.kind == "huge":
                ids = allowed_ids(body)
                text = json.dumps({"destination": ids[0] if ids else "none"}) if kind else (ids or ["none"])[0]
                return JSONResponse({**completion(text, model), "padding": "x" * behaviour.size})
            if behaviour.kind == "refusal":
                return JSONResponse(completion(None, model, refusal="I can't help with that."))
            if behaviour.kind == "content":
                return JSONResponse(completion(behaviour.content, model, cached_tokens=self.cached_tokens))
            ids = allowed_ids(body)
            chosen = behaviour.destination or (ids[0] if ids else "none")
            if kind in ("json_schema", "json_object"):
                payload: dict[str, Any] = {"destination": chosen}
                if behaviour.reason is not None:
                    payload = {"reason": behaviour.reason, **payload}
                if kind == "json_object" and self.json_object_needs_schema and "schema" not in fmt:
                    payload = {"answer": chosen, "confidence": "high"}  # valid JSON, any shape
                text = json.dumps(payload)
            else:
                text = chosen
            text = " " * self.pad + text
            tokens = tokenize(text, chosen)
            limit = body.get("max_tokens") or 10**6
            finish = "stop"
            if self.pad and len(tokens) + self.pad > limit:  # padding counts one token a character
                text, finish = text[:max(0, limit - 1)], "length"
            logprobs = None
            if body.get("logprobs") and self.logprobs_returned and finish == "stop":
                logprobs = token_logprobs(text, chosen, behaviour.confidence)
                if behaviour.tweak is not None:
                    logprobs = behaviour.tweak(logprobs)
            out = completion(text, model, finish=finish, completion_tokens=len(tokens) + self.pad,
                             cached_tokens=self.cached_tokens, logprobs=logprobs)
            # json.dumps, not JSONResponse: a tweak may put NaN or Infinity in, as Python servers can send
            return Response(json.dumps(out).encode(), media_type="application/json")

        async def stream(behaviour: Behaviour) -> AsyncIterator[bytes]:
            self.streaming += 1
            try:
                if behaviour.kind == "endless":
                    chunk = b"[" + b" " * 65535
                    while True:
                        self.streamed_bytes += len(chunk)
                        yield chunk
                        await asyncio.sleep(0)
                for i in range(len(behaviour.body)):
                    await asyncio.sleep(behaviour.interval)
                    self.streamed_bytes += 1
                    yield behaviour.body[i:i + 1]
            finally:  # the client hung up (or the body is done): Starlette cancels the stream
                self.streaming -= 1

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class ServerThread:
    """Serve an ASGI app with uvicorn on a loopback port, in a background thread."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.app = app
        self.port = port
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None

    def start(self) -> None:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the listening
        # socket says it is TCP; without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="critical", access_log=False, lifespan="auto",
                                timeout_graceful_shutdown=0, backlog=2048, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def main() -> None:
    """Run the fake on its own, for the benchmark: python -m tests.fake_openai --port 0 --latency 0.3"""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeOpenAI(default=answer(latency=args.latency))
    fake.keep_history = False
    serve_until_stdin_closes(fake, args.port)


def serve_until_stdin_closes(fake: FakeOpenAI, port: int = 0) -> None:
    """Run a fake as a child process: print its port on the first line, stop when the parent closes stdin."""
    import sys

    fake.server.port = port
    fake.start()
    print(fake.server.port, flush=True)
    try:
        sys.stdin.read()
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
