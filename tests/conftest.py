"""Shared fixtures: a fake model on loopback, a temp catalogue, and the real app served over real HTTP.

Every answer any test gets from /webhook is checked twice: against Vapi's answer schema (tests/data,
extracted from Vapi's openapi.json: ServerMessageResponseTransferDestinationRequest, or the handoff one
for a handoff request) and by parsing it with Vapi's own SDK's response types (tests/vapi_sdk.py).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import pytest

from app.service.app import create_app
from app.settings import Settings
from tests import postgres, vapi_sdk
from tests.fake_openai import FakeOpenAI, ServerThread

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ANSWER_VALIDATOR = jsonschema.Draft202012Validator(json.loads((DATA / "vapi_transfer_response.json").read_text()))
ANSWERS_CHECKED: list[int] = [0]


@functools.cache
def _handoff_validators() -> tuple[Any, dict[str, Any]]:
    schema = json.loads((DATA / "vapi_handoff_response.json").read_text())
    kinds = {kind: jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{name}"})
             for kind, name in (("assistant", "HandoffDestinationAssistant"), ("squad", "HandoffDestinationSquad"))}
    return jsonschema.Draft202012Validator(schema), kinds


def assert_valid_answer(body: Any, kind: str = "transfer") -> None:
    """Valid for Vapi: its JSON schema, and its SDK's response types."""
    if kind == "handoff":
        validator, kinds = _handoff_validators()
        errors = list(validator.iter_errors(body))
        destination = body.get("destination") if isinstance(body, dict) else None
        if isinstance(destination, dict) and destination.get("type") in kinds:
            errors += list(kinds[destination["type"]].iter_errors(destination))
        assert not errors, f"handoff answer not valid for Vapi: {errors[0].message} in {body}"
        assert set(body) <= {"destination", "result", "error"}, f"unexpected top-level keys in {body}"
        # Vapi documents {"error": ...} as the answer when no handoff should be made (the schema's and the
        # SDK's `destination: required` is one of the corrections in scripts/extract_vapi_schemas.py).
        vapi_sdk.parse_handoff_answer(body, allow_error_without_destination=True)
    else:
        errors = list(ANSWER_VALIDATOR.iter_errors(body))
        assert not errors, f"answer not valid for Vapi: {errors[0].message} in {body}"
        assert set(body) <= {"destination", "message", "error"}, f"unexpected top-level keys in {body}"
        if body:  # {} is the answer to messages that are not destination requests
            vapi_sdk.parse_transfer_answer(body)
    ANSWERS_CHECKED[0] += 1


def request_kind(body: Any) -> str:
    message = body.get("message", body) if isinstance(body, dict) else None
    return "handoff" if isinstance(message, dict) and message.get("type") == "handoff-destination-request" \
        else "transfer"


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's environment or talks to a real model."""
    for var in list(__import__("os").environ):
        if var.startswith(("SWITCHBOARD_", "OPENAI_")):
            monkeypatch.delenv(var)
    # The decision store's default file is DATA_DIR/switchboard.db: each test gets its own, never the checkout's
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def catalogue_path(tmp_path: Path) -> Path:
    path = tmp_path / "destinations.json"
    shutil.copy(ROOT / "destinations.json", path)
    return path


@pytest.fixture
def prompt_path(tmp_path: Path) -> Path:
    path = tmp_path / "route.md"
    shutil.copy(ROOT / "prompts/route.md", path)
    return path


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


class Service:
    """The real app, served by uvicorn on loopback, and an HTTP client for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.thread = ServerThread(self.app)
        self.thread.start()
        self.client = httpx2.Client(base_url=self.thread.url, timeout=30)

    @property
    def state(self) -> Any:
        return self.app.state.switchboard

    def post(self, body: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None) -> httpx2.Response:
        content = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"content-type": "application/json", **(headers or {})}
        response = self.client.post("/webhook", content=content, headers=hdrs)
        assert "traceback" not in response.text.lower()
        if response.headers.get("content-type", "").startswith("application/json") and response.status_code == 200:
            assert_valid_answer(response.json(), request_kind(body))
        return response

    def close(self) -> None:
        self.client.close()
        self.thread.stop()


@pytest.fixture
def service_factory(catalogue_path: Path, prompt_path: Path) -> Iterator[Any]:
    started: list[Service] = []

    def start(**overrides: Any) -> Service:
        values: dict[str, Any] = {"destinations": catalogue_path, "prompt": prompt_path, "reload_interval": 0,
                                  "hedge_delay": 0}
        values.update(overrides)
        service = Service(Settings(**values))
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()


@pytest.fixture
def llm_service(service_factory: Any, fake: FakeOpenAI) -> Any:
    """The service with the LLM router pointed at the fake model."""

    def start(**overrides: Any) -> Service:
        return service_factory(openai_base_url=fake.base_url, openai_api_key="test-key", **overrides)

    return start


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Every record the service logs during the test (the service logs from its server thread)."""
    logger = logging.getLogger("switchboard")
    handler = _ListHandler()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old)


def decision_logs(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    return [dict(r.fields) for r in records if r.getMessage() == "decision"]  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg() -> Iterator[postgres.PostgresServer]:
    """A throwaway PostgreSQL server for the session (skipped where none is installed, failing in CI)."""
    yield from postgres.server()


@pytest.fixture
def pg_url(pg: postgres.PostgresServer) -> str:
    """A fresh database on it."""
    if not pg.running:  # a test that stopped it and failed before starting it again
        pg.start()
    return pg.new_database()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if ANSWERS_CHECKED[0]:
        print(f"\n{ANSWERS_CHECKED[0]} webhook answers validated against Vapi's response schema")


def poll(condition: Callable[[], Any], what: str, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """condition()'s first true value, checked every `interval` s; AssertionError naming `what` after `timeout` s
    (generous defaults: these machines are busy)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
