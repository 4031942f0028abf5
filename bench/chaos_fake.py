"""The fake OpenAI-compatible model server for `bench/chaos.py`, in its own process, steerable mid-run.

    python bench/chaos_fake.py [--port 0]

Prints its port on the first line of stdout and runs until its stdin is closed. It reuses
`tests/fake_openai.py` (FakeOpenAI, ServerThread) and adds one endpoint:

    POST /control {"mode": ..., "latency": 1.5, ...}   change behaviour (every key optional)
    GET  /control                                     {"mode", "latency", "requests", "streams_open", ...}

Modes (what every chat completion gets until the next change):

    ok                        a valid answer: the first allowed id, log-probabilities when asked
    hang                      no answer, ever
    500                       HTTP 500
    content   {"content"}     a completion whose message content is exactly this text
    huge      {"size"}        a valid answer whose log-probability list is padded to about `size` bytes
    endless                   HTTP 200 and a chunked JSON body that never ends: 64 KiB chunks as fast as the
                              client reads, until it hangs up (or `endless_limit` seconds / bytes, for safety)
    logprobs  {"variant"}     a valid answer whose log-probabilities are hostile: byte300 / byte-1 (a token's
                              `bytes` holds 300 or -1), nan / inf (the id's logprobs), cut (the list stops
                              before the id), misspelled (the tokens spell another id), low (honest, 0.5)

`requests` counts the chat-completion requests received since start, whatever the mode; `streams_open` the
endless bodies still being sent (a client that never hangs up keeps one open).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tests.fake_openai import (  # noqa: E402
    HANG,
    Behaviour,
    FakeOpenAI,
    allowed_ids,
    answer,
    completion,
    content,
    serve_until_stdin_closes,
    status,
    token_logprobs,
)

MODES = ("ok", "hang", "500", "content", "huge", "endless", "logprobs")
VARIANTS = ("byte300", "byte-1", "nan", "inf", "cut", "misspelled", "low")
CHUNK = 65536
# One padding token of the `huge` answer: a whitespace token, as small as a token can be written, so that the
# list is as long as the size allows.
PAD_TOKEN = json.dumps({"token": " ", "logprob": -0.0001, "bytes": [32], "top_logprobs": []})


def answer_text(request: dict[str, Any]) -> tuple[str, str]:
    """(the answer's text, the id in it): the first allowed id, as JSON unless the request asked for text."""
    ids = allowed_ids(request)
    chosen = ids[0] if ids else "none"
    kind = (request.get("response_format") or {}).get("type")
    return (json.dumps({"destination": chosen}) if kind else chosen), chosen


def hostile_logprobs(text: str, chosen: str, variant: str) -> list[dict[str, Any]]:
    """Token log-probabilities for `text`, altered as `variant` says (see the module docstring)."""
    honest = 0.5 if variant in ("low", "cut", "misspelled") else 0.95
    tokens = token_logprobs(text, chosen, honest)
    start = text.find(chosen)
    position, first_id = 0, None
    in_id: list[bool] = []
    for i, token in enumerate(tokens):
        inside = position < start + len(chosen) and position + len(token["token"]) > start
        in_id.append(inside)
        if inside and first_id is None:
            first_id = i
        position += len(token["token"])
    assert first_id is not None, "the id is always in the answer"
    if variant in ("byte300", "byte-1"):
        tokens[first_id]["bytes"] = [*tokens[first_id]["bytes"][:-1], 300 if variant == "byte300" else -1]
    elif variant in ("nan", "inf"):
        for token, inside in zip(tokens, in_id, strict=True):
            if inside:
                token["logprob"] = math.nan if variant == "nan" else math.inf
    elif variant == "cut":
        tokens = tokens[:first_id]
    elif variant == "misspelled":
        for token, inside in zip(tokens, in_id, strict=True):
            if inside:
                token["token"] = "q" * len(token["token"])
                token["bytes"] = list(token["token"].encode())
    return tokens


class ControlledFake(FakeOpenAI):
    """FakeOpenAI whose behaviour for every request is the current mode, changed over HTTP."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.latency = 0.0
        self.content = ""
        self.size = 0
        self.variant = "low"
        # Seconds and bytes per endless body, and bytes for all of them since the mode was set: a client that
        # buffers what it reads cannot take this machine's memory, whatever it does.
        self.endless_limit = (60.0, 1 << 30, 3 << 30)
        self.count = 0
        self.streams_open = 0
        self.streamed_bytes = 0
        self._padding = b""
        self._count_lock = threading.Lock()
        super().__init__()
        self.keep_history = False
        self.policy = self._behaviour

    def _counted(self) -> None:
        with self._count_lock:
            self.count += 1

    def _behaviour(self, request: dict[str, Any]) -> Behaviour:
        self._counted()
        if self.mode == "hang":
            return HANG
        if self.mode == "500":
            return status(500, latency=self.latency)
        if self.mode == "content":
            return content(self.content, latency=self.latency)
        return answer(latency=self.latency)

    def snapshot(self) -> dict[str, Any]:
        return {"mode": self.mode, "latency": self.latency, "requests": self.count, "size": self.size,
                "variant": self.variant, "content_chars": len(self.content), "streams_open": self.streams_open,
                "streamed_bytes": self.streamed_bytes}

    def set(self, body: dict[str, Any]) -> str | None:
        """Apply a /control body; the error to answer, if any."""
        mode = body.get("mode", self.mode)
        variant = body.get("variant", self.variant)
        if mode not in MODES:
            return f"mode must be one of {MODES}"
        if variant not in VARIANTS:
            return f"variant must be one of {VARIANTS}"
        if mode == "endless" and self.mode != "endless":
            self.streamed_bytes = 0
        self.mode, self.variant = mode, variant
        self.latency = float(body.get("latency", self.latency))
        self.content = str(body.get("content", self.content))
        if int(body.get("size", self.size)) != self.size:
            self.size = int(body["size"])
            # Built once, here, so that answering costs the fake no more than copying bytes.
            count = max(0, self.size // (len(PAD_TOKEN) + 2))
            self._padding = ", ".join([PAD_TOKEN] * count).encode()
        return None

    # -- the hostile answers (content, hang and 500 go through FakeOpenAI) ---------------------------------
    def huge(self, request: dict[str, Any]) -> Response:
        text, chosen = answer_text(request)
        marker = "@@padding@@"
        honest = token_logprobs(text, chosen, 0.95) if request.get("logprobs") else []
        tokens: list[Any] = [*honest, marker]
        head, tail = json.dumps(completion(text, request.get("model", "fake"), logprobs=tokens)).encode().split(
            json.dumps(marker).encode())
        return Response(head + (self._padding or PAD_TOKEN.encode()) + tail, media_type="application/json")

    def endless(self) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            self.streams_open += 1
            sent, until = 0, time.monotonic() + self.endless_limit[0]
            try:
                yield b'{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"index": 0, ' \
                      b'"message": {"role": "assistant", "content": "'
                chunk = b"a" * CHUNK
                while time.monotonic() < until and sent < self.endless_limit[1] and \
                        self.streamed_bytes < self.endless_limit[2]:
                    sent += len(chunk)
                    self.streamed_bytes += len(chunk)
                    yield chunk
                    await asyncio.sleep(0)  # a fast reader never makes the send wait: let /control in
            finally:  # the client hung up (Starlette cancels the stream) or the safety limit ended it
                self.streams_open -= 1

        return StreamingResponse(chunks(), media_type="application/json")

    def logprobs(self, request: dict[str, Any]) -> Response:
        text, chosen = answer_text(request)
        tokens = hostile_logprobs(text, chosen, self.variant) if request.get("logprobs") else None
        out = completion(text, request.get("model", "fake"), logprobs=tokens)
        # json.dumps, not JSONResponse: NaN and Infinity go out as Python servers write them
        return Response(json.dumps(out, allow_nan=True).encode(), media_type="application/json")

    def app(self) -> Starlette:
        inner = super().app()
        plain = next(r for r in inner.router.routes if isinstance(r, Route) and r.path == "/v1/chat/completions")
        plain_chat: Callable[[Request], Awaitable[Response]] = plain.endpoint  # type: ignore[assignment]

        async def chat(request: Request) -> Response:
            if self.mode not in ("huge", "endless", "logprobs"):
                return await plain_chat(request)
            body = json.loads(await request.body())
            self._counted()
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.mode == "huge":
                return self.huge(body)
            if self.mode == "endless":
                return self.endless()
            return self.logprobs(body)

        async def control(request: Request) -> Response:
            if request.method == "POST":
                error = self.set(await request.json())
                if error is not None:
                    return JSONResponse({"error": error}, status_code=400)
            return JSONResponse(self.snapshot())

        inner.router.routes.insert(0, Route("/v1/chat/completions", chat, methods=["POST"]))
        inner.router.routes.append(Route("/control", control, methods=["GET", "POST"]))
        return inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # hang storms leave many sockets open here
    serve_until_stdin_closes(ControlledFake(), args.port)


if __name__ == "__main__":
    main()
