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


def _keys(target: dict[str, Any] | None, entry: bool = False) -> set[str]:
    """What identifies a destination: its number (digits only), SIP URI (lower case) or assistant. A failed
    transfer to an extension leaves out only that extension of a shared number; one to the number itself
    leaves out every entry on it (an `entry` carries both keys)."""
    if not target:
        return set()
    keys = set()
    number = target.get("number")
    if isinstance(number, str) and (digits := re.sub(r"\D", "", number)):
        extension = target.get("extension")
        ext = re.sub(r"\D", "", extension) if isinstance(extension, str) else ""
        if ext:
            keys.add(f"tel:{digits};ext={ext}")
        if entry or not ext:
            keys.add(f"tel:{digits}")
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
    latest: dict[str, str] = {}  # the last status seen for each destination: a later success clears a failure
    for raw in items[-MAX_TRANSFERS:]:
        try:
            transfer = _Transfer.model_validate(raw)
        except ValidationError:
            continue  # a record we cannot read is no reason to refuse a destination
        for key in _keys(transfer.destination):
            latest[key] = transfer.status or ""
    failed = {key: status for key, status in latest.items() if status in FAILED}
    if not failed:
        return ()
    out = []
    for entry_id in ids:
        entry = catalogue.get(entry_id)
        hits = [failed[k] for k in _keys(entry.target(kind) if entry else None, entry=True) if k in failed]
        if hits:
            out.append((entry_id, hits[0]))
    return tuple(out)
