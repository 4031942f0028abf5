"""The store's writing half: a bounded buffer that the service fills without waiting, and the loop on the store's
thread that writes it out.

No database call runs on the service's event loop or inside a caller's budget. The service's side (Store, in
handle.py) only appends to a deque under a lock (and, when the writer sleeps, wakes it): it costs microseconds
whether the database is fast, slow or stopped. The store's thread runs its own event loop with the driver on it;
the writer there takes up to `batch_rows` rows at a time and writes them in one transaction.

When the database is down, rows wait in the buffer (at most `capacity`; beyond that a row is dropped, counted
and logged once per `log_interval`) and the writer reconnects with a backoff (0.2 s doubling to 5 s, jittered so
replicas do not knock together). A batch that failed is written again as it was: every insert is ON CONFLICT DO
NOTHING on the row's id and outcome updates keep the latest, so a commit whose answer was lost duplicates nothing.
A batch the database refuses (a value it cannot hold) is written row by row, and only the rows refused again are
dropped (counted as rejected). Retention runs on the same thread, between the writer's transactions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.logs import LOGGER, event
from app.store.backend import Backend, RowsRefused, StoreError, StoreUnavailable
from app.store.rows import DecisionRow, EventRow, OutcomeRow, Row, RowRejected, clean

CAPACITY = 10_000  # rows waiting for the database: minutes of a busy service's decisions and outcomes
BATCH_ROWS = 500  # rows per transaction
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
LOG_INTERVAL = 60.0  # seconds between two lines about drops, or about the database being unreachable
RETENTION_DAYS = 90.0
RETENTION_INTERVAL = 3600.0  # seconds between two retention runs (the first runs at start)
PURGE_CHUNK = 5000  # rows deleted per statement: a large backlog is deleted without one long lock


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts since the store was made: for metrics (`switchboard_store_*`) and /healthz."""

    enabled: bool
    connected: bool
    capacity: int
    buffered: int  # rows waiting (in the buffer, or in a write that failed and will be retried)
    accepted: int  # rows add_* took
    written: int  # rows the database has (or already had: a resend)
    dropped: int  # rows refused by add_* because the buffer was full (or the store closed)
    rejected: int  # rows that no database would take (see rows.clean), or that the database refused
    lost: int  # rows still buffered when close() gave up (the database was down)
    failures: int  # writes, connects and retention runs that failed and were (or will be) retried
    last_error: str | None
    schema_version: int | None


@dataclass(frozen=True, slots=True)
class Purged:
    decisions: int
    events: int


