"""Each decision joined to what Vapi said happened next: one outcome per decision, and a summary per destination.

Pure functions on plain values, no I/O: the store keeps `Decided` rows and `OutcomeEvent` rows
(app/vapi/outcomes.py) however it likes, and hands one call's (or many calls') rows to `join`.

Outcomes:
- `reached`: the transfer connected or completed, the call was forwarded (`assistant-forwarded-call`), or the
  assistant it was handed to took the call (`transfer-update` to it, or it is in `assistantActivations`).
- `unreachable`: no-answer, busy, voicemail or failed, or a forwarding-failure `endedReason`.
- `hung_up`: the transfer was cancelled, or the caller ended the call during it.
- `rerouted`: reached, and later in the same call another destination request came (the usual sign of a wrong
  route). "Later" is after the decision, and after the moment it was reached when that moment is known (a
  `transfer-update`); a report only says so once the call is over, so any later request counts.
- `pending`: nothing heard yet, and the call's end-of-call report has not come.
- `unknown`: the end-of-call report came and said nothing about this transfer. This is what chats and web calls
  get for a number or SIP destination (they have no phone transfer); their handoffs to assistants are `reached`
  through `assistantActivations` or `transfer-update`, like a phone call's. A phone transfer whose outcome Vapi did
  not record (SIP cold-transfer detection is an organisation setting) is `unknown` too.

How an event finds its decision: by call id, then by destination (`same_destination` on destination_keys; the
same number with another extension is another destination).
- `artifact.transfers[]` and `assistantActivations[]` are lined up from the end: the latest entry to a
  destination belongs to the latest decision to it, the one before to the one before, and so on.
- `transfer-update` and a report's own `destination`: the latest decision to that destination made before it
  (CLOCK_SKEW allowed between Vapi's clock and ours).
- an `endedReason` with no destination (status-update `ended`, a report without `destination`): the transfer in
  progress then, i.e. the latest of Switchboard's decisions and Vapi's `forwarding` attempts; a forwarding to a
  destination no decision named (a fallback plan's, a static one) takes it away from every decision.
Conflicts: the most specific event wins (a transfer's own status, then an assistant taking the call or a
report's `endedReason` naming the destination, then an `endedReason` about the transfer in progress), and among
equally specific ones the latest. Resends change nothing: events are kept once per (source, index), and only the
latest end-of-call report of a call is read. The order messages arrive in does not matter (a report before the
`transfer-update` joins the same), since events are ordered by Vapi's timestamps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.vapi.outcomes import (
    ACTIVATION,
    ENDED,
    FORWARDING,
    HANDOFF,
    HUNG_UP,
    REACHED,
    REPORT,
    REPORT_KINDS,
    TRANSFER,
    UNREACHABLE,
    OutcomeEvent,
    destination_keys,
    same_destination,
)

REROUTED, PENDING, UNKNOWN = "rerouted", "pending", "unknown"
OUTCOMES = (REACHED, UNREACHABLE, HUNG_UP, REROUTED, PENDING, UNKNOWN)
NOT_REACHED = (UNREACHABLE, HUNG_UP, REROUTED)
MAX_CALL_EVENTS = 2000  # the latest events of one call read by the join: a real call has tens
CLOCK_SKEW = 2.0  # seconds Vapi's clock may be behind ours; two decisions to one destination are never this close
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_OF_WEEK = 7 * 24


@dataclass(frozen=True, slots=True)
class Decided:
    """What the join needs of one decision. Build it with `decided` so the keys are computed the same way as
    the events' keys."""

    decision_id: str
    call_id: str
    at: float  # epoch seconds: when the request was decided
    destination_id: str | None  # the catalogue id answered; None when no destination was answered
    keys: tuple[str, ...] = ()  # destination_keys of the answered destination


def decided(decision_id: str, call_id: str, at: float, destination_id: str | None,
            destination: dict[str, Any] | None) -> Decided:
    """A decision as the join reads it. `destination`: the destination answered, i.e. the catalogue entry's
    `destination` (transfer requests) or `handoff` (handoff requests) as it was when the decision was made."""
    return Decided(decision_id, call_id, at, destination_id, destination_keys(destination))


@dataclass(frozen=True, slots=True)
class Joined:
    decision: Decided
    outcome: str  # one of OUTCOMES
    evidence: str  # what decided it, for people ("artifact.transfers[0] no-answer (end-of-call-report)")


@dataclass(frozen=True, slots=True)
class _Best:
    score: tuple[int, float, int]  # rank, time, order: the highest wins
    outcome: str
    evidence: str
    reached_at: float | None  # when it was reached, if the event says so as it happens


