"""Bad input gets a clear JSON error, never a 500 or a stack trace."""

from __future__ import annotations

import pytest

from tests.vapi_payloads import transfer_request


@pytest.fixture
def service(service_factory):
    return service_factory(router="offline")


@pytest.mark.parametrize(("raw", "status", "words"), [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "not valid JSON"),
    (b"\xff\xfe\x00", 400, "not valid JSON"),
    (b"[1, 2, 3]", 400, "must be a JSON object"),
    (b'"a string"', 400, "must be a JSON object"),
    (b"{}", 400, "no 'message' object"),
    (b'{"message": {"status": "x"}}', 400, "message.type"),
    (b'{"message": {"type": 42}}', 400, "message.type"),
    (b'{"message": {"type": ""}}', 400, "message.type"),
    (b'{"message": "transfer"}', 400, "no 'message' object"),
    (b"[" * 100_000 + b"]" * 100_000, 400, ""),
    (b'{"message": {"type": "transfer-destination-request", "x": "\\ud800"}}', 400, "not valid JSON"),
])
def test_malformed_bodies(service, raw, status, words):
    response = service.post(None, raw=raw)
    assert response.status_code == status
    assert words in response.json()["error"]


@pytest.mark.parametrize(("patch", "where"), [
    ({"artifact": "not an object"}, "message.artifact"),
    ({"artifact": {"messages": "nope"}}, "message.artifact.messages"),
    ({"artifact": {"messages": [{"role": "user", "message": 12}]}}, "message.artifact.messages.0.message"),
    ({"artifact": {"messages": [{"message": "hi"}]}}, "message.artifact.messages.0.role"),
    ({"artifact": {"transcript": ["User: hi"]}}, "message.artifact.transcript"),
    ({"assistant": "Sales"}, "message.assistant"),
])
def test_wrong_field_types_name_the_field(service, patch, where):
    body = transfer_request([("user", "billing question")])
    body["message"].update(patch)
    response = service.post(body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(where)


@pytest.mark.parametrize("artifact", [None, {}, {"messages": []}, {"messages": [{"role": "bot", "message": "Hi"}]},
                                      {"transcript": "AI: Hello\n"}, {"messagesOpenAIFormatted": []}])
def test_transfer_request_without_conversation_gets_an_error_answer(service, artifact):
    body = transfer_request([("user", "x")])
    if artifact is None:
        del body["message"]["artifact"]
    else:
        body["message"]["artifact"] = artifact
    response = service.post(body)
    assert response.status_code == 200
    assert "no usable conversation" in response.json()["error"]


def test_oversized_body_is_413(service_factory):
    service = service_factory(router="offline", max_body_bytes=4096)
    body = transfer_request([("user", "billing " * 2000)])
    response = service.post(body)
    assert response.status_code == 413 and "SWITCHBOARD_MAX_BODY_BYTES" in response.json()["error"]


def test_oversized_chunked_body_is_413(service_factory):
    service = service_factory(router="offline", max_body_bytes=4096)

    def chunks():
        for _ in range(100):
            yield b" " * 1000

    response = service.client.post("/webhook", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_wrong_content_type_is_415(service):
    response = service.post(None, raw=b'{"message": {"type": "status-update"}}', headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]


def test_unknown_paths_and_methods_answer_json(service):
    assert service.client.get("/nope").json()["error"].startswith("not found")
    response = service.client.get("/webhook")
    assert response.status_code == 405 and "POST" in response.json()["error"]


def test_unknown_message_type_is_accepted_quietly(service):
    response = service.post({"message": {"type": "something-vapi-adds-next-year"}})
    assert response.status_code == 200 and response.json() == {}


def with_arguments(arguments):
    body = transfer_request([("user", "I was charged twice")])
    for item in body["message"]["artifact"]["messages"]:
        if item["role"] == "tool_calls":
            item["toolCalls"][0]["function"]["arguments"] = arguments
    body["message"]["artifact"]["messagesOpenAIFormatted"][-1]["tool_calls"][0]["function"]["arguments"] = arguments
    return body


@pytest.mark.parametrize("arguments", [
    "[" * 100_000 + "]" * 100_000,  # RecursionError in json.loads: was a 500
    '{"x": ' + "9" * 5000 + "}",  # ValueError (int conversion limit): was a 500 and a reset connection
    '{"x": 1e999999}', "{" * 300, "x" * 400_000, '{"reason": "' + "é" * 10_000 + '"}',
])
def test_unreadable_tool_arguments_are_no_hint(service, arguments):
    response = service.post(with_arguments(arguments))
    assert response.status_code == 200
    assert response.json()["destination"]["number"] == "+14155550142"  # billing, from the words alone


def test_readable_arguments_object_with_nested_values_is_a_short_hint():
    from app.vapi.conversation import extract
    from app.vapi.messages import parse_request

    nested: object = 1
    for _ in range(150):
        nested = [nested]
    body = with_arguments({"reason": "double charge", "deep": nested, "big": 10**4000})
    hint = extract(parse_request(body["message"])).hint
    assert hint is not None and hint.startswith("reason: double charge, deep: [[[") and len(hint) <= 500


def raw_exchange(url: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the service and read until it closes or answers (no client-side HTTP checks)."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while b"\r\n\r\n" not in received or len(received) < 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
        return received


@pytest.mark.parametrize("value", [b"12abc", b"9" * 5000])
def test_content_length_that_is_not_a_number(service, value):
    reply = raw_exchange(service.thread.url, b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: " + value + b"\r\n\r\n{}")
    assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), reply[:80]
