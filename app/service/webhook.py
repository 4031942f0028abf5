"""POST /webhook: Vapi's server messages, and the answer to its destination requests.

The handler reads like the product: check who sent it (from the headers, before reading anything), read the
body, parse, extract the conversation, decide, answer. A request the service cannot use is answered with a
4xx and a line saying why; nothing a caller sends turns into a 500.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.catalogue.destinations import HANDOFF, TRANSFER
from app.dataset.recording import Recorder
from app.decision.decider import Decision
from app.engine import Engine
from app.logs import LOGGER, event, request_id
from app.service.auth import Authenticator, AuthError
from app.service.metrics import NO_CONVERSATION
from app.service.protocol import ARRIVED
from app.service.state import State
from app.vapi.conversation import NoConversation
from app.vapi.messages import (
    DESTINATION_REQUESTS,
    DestinationRequest,
    PayloadError,
    parse_json,
    parse_request,
    type_label,
)
from app.vapi.outcomes import OUTCOME_TYPES

JSON_TYPES = ("application/json", "text/json")
MAX_LENGTH_DIGITS = 12  # a Content-Length longer than this is not a number we would read
REASON_LOG_CHARS = 200  # of the model's reason (its prompt asks for one short sentence)
REQUEST_ID_CHARS = 64  # of a caller's X-Request-Id: it goes into every log line of the request


class Webhook:
    """`Route("/webhook", Webhook(...).handle, methods=["POST"])`. Its settings are read once, here."""

    def __init__(self, state: State, auth: Authenticator, recorder: Recorder | None) -> None:
        settings = state.settings
        self.state, self.metrics, self.auth, self.recorder = state, state.metrics, auth, recorder
        self.max_body_bytes, self.read_timeout = settings.max_body_bytes, settings.read_timeout
        self.log_conversations = settings.log_conversations
        self.logger = logging.getLogger(LOGGER)

    async def handle(self, request: Request) -> Response:
        started = arrived(request)
        token = request_id.set(request.headers.get("x-request-id", "")[:REQUEST_ID_CHARS] or uuid.uuid4().hex[:16])
        kind = "invalid"
        body_read = False
        try:
            authenticated = self.auth.precheck(request.headers)  # before reading a byte of the body
            check_content_type(request)
            body = await read_body(request, self.max_body_bytes, self.read_timeout)
            body_read = True
            if not authenticated:
                self.auth.check(request.headers, body, request.method, str(request.url))
            message = parse_json(body)
            kind = type_label(str(message["type"]))
            if kind not in DESTINATION_REQUESTS:
                # other server messages need only a 2xx; outcome messages are ingested after it is sent
                outcomes = self.state.outcomes if kind in OUTCOME_TYPES else None
                return self.reply(kind, 200, {}, after=outcomes.accept(message) if outcomes else None)
            return await self.answer(kind, message, started)
        except AuthError as exc:
            event(self.logger, "unauthorized", logging.WARNING, client=request.client.host if request.client else None)
            return self.reply(kind, 401, {"error": str(exc)}, close=not body_read)
        except PayloadError as exc:
            event(self.logger, "bad_request", logging.WARNING, status=exc.status, detail=str(exc)[:200])
            return self.reply(kind, exc.status, {"error": str(exc)}, close=not body_read)
        except ClientDisconnect:
            # The caller went away mid-body: nothing to answer, nobody to answer to, and no stack trace to log.
            event(self.logger, "client_disconnected", logging.WARNING)
            return Response(status_code=400)
        finally:
            request_id.reset(token)

    async def answer(self, kind: str, message: dict[str, Any], started: float) -> Response:
        """A destination request: extract the conversation, decide, log, count, record, answer."""
        destination_request = parse_request(message)
        engine = self.state.engine  # read once: a reload may swap it meanwhile
        assert engine is not None  # built by the lifespan before the first request
        try:
            query = engine.query(destination_request)
        except NoConversation as exc:
            event(self.logger, "decision", **no_conversation_fields(destination_request, engine))
            self.metrics.no_conversation(HANDOFF if destination_request.is_handoff else TRANSFER)
            return self.reply(kind, 200, {"error": str(exc)})
        decision = await engine.decider.decide(query, started)
        fields = decision_fields(decision, destination_request, engine)
        if self.log_conversations:
            fields["conversation"] = query.text
        event(self.logger, "decision", **fields)
        self.metrics.observe(decision)
        outcomes = self.state.outcomes
        keep = outcomes.keeper(decision, destination_request.call_id, request_id.get(), engine) if outcomes else None
        if self.recorder is not None:  # copies the window and queues it: the disk is the writer thread's
            self.recorder.submit(message, decision, engine.catalogue, query, then=keep)  # the store gets its line
            keep = None
        return self.reply(kind, 200, decision.body, after=keep)  # the store's row: after the answer is sent

    def reply(self, kind: str, status: int, body: dict[str, Any], close: bool = False,
              after: Callable[[], Any] | None = None) -> Response:
        self.metrics.requests.labels(kind if status < 400 else "invalid", str(status)).inc()
        background = BackgroundTask(run_after, after) if after is not None else None
        response = JSONResponse(body, status_code=status, background=background)
        rid = request_id.get()
        if rid:
            response.headers["x-request-id"] = rid
        if close:  # the body was not read: close rather than let the client go on sending it
            response.headers["connection"] = "close"
        return response


async def run_after(work: Callable[[], Any]) -> None:
    """Work done once the answer is sent (Starlette runs a response's background task then), on the event loop:
    `work` is cheap, or returns an awaitable."""
    result = work()
    if inspect.isawaitable(result):
        await result


def arrived(request: Request) -> float:
    """When the request began to arrive (stamped by the server's protocol), else now."""
    now = time.monotonic()
    stamp = request.scope.get("extensions", {}).get(ARRIVED, {}).get("at")
    return stamp if isinstance(stamp, float) and now - 60 < stamp <= now else now


async def read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The whole body, within `limit` bytes and `seconds`: a stalled or dribbling upload is cut off (408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or len(declared) > MAX_LENGTH_DIGITS:
            raise PayloadError("Content-Length is not a number.")
        if int(declared) > limit:
            raise PayloadError(f"Body is {declared} bytes; the limit is {limit} (SWITCHBOARD_MAX_BODY_BYTES).", 413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadError(f"Body is over the limit of {limit} bytes (SWITCHBOARD_MAX_BODY_BYTES).", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise PayloadError(f"Body not received within {seconds:g} s (SWITCHBOARD_READ_TIMEOUT).", 408) from None
    return b"".join(chunks)


def check_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type")
    if ctype is None:
        return  # tolerate a missing type; the body must still be JSON
    base = ctype.split(";")[0].strip().lower()
    if base not in JSON_TYPES and not base.endswith("+json"):
        raise PayloadError(f"Content-Type {base[:60]!r} is not JSON; send application/json.", 415)


def no_conversation_fields(request: DestinationRequest, engine: Engine) -> dict[str, Any]:
    """The decision line of a request with no caller words to decide on (serve's, and `switchboard route`'s)."""
    return {"type": request.type, "outcome": NO_CONVERSATION, "call_id": request.call_id,
            "catalogue_hash": engine.routing.catalogue_hash}


def decision_fields(decision: Decision, request: DestinationRequest, engine: Engine) -> dict[str, Any]:
    """The decision's log line (serve's, and `switchboard route`'s: the same fields)."""
    assistant = request.assistant
    return {
        "type": request.type, "call_id": request.call_id,
        "catalogue_hash": engine.routing.catalogue_hash,  # the catalogue in force, as /healthz and metrics name it
        "assistant": (assistant.name or assistant.id) if assistant else None,
        "chosen": decision.chosen, "candidate": decision.candidate, "answered": decision.answered,
        "closed": decision.closed, "timestamp_ignored": request.timestamp_ignored,
        "outcome": decision.outcome,
        "failure": decision.failure, "rescued_by": decision.rescued_by, "errors": decision.errors or None,
        "unreachable": decision.unreachable or None,
        "total_ms": round(decision.total_ms, 1), "llm_ms": round(decision.llm_ms, 1),
        "attempts": decision.attempts, "hedges": decision.hedges, "router": decision.router,
        "model": decision.model, "score": decision.score, "prompt": engine.routing.prompt.name,
        "prompt_hash": engine.routing.prompt.hash, "prompt_tokens": decision.prompt_tokens,
        "completion_tokens": decision.completion_tokens, "cached_tokens": decision.cached_tokens,
        "unscored": decision.unscored,
        # Why: the router's best-ranked ids with scores and matched words; the model's reason, bounded (a server
        # that ignores the schema's maxLength must not write a long line).
        "runner_ups": [r.as_dict() for r in decision.runner_ups] or None,
        "reason": decision.reason[:REASON_LOG_CHARS] if decision.reason else None,
    }
