"""Checks that a webhook really comes from Vapi, as Vapi is configured to prove it.

Shared secret (`X-Vapi-Secret`), bearer token (`Authorization` or a custom header), or an HMAC signature
of the raw body (Vapi's HMACAuthenticationPlan). Every comparison is constant-time. GET /metrics has a token of
its own (SWITCHBOARD_METRICS_TOKEN), for deployments where it can be reached from outside.

Credentials are checked from the headers before the body is read (`precheck`), so a caller without them
cannot make the service read, buffer or parse anything; only an HMAC signature needs the body (`check`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from app.settings import Settings

MISSING = "missing or wrong credentials: send X-Vapi-Secret, a bearer token, or a valid signature"


METRICS_REFUSED = ("GET /metrics needs the token in SWITCHBOARD_METRICS_TOKEN: send it as "
                   "'Authorization: Bearer <token>' (in Prometheus: authorization.credentials)")


def metrics_allowed(settings: Settings, headers: Mapping[str, str]) -> bool:
    """True when /metrics is open (no SWITCHBOARD_METRICS_TOKEN), or the request carries the token as a bearer
    token. Constant-time, as the webhook's secret is."""
    if settings.metrics_token is None:
        return True
    authorization = headers.get("authorization", "")
    given = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
    return hmac.compare_digest(given.encode(), settings.metrics_token.get_secret_value().encode())


class AuthError(Exception):
    """The request is not authenticated; the message says what was missing (never the secret)."""


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)  # checked at start-up by Settings: never raises here


@dataclass(frozen=True)
class Authenticator:
    secret: bytes | None
    secret_header: str | None
    hmac_key: bytes | None
    settings: Settings
    clock: Callable[[], float] = time.time

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.time) -> Authenticator:
        secret = settings.secret.get_secret_value().encode() if settings.secret else None
        key = None
        if settings.hmac_secret:
            raw = settings.hmac_secret.get_secret_value()
            key = _b64(raw) if settings.hmac_secret_is_base64 else raw.encode()
        return cls(secret, settings.secret_header.lower() if settings.secret_header else None, key, settings, clock)

    @property
    def enabled(self) -> bool:
        return self.secret is not None or self.hmac_key is not None

    def precheck(self, headers: Mapping[str, str]) -> bool:
        """From the headers alone: True when the request is authenticated, False when only the body can tell
        (an HMAC signature that looks right); raises AuthError when it cannot be authentic."""
        if not self.enabled:
            return True
        if self.secret is not None and self._secret_ok(headers):
            return True
        if self.hmac_key is not None and self._signature_plausible(headers):
            return False
        raise AuthError(MISSING)

    def check(self, headers: Mapping[str, str], body: bytes, method: str, url: str) -> None:
        """The HMAC signature over the body, for a request `precheck` could not settle."""
        if self.hmac_key is None or not self._signature_ok(headers, body, method, url):
            raise AuthError(MISSING)

    def _secret_ok(self, headers: Mapping[str, str]) -> bool:
        assert self.secret is not None
        authorization = headers.get("authorization", "")
        # The Authorization header carries a scheme: a bare secret there is refused, as RFC 6750 says.
        candidates = [headers.get("x-vapi-secret", ""),
                      authorization[7:] if authorization[:7].lower() == "bearer " else ""]
        if self.secret_header:  # Vapi's bearerPrefixEnabled can be off for a custom header: both forms
            value = headers.get(self.secret_header, "")
            candidates.append(value[7:] if value[:7].lower() == "bearer " else value)
        ok = False
        for candidate in candidates:  # compare all, so timing does not say which header matched
            ok |= hmac.compare_digest(candidate.encode(), self.secret)
        return ok

    def _signature_plausible(self, headers: Mapping[str, str]) -> bool:
        """A signature is there (with its prefix) and the timestamp is fresh: worth reading the body for."""
        s = self.settings
        given = headers.get(s.hmac_signature_header.lower(), "")
        if not given or not given.startswith(s.hmac_signature_prefix):
            return False
        return "{timestamp}" not in s.hmac_payload_format or self._fresh(headers)

    def _fresh(self, headers: Mapping[str, str]) -> bool:
        stamp = headers.get(self.settings.hmac_timestamp_header.lower(), "")
        if len(stamp) > 32:
            return False
        try:
            when = float(stamp)
        except ValueError:
            return False
        if not math.isfinite(when):  # nan compares false with everything, so it would pass the window
            return False
        when = when / 1000 if when > 1e11 else when  # milliseconds or seconds
        return abs(self.clock() - when) <= self.settings.hmac_tolerance

    def _signature_ok(self, headers: Mapping[str, str], body: bytes, method: str, url: str) -> bool:
        s = self.settings
        assert self.hmac_key is not None
        if not self._signature_plausible(headers):
            return False
        given = headers.get(s.hmac_signature_header.lower(), "")[len(s.hmac_signature_prefix):]
        stamp = headers.get(s.hmac_timestamp_header.lower(), "")
        payload = (s.hmac_payload_format.replace("{timestamp}", stamp).replace("{method}", method.upper())
                   .replace("{url}", url).encode())
        payload = payload.replace(b"{body}", body)
        digest = hmac.new(self.hmac_key, payload, getattr(hashlib, s.hmac_algorithm)).digest()
        expected = digest.hex() if s.hmac_encoding == "hex" else base64.b64encode(digest).decode()
        return hmac.compare_digest(given.strip().encode(), expected.encode())
