"""The store: a bounded buffer that the service fills without waiting, and one thread that writes it out.

No database call runs on the service's event loop or inside a caller's budget. `add_decision`, `add_event` and
`add_outcome` only append to a deque under a lock (and, when the writer sleeps, wake it): they cost microseconds
whether the database is fast, slow or stopped. The store's thread runs its own event loop with the driver on it;
the writer there takes up to `batch_rows` rows at a time and writes them in one transaction.

When the database is down, rows wait in the buffer (at most `capacity`; beyond that a row is dropped, counted
and logged once per `log_interval`) and the writer reconnects with a backoff (0.2 s doubling to 5 s, jittered so
replicas do not knock together). A batch that failed is written again as it was: every insert is ON CONFLICT DO
NOTHING on the row's id and outcome updates keep the latest, so a commit whose answer was lost duplicates nothing.
A batch the database refuses (a value it cannot hold) is written row by row, and only the rows refused again are
dropped (counted as rejected).

Queries (`call`, `records`, `forget`) run on the same thread; each has an async form for the service and a
`_sync` form for the CLI (which blocks the calling thread: never call a `_sync` method on an event loop).
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
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from app.logs import LOGGER, event
from app.store.backend import Backend, RowsRefused, StoreError, StoreUnavailable
from app.store.queries import Cursor, call_record, records_from, start_cursor
from app.store.rows import CallRecord, DecisionRow, EventRow, OutcomeRow, Row, RowRejected, call_id_of, clean

T = TypeVar("T")

CAPACITY = 10_000  # rows waiting for the database: minutes of a busy service's decisions and outcomes
BATCH_ROWS = 500  # rows per transaction
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
LOG_INTERVAL = 60.0  # seconds between two lines about drops, or about the database being unreachable
RETENTION_DAYS = 90.0
RETENTION_INTERVAL = 3600.0  # seconds between two retention runs (the first runs at start)
PURGE_CHUNK = 5000  # rows deleted per statement: a large backlog is deleted without one long lock
CLOSE_TIMEOUT = 5.0  # seconds close() spends writing what is buffered
CLOSE_GRACE = 3.0  # seconds more close() waits for a hung write to be cut off and the connection closed
QUERY_TIMEOUT = 60.0  # seconds a `_sync` query waits for the store's thread


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
class Forgotten:
    decisions: int
    events: int
    buffered: int  # rows of the call that were still waiting, removed before they were written


@dataclass(frozen=True, slots=True)
class Purged:
    decisions: int
    events: int


class Store:
    """See the module's docstring. Make one with app.store.open_store (or open_store_sync in the CLI)."""

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

    # ----- the service's side: instant, from any thread -----

    def add_decision(self, row: DecisionRow) -> bool:
        """Keep a decision; False when it was dropped (the buffer is full) or there is no store."""
        return self._add(row)

    def add_event(self, row: EventRow) -> bool:
        """Keep what Vapi reported about a call; False when dropped."""
        return self._add(row)

    def add_outcome(self, row: OutcomeRow) -> bool:
        """Set a decision's outcome (the latest `at` wins); False when dropped."""
        return self._add(row)

    def _add(self, row: Row) -> bool:
        if self.backend is None:
            return False
        loop = None
        dropped_to_log = 0
        with self._lock:
            if self._closing or len(self._pending) + self._inflight_rows >= self.capacity:
                self._dropped += 1
                self._dropped_unlogged += 1
                now = time.monotonic()
                if now - self._drop_logged_at >= self.log_interval:
                    self._drop_logged_at = now
                    dropped_to_log, self._dropped_unlogged = self._dropped_unlogged, 0
                accepted = False
            else:
                self._seq += 1
                self._pending.append((self._seq, row))
                self._accepted += 1
                accepted = True
                if not self._wake_sent and self._loop is not None:
                    self._wake_sent = True
                    loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: close() counts the row as lost
                loop.call_soon_threadsafe(self._wake_up)
        if dropped_to_log:
            self._log_drops(dropped_to_log)
        return accepted

    def _log_drops(self, count: int) -> None:
        with self._lock:
            buffered, total = len(self._pending) + self._inflight_rows, self._dropped
        reason = "the store is closing" if self._closing else \
            f"the buffer is full ({buffered:,} of {self.capacity:,} rows wait for {self.description})"
        event(self.log, "store_rows_dropped", logging.WARNING, dropped=count, dropped_total=total, reason=reason,
              fix="bring the database back (rows are written again once it answers), or raise the buffer size")

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(
                enabled=self.enabled, connected=self._up, capacity=self.capacity,
                buffered=len(self._pending) + self._inflight_rows, accepted=self._accepted, written=self._written,
                dropped=self._dropped, rejected=self._rejected, lost=self._lost, failures=self._failures,
                last_error=self._last_error, schema_version=self._schema_version)

    # ----- starting and stopping -----

    def start(self) -> concurrent.futures.Future[str | None]:
        """Start the store's thread. The future resolves after the first connection attempt: None when the
        database is ready (migrated), the reason when it cannot be reached now (the store keeps trying); it
        raises StoreError when it can never work as configured (the message says how to fix it)."""
        if self.backend is None:
            raise StoreError("the store is off (SWITCHBOARD_DATABASE_URL=none)")
        if self._thread is not None:
            raise RuntimeError("the store was started already")
        started: concurrent.futures.Future[str | None] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        with self._lock:
            self._loop = loop
        self._thread = threading.Thread(target=self._thread_main, args=(loop, started), name="switchboard-store",
                                        daemon=True)  # daemon: a process that forgets close() still exits
        self._thread.start()
        return started

    def _thread_main(self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[str | None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._main = loop.create_task(self._run(started))
            loop.run_until_complete(self._main)
        except BaseException as exc:  # a bug, or close() cancelling a write that hung: said, never silent
            if not isinstance(exc, asyncio.CancelledError):
                event(self.log, "store_failed", logging.ERROR, database=self.description, error=repr(exc))
            if not started.done():
                started.set_exception(StoreError(f"the store stopped: {exc!r}"))
        finally:
            with self._lock:
                self._stopped = self._closing = True
                self._loop = None
                self._lost += len(self._pending) + self._inflight_rows
                self._pending.clear()
                self._inflight, self._inflight_rows = [], 0
                self._up = False
                futures = list(self._futures)
            for future in futures:
                future.cancel()
            with contextlib.suppress(BaseException):
                tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                assert self.backend is not None
                loop.run_until_complete(self.backend.close())
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            stats = self.stats()
            if stats.lost:
                event(self.log, "store_rows_lost", logging.ERROR, lost=stats.lost, database=self.description,
                      reason=self._last_error or "closed before they could be written")
            event(self.log, "store_closed", database=self.description, written=stats.written,
                  dropped=stats.dropped, rejected=stats.rejected, lost=stats.lost)
            self._finished.set_result(stats)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> StoreStats:
        """Write what is buffered (for at most `timeout` seconds while the database is down), then stop the thread.
        Rows still waiting then are counted as lost and logged."""
        if not self._begin_close(timeout):
            return self.stats()
        await asyncio.wait({asyncio.wrap_future(self._finished)}, timeout=timeout + CLOSE_GRACE)
        return self.stats()

    def close_sync(self, timeout: float = CLOSE_TIMEOUT) -> StoreStats:
        """close() for code without an event loop (the CLI)."""
        if not self._begin_close(timeout):
            return self.stats()
        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._finished.result(timeout + CLOSE_GRACE)
        return self.stats()

    def _begin_close(self, timeout: float) -> bool:
        """Whether there is a thread to wait for."""
        with self._lock:
            self._closing = True
            loop = self._loop
        if loop is None:
            return False
        self._check_thread()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._close_now, timeout)
        return True

    def _close_now(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._close_deadline = min(self._close_deadline, loop.time() + timeout)
        self._stop.set()
        self._wake.set()
        # A write that hangs (a server that stopped answering) is cut off at the deadline: close() is bounded.
        loop.call_at(self._close_deadline + 0.25, self._cancel_main)

    def _cancel_main(self) -> None:
        if self._main is not None and not self._main.done():
            self._main.cancel()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close_sync()

    # ----- the store's thread -----

    def _wake_up(self) -> None:
        self._wake.set()

    async def _run(self, started: concurrent.futures.Future[str | None]) -> None:
        if self._closing:  # closed before the thread ran
            self._close_now(CLOSE_TIMEOUT)
        try:
            async with self._db:
                await self._ready()
        except StoreUnavailable as exc:
            self._failed(exc)
            started.set_result(str(exc))
        except StoreError as exc:  # cannot work as configured: the caller says so and stops
            started.set_exception(exc)
            return
        else:
            started.set_result(None)
        retention = asyncio.get_running_loop().create_task(self._retention()) if self.retention_days else None
        try:
            await self._write_loop()
        finally:
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention

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

    async def _forget(self, call_id: str) -> Forgotten:
        assert self.backend is not None

        def mine(row: Row) -> bool:
            return call_id_of(row) == call_id or (isinstance(row, OutcomeRow) and row.decision_id in decisions)

        async with self._db:  # the writer is not between taking a batch and writing it while this is held
            await self._ready()
            written, _ = await self.backend.calls([call_id])  # outcome rows name only their decision
            with self._lock:
                decisions = {d.decision_id for d in written}
                decisions |= {r.decision_id for _, r in self._pending if isinstance(r, DecisionRow)
                              and r.call_id == call_id}
                decisions |= {r.decision_id for r in self._inflight if isinstance(r, DecisionRow)
                              and r.call_id == call_id}
                before = len(self._pending) + len(self._inflight)
                self._pending = deque(item for item in self._pending if not mine(item[1]))
                self._inflight = [r for r in self._inflight if not mine(r)]
                self._inflight_rows = len(self._inflight)
                removed = before - len(self._pending) - len(self._inflight)
            d, e = await self.backend.forget(call_id)
        self._pulse()
        event(self.log, "store_forgot", database=self.description, decisions=d, events=e, buffered=removed)
        return Forgotten(d, e, removed)

    async def _flush(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._lock:
            target = self._seq
        while True:
            with self._lock:
                if self._done >= target or not (self._pending or self._inflight_rows):
                    return True
            progress = self._progress
            if deadline <= loop.time():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), deadline - loop.time())

    async def _call(self, call_id: str) -> CallRecord:
        assert self.backend is not None
        async with self._db:
            await self._ready()
            decisions, events = await self.backend.calls([call_id])
        return call_record(call_id, decisions, events)

    async def _page(self, since: datetime, after: Cursor, limit: int) -> tuple[list[CallRecord], Cursor | None]:
        assert self.backend is not None
        async with self._db:
            await self._ready()
            page = await self.backend.decisions_page(after, limit)
        if not page:
            return [], None
        ids = list(dict.fromkeys(d.call_id for d in page))
        async with self._db:
            await self._ready()
            decisions, events = await self.backend.calls(ids)
        return records_from(page, after, since, decisions, events), (page[-1].at, page[-1].decision_id)

    # ----- running work on the store's thread -----

    def _check_thread(self) -> None:
        if self._thread is not None and threading.get_ident() == self._thread.ident:
            raise RuntimeError("a store method was called on the store's own thread")

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self.backend is None:
            coro.close()
            raise StoreError("the store is off (SWITCHBOARD_DATABASE_URL=none): nothing is kept")
        self._check_thread()
        with self._lock:
            loop = self._loop
            if loop is None or self._stopped:
                coro.close()
                raise StoreError("the store is not running (not started, or closed)")
            future = asyncio.run_coroutine_threadsafe(coro, loop)
            self._futures.add(future)
        future.add_done_callback(self._forget_future)
        return future

    def _forget_future(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    async def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await asyncio.wrap_future(self._submit(coro))
        except concurrent.futures.CancelledError:
            raise StoreError("the store closed before the query finished") from None

    def _wait(self, coro: Coroutine[Any, Any, T], timeout: float | None = QUERY_TIMEOUT) -> T:
        try:
            return self._submit(coro).result(timeout)
        except concurrent.futures.CancelledError:
            raise StoreError("the store closed before the query finished") from None
        except concurrent.futures.TimeoutError:
            raise StoreUnavailable(f"{self.description} did not answer within {timeout:g} s") from None

    # ----- queries and maintenance: async for the service, _sync for the CLI -----

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row accepted before this call is written (or rejected); False after `timeout`."""
        if self.backend is None:
            return True
        return await self._await(self._flush(timeout))

    def flush_sync(self, timeout: float = 10.0) -> bool:
        if self.backend is None:
            return True
        return self._wait(self._flush(timeout), None)

    async def forget(self, call_id: str) -> Forgotten:
        """Delete everything kept of a call (a caller's request to be forgotten), buffered rows included."""
        return await self._await(self._forget(call_id))

    def forget_sync(self, call_id: str) -> Forgotten:
        return self._wait(self._forget(call_id))

    async def purge(self, before: datetime) -> Purged:
        """Delete decisions and events older than `before` (retention does this on its own)."""
        return await self._await(self._purge(before))

    def purge_sync(self, before: datetime) -> Purged:
        return self._wait(self._purge(before), None)

    async def call(self, call_id: str) -> CallRecord:
        """Every decision and event kept of a call (whichever replica wrote them): for joining outcomes."""
        return await self._await(self._call(call_id))

    def call_sync(self, call_id: str) -> CallRecord:
        return self._wait(self._call(call_id))

    async def records(self, since: datetime | None = None, batch: int = 500) -> AsyncIterator[list[CallRecord]]:
        """Calls with a decision at or after `since`, oldest first, `batch` decisions' worth at a time: each call
        once, with its decisions from `since` on and all its events."""
        after, floor = start_cursor(since), start_cursor(since)[0]
        while True:
            page, cursor = await self._await(self._page(floor, after, batch))
            if cursor is None:
                return
            if page:
                yield page
            after = cursor

    def records_sync(self, since: datetime | None = None, batch: int = 500) -> Iterator[list[CallRecord]]:
        after, floor = start_cursor(since), start_cursor(since)[0]
        while True:
            page, cursor = self._wait(self._page(floor, after, batch))
            if cursor is None:
                return
            if page:
                yield page
            after = cursor


def _split(rows: list[Row]) -> tuple[list[DecisionRow], list[EventRow], list[OutcomeRow]]:
    decisions = [r for r in rows if isinstance(r, DecisionRow)]
    events = [r for r in rows if isinstance(r, EventRow)]
    outcomes = [r for r in rows if isinstance(r, OutcomeRow)]
    return decisions, events, outcomes

