"""The service's side of the decision store: each answered request kept as a decision, and Vapi's outcome messages
(end-of-call-report, status-update, transfer-update) turned into events and joined to their call's decisions.

Nothing here runs inside a caller's budget. A decision's row is built after the answer is written (or, with
recording on, by the recorder's thread, which hands over the same redacted record it appends); `Store.add_*` only
appends to the store's bounded buffer. An outcome message is answered `200 {}` at once; after the response, its
events are read (app/vapi/outcomes.outcome_events: only the fields they need) and handed to the store, and a join
task reads the call back (`Store.call`), adds the events just received (which may not be written yet), joins
(app/dataset/outcomes.join_call) and sets each decision whose outcome changed.

Bounds: a message's events always go to the store (its buffer is bounded); the join is coalesced per call (a
call's later messages join the join already waiting for it) and run by at most MAX_JOINS tasks. At most
MAX_IN_FLIGHT calls wait for or run a join; beyond that the join is dropped (its events are kept, and
`switchboard outcomes` joins from the store), counted (`switchboard_outcome_messages_total{result="dropped"}`) and
logged once per LOG_INTERVAL, so a flood of reports cannot grow memory without limit. (A join per message, each
waiting for the store's flush, kept up with about 430 messages a second: a flood of 3,000 a second dropped 86% of
messages, the callers' own reports among them.) While the database is down, joins wait as call ids in a bounded set
(MAX_DEFERRED) and are done once it answers again.

Idempotent: events are kept once per (source, index) (a resent message has the same ones), and an outcome is set,
and counted in `switchboard_transfer_outcomes_total`, only when it differs from the one the store (or this process,
for rows not written yet) already has: a resend changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.catalogue.destinations import Catalogue
from app.dataset.outcomes import NOT_REACHED, Decided, join_call
from app.decision.decider import Decision
from app.logs import LOGGER, event
from app.store import ENV, CallRecord, DecisionRow, EventRow, OutcomeRow, Store, StoreError, event_key
from app.store.url import Target, parse_database_url
from app.vapi.outcomes import REACHED, OutcomeEvent, destination_keys, outcome_events

if TYPE_CHECKING:
    from app.engine import Engine
    from app.service.metrics import Metrics
    from app.settings import Settings

MAX_IN_FLIGHT = 1000  # calls waiting for or running a join; each holds at most MAX_HELD events, not the body
MAX_JOINS = 8  # join workers at once (each may wait up to FLUSH_WAIT for the store)
JOIN_BATCH = 100  # calls one worker joins with one flush and one query: a flood is read back in few queries
MAX_HELD = 64  # events held per waiting call (all are in the store anyway: these are the not-yet-written ones)
MAX_DEFERRED = 10_000  # calls whose join waits for the database to answer again
MAX_SETTLED = 50_000  # decisions whose latest outcome this process set, remembered until the store has it
FLUSH_WAIT = 2.0  # seconds a join waits for this process's own rows to be written, so it reads them back
JOIN_TIMEOUT = 10.0  # seconds a join waits for the store to read a call
TICK = 2.0  # seconds between two metric updates from the store, and two tries at the deferred joins
RETRY_BATCH = 200  # deferred joins tried per tick
LOG_INTERVAL = 60.0  # seconds between two lines about dropped messages
SETTLED = (REACHED, *NOT_REACHED)  # outcomes the metric counts: pending and unknown may still change, or say nothing
OTHER = "other"  # the metrics label of a destination id the catalogue does not have (any more)


def check_store(settings: Settings) -> Target:
    """Before serving (create_app): SWITCHBOARD_DATABASE_URL is usable, and an embedded file's folder can be made
    and written. Raises StoreConfigError or StoreError (UserErrors: `serve` says one `Error:` line)."""
    target = parse_database_url(settings.database_url, settings.data_dir)
    if target.kind != "sqlite" or target.path is None:
        return target
    path = target.path
    fix = (f"make {path.parent} a writable folder, set SWITCHBOARD_DATA_DIR or {ENV}=sqlite:///ANOTHER/PATH, or "
           f"{ENV}=none for no store")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of the SQLite file {path}: {exc.strerror or exc}; {fix}") \
            from None
    if path.is_dir():
        raise StoreError(f"the SQLite file {path} is a folder; {fix}")
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
        raise StoreError(f"cannot write the SQLite file {path}; {fix}")
    return target


# --- rows from what the service has, and back --------------------------------------------------------------


def event_row(e: OutcomeEvent) -> EventRow:
    """An outcome event as the store keeps it: keyed by (source, index), so a resend is kept once."""
    return EventRow(event_key(e.source, e.index), e.call_id, e.kind, datetime.fromtimestamp(e.at, UTC), e.keys,
                    e.status, e.source, e.index, e.timed)


def event_from(row: EventRow) -> OutcomeEvent:
    return OutcomeEvent(row.call_id, row.kind, row.destination_keys, row.status, row.at.timestamp(),
                        row.source or row.event_key, row.position, row.timed)


def decided_from(row: DecisionRow) -> Decided:
    return Decided(row.decision_id, row.call_id, row.at.timestamp(), row.answered, row.destination_keys)


@dataclass(frozen=True, slots=True)
class DecisionKeeper:
    """Keeps one answered request as a DecisionRow. Called once, with the recorded (redacted) request or None:
    by the response's background task, or by the recorder's thread with the line it wrote (any thread will do:
    Store.add_decision only appends to its buffer)."""

    store: Store
    decision: Decision
    call_id: str | None
    request_id: str
    at: float  # epoch seconds, when it was answered
    engine: Engine

    def __call__(self, request_json: str | None = None) -> None:
        try:
            self._keep(request_json)
        except Exception as exc:  # a bug here must cost the row, never the service (the answer is sent)
            event(logging.getLogger(LOGGER), "store_decision_failed", logging.ERROR,
                  error=f"{type(exc).__name__}: {exc}")

    def _keep(self, request_json: str | None) -> None:
        d, engine = self.decision, self.engine
        entry = engine.catalogue.get(d.answered) if d.answered else None
        target = entry.target(d.kind) if entry is not None else None
        decision_id = uuid.uuid4().hex
        self.store.add_decision(DecisionRow(
            decision_id=decision_id, call_id=self.call_id or f"no-call-{decision_id}", request_id=self.request_id,
            at=datetime.fromtimestamp(self.at, UTC), message_type=d.kind, chosen=d.chosen, answered=d.answered,
            destination_keys=destination_keys(target), confidence=d.score, prompt_hash=engine.routing.prompt.hash,
            latency_ms=round(d.total_ms, 1), catalogue_hash=engine.routing.catalogue_hash,
            request_json=request_json))


class Outcomes:
    """One per process, made in the lifespan once the store is open; `run()` is its periodic task."""

    def __init__(self, store: Store, metrics: Metrics, catalogue: Callable[[], Catalogue | None],
                 logger: logging.Logger | None = None) -> None:
        self.store, self.metrics = store, metrics
        self.catalogue = catalogue  # the one in force: destination ids for the metric's label
        self.log = logger or logging.getLogger(LOGGER)
        self._ingesting = 0
        self._joins: set[asyncio.Task[None]] = set()  # the join workers
        self._queued: OrderedDict[str, list[OutcomeEvent]] = OrderedDict()  # calls waiting for a join
        self._running = 0  # joins in progress
        self._active: set[str] = set()  # calls being joined: their new messages wait for the next join
        self._deferred: OrderedDict[str, None] = OrderedDict()
        self._settled: OrderedDict[str, tuple[str, float]] = OrderedDict()  # decision id -> (outcome, at)
        self._dropped_unlogged = 0
        self._drop_logged_at = -float("inf")

    # ----- decisions -----

    def keeper(self, decision: Decision, call_id: str | None, request_id: str | None,
               engine: Engine) -> DecisionKeeper:
        return DecisionKeeper(self.store, decision, call_id, request_id or uuid.uuid4().hex[:16], time.time(), engine)

    # ----- outcome messages: on the request's path, only a check of the bound -----

    def accept(self, message: dict[str, Any]) -> Callable[[], Any] | None:
        """What to run after answering this outcome message, or None when there is nothing to do (no store) or
        too much in flight (dropped: counted, logged once per interval)."""
        if not self.store.enabled:
            return None
        received = time.time()
        return lambda: self.ingest(message, received)

    def _dropped(self) -> None:
        self._count("dropped")
        self._dropped_unlogged += 1
        now = time.monotonic()
        if now - self._drop_logged_at >= LOG_INTERVAL:
            self._drop_logged_at = now
            count, self._dropped_unlogged = self._dropped_unlogged, 0
            event(self.log, "outcome_messages_dropped", logging.WARNING, dropped=count,
                  in_flight=MAX_IN_FLIGHT, reason="more calls waiting for a join than the service holds; their "
                  "events are kept", fix="`switchboard outcomes` joins from the store; look for a flood of reports")

    async def ingest(self, message: dict[str, Any], received: float) -> None:
        """After the response: the message's events to the store, and a join task that holds only them."""
        self._ingesting += 1
        try:
            events = outcome_events(message, received)
            if not events:
                return
            for e in events:
                self.store.add_event(event_row(e))
            call_id = events[0].call_id
            waiting = self._queued.get(call_id)
            if waiting is not None:  # a join of this call is waiting already: it takes these events too
                waiting.extend(events[:MAX_HELD - len(waiting)])
            elif len(self._queued) + self._running >= MAX_IN_FLIGHT:
                self._dropped()
                return
            else:
                self._queued[call_id] = events[:MAX_HELD]
            self._count("ingested")
            if len(self._joins) < MAX_JOINS:
                task = asyncio.create_task(self._work())
                self._joins.add(task)
                task.add_done_callback(self._joins.discard)
        except Exception as exc:  # a bug must cost this message, not the service
            self._count("failed")
            event(self.log, "outcome_ingest_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._ingesting -= 1

    # ----- the join -----

    async def _work(self) -> None:
        """A join worker: joins waiting calls, oldest first, a batch at a time, until none waits that is not being
        joined already (one join of a call at a time: messages that come meanwhile wait, together, for the next)."""
        while True:
            # the oldest waiting calls not being joined: stops at JOIN_BATCH (at most MAX_IN_FLIGHT looked at)
            calls = list(itertools.islice((c for c in self._queued if c not in self._active), JOIN_BATCH))
            if not calls:
                return
            batch = [(c, self._queued.pop(c)) for c in calls]
            self._running += len(batch)
            self._active.update(calls)
            try:
                await self.join_batch(batch)
            finally:
                self._running -= len(batch)
                self._active.difference_update(calls)

    async def join_batch(self, batch: list[tuple[str, list[OutcomeEvent]]]) -> None:
        """`join` for several calls, read back with one flush and one query."""
        try:
            if not self.store.stats().connected:
                raise StoreError("the database does not answer")
            async with asyncio.timeout(JOIN_TIMEOUT):
                await self.store.flush(FLUSH_WAIT)
                records = await self.store.calls([call_id for call_id, _ in batch])
        except (StoreError, TimeoutError):
            for call_id, _ in batch:
                self._defer(call_id)
            return
        except Exception as exc:
            self._count("failed")
            event(self.log, "outcome_join_failed", logging.ERROR, calls=len(batch),
                  error=f"{type(exc).__name__}: {exc}")
            return
        for record, (_, received) in zip(records, batch, strict=True):
            self.settle(record, received)

    async def join(self, call_id: str, received: Iterable[OutcomeEvent] = ()) -> bool:
        """Join one call's decisions to its events and set the outcomes that changed. False (and the call waits
        in the deferred set) when the store cannot be read now."""
        try:
            if not self.store.stats().connected:
                raise StoreError("the database does not answer")
            async with asyncio.timeout(JOIN_TIMEOUT):
                await self.store.flush(FLUSH_WAIT)  # this process's own rows of the call, written first
                record = await self.store.call(call_id)
        except (StoreError, TimeoutError):
            self._defer(call_id)
            return False
        except Exception as exc:
            self._count("failed")
            event(self.log, "outcome_join_failed", logging.ERROR, call_id=call_id,
                  error=f"{type(exc).__name__}: {exc}")
            return False
        self.settle(record, received)
        return True

    def settle(self, record: CallRecord, received: Iterable[OutcomeEvent] = ()) -> None:
        """Set each decision's outcome where the join changed it, and count it once."""
        if not record.decisions:
            return  # a call Switchboard made no decision in: its events are kept, nothing to join
        events = {(e.source, e.index): e for e in map(event_from, record.events)}
        for e in received:  # just received: perhaps not written yet
            events.setdefault((e.source, e.index), e)
        decisions = [decided_from(row) for row in record.decisions]
        # The join's evidence is as recent as its latest event or decision: a join that knows more wins in the
        # store (outcome updates keep the latest), whichever replica makes it and in whatever order.
        latest = max([e.at for e in events.values()] + [d.at for d in decisions])
        rows = {row.decision_id: row for row in record.decisions}
        for joined in join_call(decisions, events.values()):
            row = rows[joined.decision.decision_id]
            stored = (row.outcome, row.outcome_at.timestamp() if row.outcome_at else -float("inf"))
            mine = self._settled.get(row.decision_id)
            outcome, at = max(stored, mine, key=lambda c: c[1]) if mine is not None else stored
            if joined.outcome == outcome or latest < at:
                continue
            self.store.add_outcome(OutcomeRow(row.decision_id, joined.outcome, datetime.fromtimestamp(latest, UTC)))
            self._settled[row.decision_id] = (joined.outcome, latest)
            self._settled.move_to_end(row.decision_id)
            while len(self._settled) > MAX_SETTLED:
                self._settled.popitem(last=False)
            if joined.outcome in SETTLED and row.answered is not None:
                self.metrics.transfer_outcomes.labels(self._label(row.answered), joined.outcome).inc()

    def _label(self, destination: str) -> str:
        catalogue = self.catalogue()
        return destination if catalogue is not None and catalogue.get(destination) is not None else OTHER

    def _defer(self, call_id: str) -> None:
        if call_id in self._deferred:
            return
        if len(self._deferred) >= MAX_DEFERRED:
            self._count("dropped")
            return
        self._deferred[call_id] = None
        self._count("deferred")

    def _count(self, result: str) -> None:
        self.metrics.outcome_messages.labels(result).inc()

    # ----- the periodic task -----

    async def run(self) -> None:
        """Every TICK: the store's figures into the metrics, and deferred joins tried once the database answers
        (for one tick already: other replicas write what they buffered meanwhile)."""
        connected_ticks = 0
        while True:
            stats = self.store.stats()
            self.metrics.store_changed(stats)
            connected_ticks = connected_ticks + 1 if stats.connected else 0
            if self._deferred and connected_ticks >= 2:
                for _ in range(min(RETRY_BATCH, len(self._deferred))):
                    call_id, _ = self._deferred.popitem(last=False)
                    if not await self.join(call_id):
                        break
            await asyncio.sleep(TICK)

    async def close(self, timeout: float = 2.0) -> None:
        """At shutdown: let the joins in flight finish (bounded); deferred ones are left (their events are kept,
        and `switchboard outcomes` joins from the store)."""
        if self._joins:
            await asyncio.wait(set(self._joins), timeout=timeout)
            for task in list(self._joins):
                task.cancel()
        self.metrics.store_changed(self.store.stats())


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
