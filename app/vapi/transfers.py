"""Earlier transfers in this call (`artifact.transfers`): a destination that just failed is not offered again.

A caller whose transfer to billing went unanswered must not be sent straight back to billing. An entry is
left out when its latest earlier transfer (to its number, SIP URI or assistant) ended `no-answer`, `busy`,
`voicemail` or `failed`; a `connected`, `completed` or `cancelled` transfer says nothing against it.

Transfers are read from the latest back, and only until every destination in question has its latest
status: what matters is each destination's last transfer, however many other transfers came after it (a cap
on how many are read once let a failure 50 transfers back slip out of view). Each transfer costs a few
dictionary look-ups, so the work is bounded by the body's size limit, and usually stops after a handful.
"""

from __future__ import annotations

from typing import Any

from app.catalogue.destinations import Catalogue
from app.vapi.messages import DestinationRequest

FAILED = frozenset({"no-answer", "busy", "voicemail", "failed"})
KEY_CHARS = 256  # a number, URI or name longer than this identifies no catalogue entry; not worth reading


def _digits(value: str) -> str:
    return "".join(ch for ch in value[:KEY_CHARS] if ch.isascii() and ch.isdigit())


def keys(target: Any, entry: bool = False) -> set[str]:
    """What identifies a destination: its number (digits only), SIP URI (lower case) or assistant. A failed
    transfer to an extension leaves out only that extension of a shared number; one to the number itself
    leaves out every entry on it (an `entry` carries both keys). Anything that is not a dict has none."""
    if not isinstance(target, dict) or not target:
        return set()
    found = set()
    number = target.get("number")
    if isinstance(number, str) and (digits := _digits(number)):
        extension = target.get("extension")
        ext = _digits(extension) if isinstance(extension, str) else ""
        if ext:
            found.add(f"tel:{digits};ext={ext}")
        if entry or not ext:
            found.add(f"tel:{digits}")
    uri = target.get("sipUri")
    if isinstance(uri, str) and uri.strip():
        found.add("sip:" + uri[:KEY_CHARS].strip().lower().removeprefix("sip:"))
    for field in ("assistantName", "assistantId"):
        value = target.get(field)
        if isinstance(value, str) and value.strip():
            found.add(f"assistant:{value[:KEY_CHARS].strip().lower()}")
    return found


# The last scan and what it was of: a request's recording asks what its decision just asked, and a list of
# thousands of transfers is not worth reading twice. The list itself is held, so `is` cannot match another.
_last: tuple[list[Any], frozenset[str], dict[str, tuple[int, str]]] | None = None


def _latest(items: list[Any], wanted: set[str]) -> dict[str, tuple[int, str]]:
    """For each key in `wanted`, (index, status) of the latest transfer to it. Read from the latest back,
    until every key is found; destinations written the same way (most are) are worked out once."""
    global _last
    asked = frozenset(wanted)
    last = _last
    if last is not None and last[0] is items and last[1] == asked:
        return last[2]
    pending = set(wanted)
    found_at: dict[str, tuple[int, str]] = {}
    memo: dict[Any, set[str]] = {}
    for index in range(len(items) - 1, -1, -1):
        raw = items[index]
        dest = raw.get("destination") if isinstance(raw, dict) else None
        if not isinstance(dest, dict):
            continue  # a record we cannot read is no reason to refuse a destination
        signature = tuple(dest.get(k) for k in ("number", "extension", "sipUri", "assistantName", "assistantId"))
        try:
            found = memo.get(signature)
        except TypeError:  # a value that is no string (a list, an object): identifies nothing anyway
            found = set()
        if found is None:
            found = memo[signature] = keys(dest)
        hits = found & pending
        if hits:
            status = raw.get("status")
            for key in hits:
                found_at[key] = (index, status if isinstance(status, str) else "")
            pending -= hits
            if not pending:  # every destination in question has its latest status: older ones change nothing
                break
    _last = (items, asked, found_at)
    return found_at


def _wanted(catalogue: Catalogue, ids: tuple[str, ...], kind: str) -> dict[str, set[str]]:
    """entry id -> the keys of what it answers to this kind of request."""
    wanted: dict[str, set[str]] = {}
    for entry_id in ids:
        entry = catalogue.get(entry_id)
        if entry is not None and (found := keys(entry.target(kind), entry=True)):
            wanted[entry_id] = found
    return wanted


def unreachable(request: DestinationRequest, catalogue: Catalogue, ids: tuple[str, ...],
                kind: str) -> tuple[tuple[str, str], ...]:
    """(id, status) for each of `ids` whose latest earlier transfer in this call failed."""
    items = request.artifact.transfers if request.artifact else None
    if not items:
        return ()
    wanted = _wanted(catalogue, ids, kind)
    latest = _latest(items, set().union(*wanted.values())) if wanted else {}
    out = []
    for entry_id, found in wanted.items():
        hits = [latest[k][1] for k in sorted(found) if k in latest and latest[k][1] in FAILED]
        if hits:
            out.append((entry_id, hits[0]))
    return tuple(out)


def latest_indices(items: list[Any], catalogue: Catalogue, ids: tuple[str, ...], kind: str) -> list[int]:
    """Where, in order, the transfers are that decide which of `ids` are left out (the latest to each of their
    destinations): all a recording needs to keep for a replay to leave out the same ones."""
    wanted = _wanted(catalogue, ids, kind)
    if not wanted or not items:
        return []
    return sorted({index for index, _ in _latest(items, set().union(*wanted.values())).values()})
