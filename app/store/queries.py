"""Reading the store back in bounded batches: calls with their decisions and events, for `switchboard outcomes`,
`export` and the service's join.

Pages follow (at, decision_id) with a keyset, not OFFSET or a server-side cursor: each page is one short query that
holds no lock or connection between pages, survives a reconnect, and costs the same on page 1,000 as on page 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from app.store.rows import CallRecord, DecisionRow, EventRow

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # "since the beginning": before any decision Switchboard can make
Cursor = tuple[datetime, str]  # (at, decision_id) of the last decision read


def start_cursor(since: datetime | None) -> Cursor:
    """The cursor before the first decision at or after `since` (decision ids are never empty)."""
    return (EARLIEST if since is None else since, "")


def records_from(page: Sequence[DecisionRow], after: Cursor, since: datetime,
                 decisions: Sequence[DecisionRow], events: Sequence[EventRow]) -> list[CallRecord]:
    """The calls that start in this page: each call whose first decision at or after `since` is in the page, with
    its decisions from `since` on and all its events. A call whose decisions span several pages is returned once,
    with the page of its first decision, without remembering which calls were returned already."""
    by_call: dict[str, list[DecisionRow]] = {}
    for d in decisions:
        if d.at >= since:
            by_call.setdefault(d.call_id, []).append(d)
    events_by_call: dict[str, list[EventRow]] = {}
    for e in events:
        events_by_call.setdefault(e.call_id, []).append(e)
    out = []
    seen: set[str] = set()
    for d in page:
        if d.call_id in seen:
            continue
        seen.add(d.call_id)
        mine = sorted(by_call.get(d.call_id, [d]), key=lambda x: (x.at, x.decision_id))
        if (mine[0].at, mine[0].decision_id) > after:  # its first decision is in this page, not an earlier one
            out.append(CallRecord(d.call_id, tuple(mine), tuple(sorted(events_by_call.get(d.call_id, []),
                                                                       key=lambda e: (e.at, e.event_key)))))
    return out


def call_record(call_id: str, decisions: Sequence[DecisionRow], events: Sequence[EventRow]) -> CallRecord:
    return CallRecord(call_id, tuple(sorted(decisions, key=lambda d: (d.at, d.decision_id))),
                      tuple(sorted(events, key=lambda e: (e.at, e.event_key))))