def _evidence(event: OutcomeEvent) -> str:
    if event.kind == TRANSFER:
        return f"artifact.transfers {event.status} (end-of-call-report)"
    if event.kind == ACTIVATION:
        return "the assistant took the call (end-of-call-report assistantActivations)"
    if event.kind == HANDOFF:
        return "the assistant took the call (transfer-update)"
    if event.kind == REPORT:
        return f"endedReason {event.status} (end-of-call-report)"
    return f"endedReason {event.status} (status-update ended)"


def _deduped(events: Iterable[OutcomeEvent]) -> list[OutcomeEvent]:
    """Each (source, index) once (the earliest), only the latest end-of-call report, ordered by time, the
    latest MAX_CALL_EVENTS at most."""
    kept: dict[tuple[str, int], OutcomeEvent] = {}
    for event in events:
        known = kept.get((event.source, event.index))
        if known is None or event.at < known.at:
            kept[(event.source, event.index)] = event
    reports = {(e.at, e.source) for e in kept.values() if e.kind in REPORT_KINDS}
    latest = max(reports)[1] if reports else None
    out = sorted((e for e in kept.values() if e.kind not in REPORT_KINDS or e.source == latest),
                 key=lambda e: (e.at, e.source, e.index))
    return out[-MAX_CALL_EVENTS:]  # bounded work whatever a store hands over; the latest decide


def _owner(decisions: Sequence[Decided], event: OutcomeEvent) -> Decided | None:
    """The latest decision to the event's destination made before it; else the first one to it."""
    matching = [d for d in decisions if same_destination(d.keys, event.keys)]
    before = [d for d in matching if d.at <= event.at + CLOCK_SKEW]
    return before[-1] if before else matching[0] if matching else None


def _in_progress(decisions: Sequence[Decided], attempts: Sequence[OutcomeEvent], at: float) -> Decided | None:
    """The decision whose transfer was in progress at `at`: the latest of decisions and Vapi's attempts."""
    last_decision = next((d for d in reversed(decisions) if d.at <= at + CLOCK_SKEW), None)
    last_attempt = next((a for a in reversed(attempts) if a.at <= at), None)
    if last_attempt is None:
        return last_decision
    if last_decision is None:
        return _owner(decisions, last_attempt)
    if same_destination(last_attempt.keys, last_decision.keys) and last_attempt.at >= last_decision.at - CLOCK_SKEW:
        return last_decision  # the attempt is this decision's transfer
    if last_attempt.at > last_decision.at:
        return _owner(decisions, last_attempt)  # a later transfer elsewhere: one no decision named, or an earlier
    return last_decision


def join_call(decisions: Iterable[Decided], events: Iterable[OutcomeEvent]) -> list[Joined]:
    """One call's decisions, each with its outcome (in decision order). Decisions and events of other calls
    must not be passed; `join` groups them."""
    every = sorted({d.decision_id: d for d in decisions}.values(), key=lambda d: (d.at, d.decision_id))
    routed = [d for d in every if d.keys]  # only a decision that answered a destination has a transfer
    ordered = _deduped(events)
    best: dict[str, _Best] = {}

    def offer(decision: Decided | None, event: OutcomeEvent, order: int) -> None:
        outcome = event.signal
        if decision is None or outcome is None:
            return
        score = (event.rank, event.at, order)
        known = best.get(decision.decision_id)
        if known is None or score > known.score:
            reached_at = event.at if event.kind == HANDOFF and event.timed else None
            best[decision.decision_id] = _Best(score, outcome, _evidence(event), reached_at)

    # List entries, lined up from the end: the k-th latest entry to a destination is the k-th latest decision's
    for kind in (TRANSFER, ACTIVATION):
        taken: set[str] = set()
        for order in range(len(ordered) - 1, -1, -1):
            event = ordered[order]
            if event.kind != kind:
                continue
            target = next((d for d in reversed(routed)
                           if d.decision_id not in taken and same_destination(d.keys, event.keys)), None)
            if target is not None:
                taken.add(target.decision_id)
                offer(target, event, order)
    attempts = [e for e in ordered if e.kind in (FORWARDING, HANDOFF)]
    for order, event in enumerate(ordered):
        if event.kind == HANDOFF or (event.kind == REPORT and event.keys):
            offer(_owner(routed, event), event, order)
        elif event.kind in (ENDED, REPORT):
            offer(_in_progress(routed, attempts, event.at), event, order)

    call_over = any(e.kind in REPORT_KINDS for e in ordered)
    out = []
    for decision in every:
        found = best.get(decision.decision_id)
        if not decision.keys:
            out.append(Joined(decision, UNKNOWN, "no destination was answered"))
        elif found is None:
            out.append(Joined(decision, UNKNOWN, "the end-of-call report says nothing of this transfer")
                       if call_over else Joined(decision, PENDING, "nothing heard yet"))
        elif found.outcome == REACHED and (later := _later_request(every, decision, found.reached_at)):
            out.append(Joined(decision, REROUTED, f"{found.evidence}; then another request ({later.decision_id})"))
        else:
            out.append(Joined(decision, found.outcome, found.evidence))
    return out


