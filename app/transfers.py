"""Earlier transfers in this call (`artifact.transfers`): a destination that just failed is not offered again.

A caller whose transfer to billing went unanswered must not be sent straight back to billing. An entry is
left out when an earlier transfer to its number, SIP URI or assistant ended `no-answer`, `busy`,
`voicemail` or `failed`; a `connected`, `completed` or `cancelled` transfer says nothing against it.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .catalogue import Catalogue
from .payload import DestinationRequest

FAILED = frozenset({"no-answer", "busy", "voicemail", "failed"})
MAX_TRANSFERS = 50  # a call has a handful; more is not worth reading


class _Transfer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    destination: dict[str, Any] | None = None
    status: str | None = None


def _keys(target: dict[str, Any] | None) -> set[str]:
    """What identifies a destination: its number (digits only), SIP URI (lower case) or assistant."""
    if not target:
        return set()
    keys = set()
    number = target.get("number")
    if isinstance(number, str) and (digits := re.sub(r"\D", "", number)):
        keys.add("tel:" + digits)
    uri = target.get("sipUri")
    if isinstance(uri, str) and uri.strip():
        keys.add("sip:" + uri.strip().lower().removeprefix("sip:"))
    for field in ("assistantName", "assistantId"):
        value = target.get(field)
        if isinstance(value, str) and value.strip():
            keys.add(f"assistant:{value.strip().lower()}")
    return keys


def unreachable(request: DestinationRequest, catalogue: Catalogue, ids: tuple[str, ...],
                kind: str) -> tuple[tuple[str, str], ...]:
    """(id, status) for each of `ids` that an earlier transfer in this call failed to reach."""
    items = (request.artifact.transfers if request.artifact else None) or []
    failed: dict[str, str] = {}
    for raw in items[-MAX_TRANSFERS:]:
        try:
            transfer = _Transfer.model_validate(raw)
        except ValidationError:
            continue  # a record we cannot read is no reason to refuse a destination
        if transfer.status in FAILED:
            for key in _keys(transfer.destination):
                failed[key] = transfer.status
    if not failed:
        return ()
    out = []
    for entry_id in ids:
        entry = catalogue.get(entry_id)
        hits = [failed[k] for k in _keys(entry.target(kind) if entry else None) if k in failed]
        if hits:
            out.append((entry_id, hits[0]))
    return tuple(out)
