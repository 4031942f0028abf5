"""Authentication as Vapi sends it: raw secret, bearer token (standard or custom header), HMAC signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from app.service.auth import Authenticator, AuthError
from app.settings import Settings
from tests.vapi_payloads import transfer_request

BODY = transfer_request([("user", "I want to cancel my service")])


@pytest.fixture
def service(service_factory):
    return service_factory(router="offline", secret="s3cret-value")


@pytest.mark.parametrize("headers", [
    {"x-vapi-secret": "s3cret-value"},
    {"authorization": "Bearer s3cret-value"},
    {"authorization": "bearer s3cret-value"},
])
def test_accepted_credentials(service, headers):
    response = service.post(BODY, headers=headers)
    assert response.status_code == 200 and "destination" in response.json()


@pytest.mark.parametrize("headers", [{}, {"x-vapi-secret": "wrong"}, {"authorization": "Bearer wrong"},
                                     {"x-vapi-secret": "s3cret-valu"}, {"authorization": "s3cret-value-extra"}])
def test_rejected_credentials(service, headers):
    response = service.post(BODY, headers=headers)
    assert response.status_code == 401
    assert "s3cret" not in response.text
    assert "credentials" in response.json()["error"]


def test_rejected_before_parsing(service):
    assert service.post(None, raw=b"{broken", headers={}).status_code == 401


def test_custom_bearer_header(service_factory):
    service = service_factory(router="offline", secret="tok", secret_header="X-My-Token")
    assert service.post(BODY, headers={"x-my-token": "Bearer tok"}).status_code == 200
    assert service.post(BODY, headers={"x-my-token": "tok"}).status_code == 200
    assert service.post(BODY, headers={"x-my-token": "nope"}).status_code == 401


def sign(key: bytes, payload: bytes, algorithm: str, encoding: str) -> str:
    digest = hmac.new(key, payload, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


@pytest.mark.parametrize(("algorithm", "encoding", "prefix", "fmt", "b64"), [
    ("sha256", "hex", "", "{timestamp}.{body}", False),
    ("sha512", "base64", "sha512=", "{timestamp}.{body}", False),
    ("sha1", "hex", "", "{method}\n{url}\n{timestamp}\n{body}", False),
    ("sha256", "base64", "v1,", "{body}", True),
])
def test_hmac_signatures_as_vapi_describes(service_factory, algorithm, encoding, prefix, fmt, b64):
    raw_key = b"hmac-key-\x00\x01bytes"
    secret = base64.b64encode(raw_key).decode() if b64 else raw_key.decode("latin1")
    service = service_factory(router="offline", hmac_secret=secret, hmac_algorithm=algorithm,
                              hmac_encoding=encoding, hmac_signature_prefix=prefix, hmac_payload_format=fmt,
                              hmac_secret_is_base64=b64, hmac_signature_header="X-Sig", hmac_timestamp_header="X-Ts")
    key = raw_key if b64 else secret.encode()
    body = json.dumps(BODY).encode()
    stamp = str(int(time.time() * 1000))
    url = service.thread.url + "/webhook"
    payload = fmt.replace("{timestamp}", stamp).replace("{method}", "POST").replace("{url}", url).encode()
    payload = payload.replace(b"{body}", body)
    good = prefix + sign(key, payload, algorithm, encoding)
    ok = service.post(None, raw=body, headers={"x-sig": good, "x-ts": stamp})
    assert ok.status_code == 200, ok.text
    tampered = body.replace(b"cancel", b"cancal")
    assert service.post(None, raw=tampered, headers={"x-sig": good, "x-ts": stamp}).status_code == 401
    assert service.post(None, raw=body, headers={"x-ts": stamp}).status_code == 401


def test_hmac_rejects_stale_timestamps():
    settings = Settings(hmac_secret="k", hmac_tolerance=60)
    now = 1_800_000_000.0
    auth = Authenticator.from_settings(settings, clock=lambda: now)
    body = b'{"message": {"type": "status-update"}}'

    def headers(ts: float) -> dict[str, str]:
        stamp = str(int(ts))
        return {"x-timestamp": stamp, "x-signature": sign(b"k", f"{stamp}.".encode() + body, "sha256", "hex")}

    auth.check(headers(now - 30), body, "POST", "http://x/webhook")
    with pytest.raises(AuthError):
        auth.check(headers(now - 3600), body, "POST", "http://x/webhook")  # a replay an hour later
    with pytest.raises(AuthError):
        auth.check(headers(now + 3600), body, "POST", "http://x/webhook")


def test_no_secret_logs_a_warning_at_start(service_factory, log_records):
    service_factory(router="offline")
    assert any(r.getMessage() == "no_secret" for r in log_records)


@pytest.mark.parametrize("stamp", ["nan", "NaN", "inf", "-inf", "1e400", "9" * 40])
def test_hmac_timestamps_that_are_no_moment_are_refused(stamp):
    """Reported: a timestamp of `nan` compares false with everything, so it skipped the replay window."""
    settings = Settings(hmac_secret="k", hmac_tolerance=60)
    auth = Authenticator.from_settings(settings, clock=lambda: 1_800_000_000.0)
    body = b'{"message": {"type": "status-update"}}'
    headers = {"x-timestamp": stamp, "x-signature": sign(b"k", f"{stamp}.".encode() + body, "sha256", "hex")}
    with pytest.raises(AuthError):
        auth.precheck(headers) or auth.check(headers, body, "POST", "http://x/webhook")
