"""The decision store: every decision, and what Vapi later said happened, kept in a database.

An embedded SQLite file by default (DATA_DIR/switchboard.db), PostgreSQL when SWITCHBOARD_DATABASE_URL names one
(several replicas then share it), nothing with `none` (see url.py). The service hands rows over with
`add_decision`/`add_event`/`add_outcome`, which never wait (handle.py); a thread of the store's own writes them
(writer.py).

    store = await open_store(url, data_dir)            # in the service's lifespan
    store.add_decision(DecisionRow(...))               # after the caller has their answer
    record = await store.call(call_id)                 # decisions and events of a call, for the outcome join
    await store.close()

    with open_store_sync(url, data_dir, require_connection=True) as store:   # in a CLI command
        for calls in store.records_sync(since): ...
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.logs import LOGGER, event
from app.store.backend import Backend, RowsRefused, StoreError, StoreUnavailable
from app.store.handle import CLOSE_TIMEOUT, Forgotten, Store
from app.store.migrations import Migration
from app.store.rows import (
    MESSAGE_TYPES,
    OUTCOMES,
    CallRecord,
    DecisionRow,
    EventRow,
    OutcomeRow,
    RowRejected,
    event_key,
)
from app.store.url import ENV, StoreConfigError, Target, parse_database_url
from app.store.writer import BATCH_ROWS, CAPACITY, RETENTION_DAYS, RETENTION_INTERVAL, Purged, StoreStats

START_TIMEOUT = 15.0  # seconds open_store waits for the first connection and migrations before going on without

__all__ = [
    "BATCH_ROWS", "CAPACITY", "CLOSE_TIMEOUT", "ENV", "MESSAGE_TYPES", "OUTCOMES", "RETENTION_DAYS",
    "RETENTION_INTERVAL", "Backend", "CallRecord", "DecisionRow", "EventRow", "Forgotten", "OutcomeRow", "Purged",
    "RowRejected", "RowsRefused", "Store", "StoreConfigError", "StoreError", "StoreStats", "StoreUnavailable",
    "Target", "backend_for", "event_key", "open_store", "open_store_sync", "parse_database_url",
]


def backend_for(target: Target, migrations: tuple[Migration, ...] | None = None) -> Backend | None:
    """The driver for a target (None for `none`). The drivers are imported here, so a process with the store
    off never loads them."""
    if target.kind == "sqlite" and target.path is not None:
        from app.store.sqlite import SQLiteBackend

        return SQLiteBackend(target.path) if migrations is None else SQLiteBackend(target.path, migrations)
    if target.kind == "postgresql" and target.dsn is not None:
        from app.store.postgres import PostgresBackend

        return PostgresBackend(target.dsn) if migrations is None else PostgresBackend(target.dsn, migrations)
    return None


def _make(url: str | None, data_dir: Path | None, capacity: int, retention_days: float | None,
          logger: logging.Logger | None) -> Store:
    target = parse_database_url(url, data_dir)
    store = Store(backend_for(target), capacity=capacity, retention_days=retention_days, logger=logger)
    if target.kind == "none":
        event(logger or logging.getLogger(LOGGER), "store_off", reason=f"{ENV}=none: no decision is kept")
    return store


def _unavailable(store: Store, reason: str, require_connection: bool, log: logging.Logger) -> None:
    if require_connection:
        raise StoreUnavailable(f"cannot reach the store at {store.description} ({reason}); start the database, or "
                               f"check {ENV}")
    event(log, "store_unavailable_at_start", logging.WARNING, database=store.description, error=reason,
          note="serving anyway: rows wait in the buffer and are written once the database answers")


async def open_store(url: str | None, data_dir: Path | None = None, *, capacity: int = CAPACITY,
                     retention_days: float | None = RETENTION_DAYS, start_timeout: float = START_TIMEOUT,
                     require_connection: bool = False, logger: logging.Logger | None = None) -> Store:
    """A running store for SWITCHBOARD_DATABASE_URL's value (`url`; None or blank: DATA_DIR/switchboard.db).

    Waits for the first connection and the migrations (at most `start_timeout` s; that wait is on the store's
    thread, this only awaits it). Raises StoreConfigError (a URL that cannot work) or StoreError (a database that
    never will as configured: wrong password, no such database, a schema from a newer release), each saying how
    to fix it. A database that cannot be reached yet is logged and, unless `require_connection`, not fatal: the
    store keeps trying and rows wait in its buffer. With `none`, a store whose add_* do nothing."""
    log = logger or logging.getLogger(LOGGER)
    store = _make(url, data_dir, capacity, retention_days, logger)
    if not store.enabled:
        return store
    started = asyncio.wrap_future(store.start())
    done, _ = await asyncio.wait({started}, timeout=start_timeout)  # never cancels the start itself
    try:
        reason = started.result() if done else f"no answer within {start_timeout:g} s"
    except StoreError:
        await store.close()
        raise
    if reason is not None:
        try:
            _unavailable(store, reason, require_connection, log)
        except StoreUnavailable:
            await store.close(timeout=0)
            raise
    return store


def open_store_sync(url: str | None, data_dir: Path | None = None, *, capacity: int = CAPACITY,
                    retention_days: float | None = RETENTION_DAYS, start_timeout: float = START_TIMEOUT,
                    require_connection: bool = True, logger: logging.Logger | None = None) -> Store:
    """open_store for code without an event loop (the CLI); by default a database that cannot be reached is an
    error (StoreUnavailable), since a command has nothing to do without it."""
    import concurrent.futures

    log = logger or logging.getLogger(LOGGER)
    store = _make(url, data_dir, capacity, retention_days, logger)
    if not store.enabled:
        return store
    try:
        reason = store.start().result(start_timeout)
    except concurrent.futures.TimeoutError:
        reason = f"no answer within {start_timeout:g} s"
    except StoreError:
        store.close_sync()
        raise
    if reason is not None:
        try:
            _unavailable(store, reason, require_connection, log)
        except StoreUnavailable:
            store.close_sync(timeout=0)
            raise
    return store
