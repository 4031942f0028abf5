"""Checks that a webhook really comes from Vapi, as Vapi is configured to prove it.

Shared secret (`X-Vapi-Secret`), bearer token (`Authorization` or a custom header), or an HMAC signature
of the raw body (Vapi's HMACAuthenticationPlan). Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .settings import Settings


class AuthError(Exception):
    """The request is not authenticated; the message says what was missing (never the secret)."""


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
            key = base64.b64decode(raw) if settings.hmac_secret_is_base64 else raw.encode()
        return cls(secret, settings.secret_header.lower() if settings.secret_header else None, key, settings, clock)

    @property
    def enabled(self) -> bool:
        return self.secret is not None or self.hmac_key is not None

    def check(self, headers: Mapping[str, str], body: bytes, method: str, url: str) -> None:
        if self.secret is not None and self._secret_ok(headers):
            return
        if self.hmac_key is not None and self._signature_ok(headers, body, method, url):
            return
        if self.enabled:
            raise AuthError("missing or wrong credentials: send X-Vapi-Secret, a bearer token, or a valid signature")

    def _secret_ok(self, headers: Mapping[str, str]) -> bool:
        assert self.secret is not None
        candidates = [headers.get("x-vapi-secret", "")]
        for name in ("authorization", self.secret_header):
            value = headers.get(name, "") if name else ""
            candidates.append(value[7:] if value[:7].lower() == "bearer " else value)
        ok = False
        for candidate in candidates:  # compare all, so timing does not say which header matched
            ok |= hmac.compare_digest(candidate.encode(), self.secret)
        return ok

    def _signature_ok(self, headers: Mapping[str, str], body: bytes, method: str, url: str) -> bool:
        s = self.settings
        assert self.hmac_key is not None
        given = headers.get(s.hmac_signature_header.lower(), "")
        if s.hmac_signature_prefix:
            if not given.startswith(s.hmac_signature_prefix):
                return False
            given = given[len(s.hmac_signature_prefix):]
        stamp = headers.get(s.hmac_timestamp_header.lower(), "")
        if "{timestamp}" in s.hmac_payload_format:
            try:
                when = float(stamp)
            except ValueError:
                return False
            when = when / 1000 if when > 1e11 else when  # milliseconds or seconds
            if abs(self.clock() - when) > s.hmac_tolerance:
                return False
        payload = (s.hmac_payload_format.replace("{timestamp}", stamp).replace("{method}", method.upper())
                   .replace("{url}", url).encode())
        payload = payload.replace(b"{body}", body)
        digest = hmac.new(self.hmac_key, payload, getattr(hashlib, s.hmac_algorithm)).digest()
        expected = digest.hex() if s.hmac_encoding == "hex" else base64.b64encode(digest).decode()
        return hmac.compare_digest(given.strip().encode(), expected.encode())
