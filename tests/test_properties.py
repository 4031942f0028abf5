"""Property-based: arbitrary JSON bodies never produce a 500, and the catalogue loader only ever raises
CatalogueError (with a message) or loads."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.catalogue.destinations import CatalogueError, parse
from tests.test_catalogue import SAMPLE
from tests.vapi_payloads import transfer_request

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
KEYS = ["type", "artifact", "messages", "messagesOpenAIFormatted", "transcript", "role", "message", "toolCalls",
        "function", "arguments", "assistant", "id", "name", "call", "content", "tool_calls"]
VALID = transfer_request([("bot", "Hi"), ("user", "I was charged twice")])


def mutate(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key] if isinstance(node, dict) and key in node else None
        if node is None:
            return data
    if isinstance(node, dict):
        node[path[-1]] = value
    return data


PATHS = [["message", "type"], ["message", "artifact"], ["message", "artifact", "messages"],
         ["message", "artifact", "transcript"], ["message", "artifact", "messagesOpenAIFormatted"],
         ["message", "assistant"], ["message", "call"], ["message"]]
NEAR_VALID = st.builds(lambda p, v: mutate(copy.deepcopy(VALID), p, v), st.sampled_from(PATHS), JSON)
BODIES = JSON | st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5) | NEAR_VALID


@pytest.fixture(scope="module")
def module_service(tmp_path_factory):
    from app.settings import Settings
    from tests.conftest import ROOT, Service

    service = Service(Settings(router="offline", destinations=ROOT / "destinations.json",
                               prompt=ROOT / "prompts/route.md", reload_interval=0))
    yield service
    service.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_arbitrary_json_never_500(module_service, body):
    response = module_service.post(body)
    assert response.status_code in (200, 400), (response.status_code, response.text)
    data = response.json()
    assert set(data) <= {"destination", "error"}
    if response.status_code == 400:
        assert data["error"]


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_500(module_service, raw):
    response = module_service.post(None, raw=raw)
    assert response.status_code in (200, 400), response.text


CATALOGUE_PATHS = [["destinations"], ["fallback"], ["assistants"], ["destinations", 0], ["destinations", 0, "id"],
                   ["destinations", 0, "destination"], ["destinations", 0, "destination", "number"],
                   ["destinations", 1, "destination", "transferPlan"], ["destinations", 2, "examples"]]


def mutate_catalogue(path, value):
    data = copy.deepcopy(SAMPLE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@settings(max_examples=300, deadline=None)
@given(data=JSON | st.builds(mutate_catalogue, st.sampled_from(CATALOGUE_PATHS), JSON))
def test_catalogue_loader_raises_only_catalogue_errors(data):
    try:
        catalogue = parse(data)
    except CatalogueError as exc:
        assert str(exc).startswith("destinations.json: ") and len(str(exc)) > 25
    else:
        assert catalogue.entries and all(json.dumps(e.destination) for e in catalogue.entries)


ARGUMENT_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="[]{}\":,0123456789-.eE ", max_size=600),
    st.builds(lambda n, c: c * n, st.integers(0, 5000), st.sampled_from(["[", "{", "9", '{"a":'])),
    st.builds(lambda digits: '{"n": ' + digits + "}", st.text(alphabet="0123456789", min_size=1, max_size=6000)),
    st.builds(json.dumps, JSON),
)


def with_arguments(arguments):
    body = copy.deepcopy(VALID)
    artifact = body["message"]["artifact"]
    for item in artifact["messages"]:
        if item["role"] == "tool_calls":
            item["toolCalls"][0]["function"]["arguments"] = arguments
    artifact["messagesOpenAIFormatted"][-1]["tool_calls"][0]["function"]["arguments"] = arguments
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arguments=ARGUMENT_TEXT | JSON)
def test_arbitrary_tool_arguments_never_500(module_service, arguments):
    """Whatever the voice assistant's model wrote as the transfer tool's arguments, the call is still routed."""
    response = module_service.post(with_arguments(arguments))
    assert response.status_code == 200, response.text
    assert "destination" in response.json()