class Writer:
    """The buffer, the counters and the writer loop that Store (handle.py) is built on; never made on its
    own. All of the store's state lives here, guarded by `_lock`."""

    def __init__(self, backend: Backend | None, *, capacity: int = CAPACITY, batch_rows: int = BATCH_ROWS,
                 retention_days: float | None = RETENTION_DAYS, retention_interval: float = RETENTION_INTERVAL,
                 log_interval: float = LOG_INTERVAL, backoff_start: float = BACKOFF_START,
                 backoff_max: float = BACKOFF_MAX, logger: logging.Logger | None = None) -> None:
        if capacity < 1 or batch_rows < 1:
            raise ValueError("capacity and batch_rows must be at least 1")
        self.backend = backend
        self.enabled = backend is not None
        self.description = backend.description if backend is not None else "none"
        self.capacity = capacity
        self.batch_rows = batch_rows
        self.retention_days = retention_days if retention_days and retention_days > 0 else None
        self.retention_interval = retention_interval
        self.log_interval = log_interval
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.log = logger or logging.getLogger(LOGGER)

        self._lock = threading.Lock()  # guards the buffer, the counters and the flags below
        self._pending: deque[tuple[int, Row]] = deque()
        self._inflight: list[Row] = []  # taken, cleaned, not yet known to be written (on the store's thread)
        self._inflight_rows = 0  # len(_inflight), readable under the lock from any thread
        self._inflight_last = 0  # the sequence number of the last row taken
        self._seq = 0  # of the last row accepted
        self._done = 0  # every row up to this sequence number is written or rejected
        self._accepted = self._written = self._dropped = self._rejected = self._lost = self._failures = 0
        self._dropped_unlogged = 0
        self._drop_logged_at = -float("inf")
        self._failures_unlogged = 0
        self._failure_logged_at = -float("inf")
        self._down_since: float | None = None
        self._last_error: str | None = None
        self._schema_version: int | None = None
        self._up = False
        self._migrated = False
        self._closing = False  # close() was called: drain, then stop
        self._stopped = False  # the thread has ended: nothing more runs
        self._close_deadline = float("inf")  # loop time
        self._wake_sent = False

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._main: asyncio.Task[None] | None = None
        self._finished: concurrent.futures.Future[StoreStats] = concurrent.futures.Future()
        self._futures: set[concurrent.futures.Future[Any]] = set()
        # Used on the store's loop only (asyncio objects bind to the loop that first waits on them).
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._db = asyncio.Lock()  # one operation at a time on the backend's connection

    def _log_drops(self, count: int) -> None:
        with self._lock:
            buffered, total = len(self._pending) + self._inflight_rows, self._dropped
        reason = "the store is closing" if self._closing else \
            f"the buffer is full ({buffered:,} of {self.capacity:,} rows wait for {self.description})"
        event(self.log, "store_rows_dropped", logging.WARNING, dropped=count, dropped_total=total, reason=reason,
              fix="bring the database back (rows are written again once it answers), or raise the buffer size")

    # ----- the store's thread -----

    async def _ready(self) -> None:
        """Connect, and migrate the first time; call with self._db held."""
        assert self.backend is not None
        if self.backend.connected:
            return
        await self.backend.connect()
        if not self._migrated:
            before, after = await self.backend.migrate()
            self._migrated = True
            with self._lock:
                self._schema_version = after
            event(self.log, "store_ready", database=self.description, schema_version=after,
                  **({"migrated_from": before} if before != after else {}))
        self._recovered()

    def _recovered(self) -> None:
        with self._lock:
            was_up, self._up = self._up, True
            down_since, self._down_since = self._down_since, None
            buffered = len(self._pending) + self._inflight_rows
        if not was_up and down_since is not None:
            event(self.log, "store_recovered", database=self.description, buffered=buffered,
                  down_seconds=round(time.monotonic() - down_since, 1))

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._up = False
            self._failures += 1
            self._failures_unlogged += 1
            self._last_error = str(exc)
            if self._down_since is None:
                self._down_since = now
            log = now - self._failure_logged_at >= self.log_interval
            if log:
                self._failure_logged_at = now
                failures, self._failures_unlogged = self._failures_unlogged, 0
            buffered = len(self._pending) + self._inflight_rows
        if log:
            event(self.log, "store_unavailable", logging.WARNING, database=self.description, error=str(exc),
                  failures=failures, buffered=buffered, capacity=self.capacity,
                  note="calls are answered as usual; rows wait in the buffer and are written once it answers")

    def _take(self) -> None:
        """Move the next batch from the buffer to _inflight, cleaned; rows no database would take are counted."""
        rejected: list[tuple[Row, RowRejected]] = []
        with self._lock:
            batch = [self._pending.popleft() for _ in range(min(self.batch_rows, len(self._pending)))]
            self._inflight_rows = len(batch)  # still counted against the capacity while they are cleaned
            if not self._pending:
                self._wake_sent = False
                self._wake.clear()
        rows: list[Row] = []
        for _, row in batch:
            try:
                rows.append(clean(row))
            except RowRejected as exc:
                rejected.append((row, exc))
        with self._lock:
            self._inflight, self._inflight_rows = rows, len(rows)
            if batch:
                self._inflight_last = batch[-1][0]
            self._rejected += len(rejected)
            if not rows and batch:
                self._done = self._inflight_last
        if rejected:  # one line per batch: a bug upstream would otherwise flood the log
            first, why = rejected[0]
            event(self.log, "store_row_rejected", logging.ERROR, kind=type(first).__name__, reason=str(why),
                  rejected=len(rejected))
        if batch and not rows:
            self._pulse()

    def _pulse(self) -> None:
        """Wake whoever waits for the writer's progress (flush)."""
        self._progress.set()
        self._progress = asyncio.Event()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.backoff_start
        while True:
            if self._dropped_unlogged and time.monotonic() - self._drop_logged_at >= self.log_interval:
                with self._lock:
                    self._drop_logged_at = time.monotonic()
                    count, self._dropped_unlogged = self._dropped_unlogged, 0
                self._log_drops(count)
            if not self._inflight:
                self._take()
            if not self._inflight:
                with self._lock:
                    empty = not self._pending
                if not empty:
                    continue
                if self._closing:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.log_interval)
                continue
            try:
                async with self._db:
                    await self._ready()
                    await self._write(self._inflight)
            except Exception as exc:  # unreachable, refusing us now (a password changed), or a driver error no
                # class above covers: the rows are kept and tried again; the store's thread never dies of it
                self._failed(exc if isinstance(exc, StoreError) else StoreError(f"{type(exc).__name__}: {exc}"))
                if self._closing and loop.time() >= self._close_deadline:
                    return  # _thread_main counts what is left as lost
                delay = backoff * random.uniform(0.8, 1.2)  # jitter: replicas do not retry in step
                backoff = min(backoff * 2, self.backoff_max)
                if self._closing:  # keep trying until close()'s deadline, no longer
                    await asyncio.sleep(max(0.0, min(delay, self._close_deadline - loop.time())))
                else:
                    with contextlib.suppress(TimeoutError):  # close() ends the wait
                        await asyncio.wait_for(self._stop.wait(), delay)
                continue
            backoff = self.backoff_start
            with self._lock:
                self._written += len(self._inflight)
                self._inflight, self._inflight_rows = [], 0
                self._done = self._inflight_last
            self._pulse()

    async def _write(self, rows: list[Row]) -> None:
        """One transaction; when the database refuses it, row by row, dropping only refused rows."""
        assert self.backend is not None
        try:
            await self.backend.write(*_split(rows))
        except RowsRefused:
            kept: list[Row] = []
            for row in rows:
                try:
                    await self.backend.write(*_split([row]))
                    kept.append(row)
                except RowsRefused as exc:
                    with self._lock:
                        self._rejected += 1
                    event(self.log, "store_row_rejected", logging.ERROR, kind=type(row).__name__, reason=str(exc))
            with self._lock:
                self._inflight, self._inflight_rows = kept, len(kept)

    async def _retention(self) -> None:
        """Delete what is older than retention_days: at start, then every retention_interval."""
        while True:
            try:
                purged = await self._purge(datetime.now(UTC) - timedelta(days=self.retention_days or 0))
                if purged.decisions or purged.events:
                    event(self.log, "store_retention", database=self.description, days=self.retention_days,
                          decisions=purged.decisions, events=purged.events)
                wait = self.retention_interval
            except Exception as exc:  # the writer reports an outage; try again sooner than the interval
                with self._lock:
                    self._failures += 1
                    self._last_error = str(exc)
                if not isinstance(exc, StoreUnavailable):
                    event(self.log, "store_retention_failed", logging.WARNING, database=self.description,
                          error=f"{type(exc).__name__}: {exc}")
                wait = min(self.retention_interval, self.log_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            if self._stop.is_set():
                return

    async def _purge(self, before: datetime) -> Purged:
        assert self.backend is not None
        counts = {}
        for table in ("decisions", "events"):
            total = 0
            while True:  # in chunks, each its own transaction: the writer writes between them
                async with self._db:
                    await self._ready()
                    n = await self.backend.purge(table, before, PURGE_CHUNK)
                total += n
                if n < PURGE_CHUNK:
                    break
            counts[table] = total
        return Purged(counts["decisions"], counts["events"])


def _split(rows: list[Row]) -> tuple[list[DecisionRow], list[EventRow], list[OutcomeRow]]:
    decisions = [r for r in rows if isinstance(r, DecisionRow)]
    events = [r for r in rows if isinstance(r, EventRow)]
    outcomes = [r for r in rows if isinstance(r, OutcomeRow)]
    return decisions, events, outcomes