def _later_request(every: Sequence[Decided], decision: Decided, reached_at: float | None) -> Decided | None:
    after = decision.at if reached_at is None else max(decision.at, reached_at - CLOCK_SKEW)
    return next((d for d in every if d.at > after and d.decision_id != decision.decision_id), None)


def join(decisions: Iterable[Decided], events: Iterable[OutcomeEvent]) -> list[Joined]:
    """Every decision with its outcome, calls joined one at a time (by call id), in decision-time order."""
    calls: dict[str, tuple[list[Decided], list[OutcomeEvent]]] = {}
    for d in decisions:
        calls.setdefault(d.call_id, ([], []))[0].append(d)
    for e in events:
        if e.call_id in calls:  # events of a call with no decision here join nothing
            calls[e.call_id][1].append(e)
    out = [joined for ds, es in calls.values() for joined in join_call(ds, es)]
    return sorted(out, key=lambda j: (j.decision.at, j.decision.decision_id))


# --- the summary: `switchboard outcomes` ----------------------------------------------------------------------


@dataclass
class Counts:
    """Decisions and how many of them had each outcome (they add up to `decisions`)."""

    decisions: int = 0
    reached: int = 0
    unreachable: int = 0
    hung_up: int = 0
    rerouted: int = 0
    pending: int = 0
    unknown: int = 0

    def add(self, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        self.decisions += 1
        setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def settled(self) -> int:
        """Decisions whose outcome is known (neither pending nor unknown)."""
        return self.reached + self.not_reached

    @property
    def not_reached(self) -> int:
        return self.unreachable + self.hung_up + self.rerouted

    @property
    def share_not_reached(self) -> float | None:
        """Of the settled decisions, the share that did not end where they were sent; None with none settled."""
        return self.not_reached / self.settled if self.settled else None

    def as_dict(self) -> dict[str, int]:
        return {"decisions": self.decisions, **{name: getattr(self, name) for name in OUTCOMES}}


def hour_of_week(at: float, tz: dt.tzinfo = dt.UTC) -> int:
    """0 for Monday 00:00-00:59 up to 167 for Sunday 23:00-23:59, in `tz`."""
    moment = dt.datetime.fromtimestamp(at, tz)
    return moment.weekday() * 24 + moment.hour


def hour_label(hour: int) -> str:
    """`mon 09` for hour_of_week 9."""
    return f"{DAYS[hour // 24]} {hour % 24:02d}"


def _worst_first(item: tuple[str, Counts]) -> tuple[int, float, int, int, str]:
    name, counts = item
    share = counts.share_not_reached
    return (share is None, -(share or 0.0), -counts.not_reached, -counts.decisions, name)


@dataclass(frozen=True)
class Summary:
    total: Counts
    destinations: dict[str, Counts]  # destination id -> counts, worst first (by share not reached)
    by_hour: dict[str, dict[int, Counts]] = field(default_factory=dict)  # id -> hour_of_week -> counts

    def as_json(self) -> dict[str, Any]:
        """The `switchboard outcomes --format json` object: `destinations` maps each id (worst first) to integer
        counts; `total` sums them; `by_hour_of_week` maps each id to `mon 09`-style hours that had decisions."""
        return {
            "destinations": {name: counts.as_dict() for name, counts in self.destinations.items()},
            "total": self.total.as_dict(),
            "by_hour_of_week": {name: {hour_label(h): c.as_dict() for h, c in sorted(hours.items())}
                                for name, hours in self.by_hour.items()},
        }


def summarise(joined: Iterable[Joined], tz: dt.tzinfo = dt.UTC) -> Summary:
    """Per destination id: counts of each outcome, overall and by hour of the week (in `tz`, e.g. the
    catalogue's time zone), worst destinations first. Decisions that answered no destination are left out."""
    total = Counts()
    per: dict[str, Counts] = {}
    hours: dict[str, dict[int, Counts]] = {}
    for item in joined:
        name = item.decision.destination_id
        if name is None:
            continue
        total.add(item.outcome)
        per.setdefault(name, Counts()).add(item.outcome)
        hour = hour_of_week(item.decision.at, tz)
        hours.setdefault(name, {}).setdefault(hour, Counts()).add(item.outcome)
    order = [name for name, _ in sorted(per.items(), key=_worst_first)]
    return Summary(total, {name: per[name] for name in order}, {name: hours[name] for name in order})
