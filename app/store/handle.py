"""The Store that callers hold: rows handed over without waiting, the store's thread started and stopped, and
queries run on that thread.

`add_decision`, `add_event` and `add_outcome` only append to the writer's buffer (writer.py): they never wait on
the database. `start` runs the store's thread (its own event loop, the driver on it: connect, migrate, then the
writer and retention); `close` writes what is buffered within a deadline and stops it, counting what is left as
lost.

Queries (`call`, `records`, `forget`) run on the same thread; each has an async form for the service and a
`_sync` form for the CLI (which blocks the calling thread: never call a `_sync` method on an event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from app.logs import event
from app.store.backend import StoreError, StoreUnavailable
from app.store.queries import Cursor, call_record, records_from, start_cursor
from app.store.rows import CallRecord, DecisionRow, EventRow, OutcomeRow, Row, call_id_of
from app.store.writer import Purged, StoreStats, Writer

T = TypeVar("T")

CLOSE_TIMEOUT = 5.0  # seconds close() spends writing what is buffered
CLOSE_GRACE = 3.0  # seconds more close() waits for a hung write to be cut off and the connection closed
QUERY_TIMEOUT = 60.0  # seconds a `_sync` query waits for the store's thread


@dataclass(frozen=True, slots=True)
class Forgotten:
    decisions: int
    events: int
    buffered: int  # rows of the call that were still waiting, removed before they were written


class Store(Writer):
    """See the module's docstring. Make one with app.store.open_store (or open_store_sync in the CLI)."""

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

    async def _calls(self, call_ids: list[str]) -> list[CallRecord]:
        assert self.backend is not None
        async with self._db:
            await self._ready()
            decisions, events = await self.backend.calls(call_ids)
        by_call: dict[str, tuple[list[DecisionRow], list[EventRow]]] = {c: ([], []) for c in call_ids}
        for d in decisions:
            by_call[d.call_id][0].append(d)
        for e in events:
            by_call[e.call_id][1].append(e)
        return [call_record(c, *by_call[c]) for c in call_ids]

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

    async def calls(self, call_ids: list[str]) -> list[CallRecord]:
        """`call` for several calls in one query (the service's outcome joins, batched under a flood)."""
        return await self._await(self._calls(call_ids))

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
