"""The shared store: a PostgreSQL database that several replicas write to, through asyncpg.

One connection per store (the writer batches, so one is plenty); when it breaks, the store reconnects with a
backoff and writes the rows it kept. Migrations run under a transaction-scoped advisory lock, so replicas that
start together apply them once, one after the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from app.store.backend import RowsRefused, StoreError, StoreUnavailable
from app.store.migrations import POSTGRESQL, Migration, SchemaTooNew, pending
from app.store.rows import DECISION_COLUMNS, EVENT_COLUMNS, DecisionRow, EventRow, OutcomeRow, keys_from, keys_text
from app.store.url import ENV, hide_password

CONNECT_TIMEOUT = 5.0  # seconds to open a connection: a dead host is found out quickly, and retried
COMMAND_TIMEOUT = 30.0  # seconds one statement may take: a hung server frees the writer to reconnect
MIGRATION_LOCK = 0x5377_6974_6368_6264  # advisory lock key ("Switchbd"): held while migrations are applied
KEYS = {"decisions": "decision_id", "events": "event_key"}
# SQLSTATE classes that say "not now" rather than "not these rows": connection (08), transaction rollback
# (40: serialization, deadlock), insufficient resources (53: disk full, too many connections), operator
# intervention (57: shutdown, cannot connect now), system error (58), internal error (XX); and 25006, a
# read-only transaction (a replica promoted or demoted under us).
_NOT_NOW = ("08", "40", "53", "57", "58", "XX")


def _placeholders(n: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + n))


INSERT_DECISION = (f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES "
                   f"({_placeholders(len(DECISION_COLUMNS))}) ON CONFLICT (decision_id) DO NOTHING")
INSERT_EVENT = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES "
                f"({_placeholders(len(EVENT_COLUMNS))}) ON CONFLICT (event_key) DO NOTHING")
# The latest outcome wins, whatever order the updates arrive in; the same update twice changes nothing.
UPDATE_OUTCOME = ("UPDATE decisions SET outcome = $1, outcome_at = $2 WHERE decision_id = $3 "
                  "AND (outcome_at IS NULL OR outcome_at <= $2)")
SELECT_DECISIONS = f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions"
SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"


def not_now(exc: BaseException) -> bool:
    """Whether an error is the server's or the connection's state (retry later) rather than the rows' fault."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):  # InterfaceError: the connection is gone
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in _NOT_NOW or state == "25006"
    return False


def _count(status: str) -> int:
    """Rows changed, from a command status such as `DELETE 3`."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresBackend:
    def __init__(self, dsn: str, migrations: tuple[Migration, ...] = POSTGRESQL,
                 connect_timeout: float = CONNECT_TIMEOUT, command_timeout: float = COMMAND_TIMEOUT) -> None:
        self.dsn = dsn
        self.migrations = migrations
        self.description = hide_password(dsn)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._conn: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        try:
            self._conn = await asyncpg.connect(dsn=self.dsn, timeout=self.connect_timeout,
                                               command_timeout=self.command_timeout)
        except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError) as exc:
            raise StoreError(f"{self.description} refused the connection: {exc}; check the user, password "
                             f"(in the URL, PGPASSWORD or ~/.pgpass) and database name in {ENV}, and that the "
                             "database exists (createdb)") from None
        except asyncpg.ClientConfigurationError as exc:
            raise StoreError(f"{ENV}={self.description}: {exc}") from None
        except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
            if isinstance(exc, asyncpg.PostgresError) and not not_now(exc):
                raise StoreError(f"{self.description} refused the connection: {exc}") from None
            raise StoreUnavailable(f"cannot reach {self.description}: {_describe(exc)}") from None
        except ValueError as exc:  # the DSN itself (asyncpg parses it on connect)
            raise StoreError(f"{ENV}={self.description}: {exc}; write postgresql://user@host:port/db") from None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 1.0)
        except Exception:  # a server that went away: drop the socket instead
            conn.terminate()

    def _live(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            raise StoreUnavailable(f"not connected to {self.description}")
        return self._conn

    async def _failed(self, exc: BaseException) -> StoreError:
        """The store's error for a driver's; a broken connection is dropped so the next try opens a new one."""
        if not_now(exc):
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.terminate()
            return StoreUnavailable(f"{self.description}: {_describe(exc)}")
        return RowsRefused(f"{self.description} refused the rows: {_describe(exc)}")

    async def migrate(self) -> tuple[int, int]:
        conn = self._live()
        try:
            async with conn.transaction():
                # Replicas starting together queue here; each then sees what the one before it applied.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                                   "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                before = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
                todo = pending(self.migrations, before)
                for migration in todo:
                    for statement in migration.statements:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                                       migration.version, migration.name)
        except SchemaTooNew as exc:
            raise StoreError(f"{self.description}: {exc}") from None
        except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
            error = await self._failed(exc)
            if isinstance(error, StoreUnavailable):
                raise error from None
            raise StoreError(f"cannot set up the tables in {self.description}: {_describe(exc)}; the user in "
                             f"{ENV} needs the right to create tables in that database") from None
        return before, todo[-1].version if todo else before

    async def _run(self, work: list[tuple[str, list[tuple[Any, ...]]]]) -> list[int]:
        conn = self._live()
        counts = []
        try:
            async with conn.transaction():
                for sql, args in work:
                    if len(args) == 1:
                        counts.append(_count(await conn.execute(sql, *args[0])))
                    else:
                        await conn.executemany(sql, args)
                        counts.append(len(args))
        except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError, ValueError,
                TypeError, OverflowError) as exc:  # the last three: a value the driver cannot encode
            raise await self._failed(exc) from None
        return counts

    async def write(self, decisions: Sequence[DecisionRow], events: Sequence[EventRow],
                    outcomes: Sequence[OutcomeRow]) -> None:
        work: list[tuple[str, list[tuple[Any, ...]]]] = []
        if decisions:
            work.append((INSERT_DECISION, [_values(d, DECISION_COLUMNS) for d in decisions]))
        if events:
            work.append((INSERT_EVENT, [_values(e, EVENT_COLUMNS) for e in events]))
        if outcomes:
            work.append((UPDATE_OUTCOME, [(o.outcome, o.at, o.decision_id) for o in outcomes]))
        if work:
            await self._run(work)

    async def purge(self, table: str, before: datetime, limit: int) -> int:
        key = KEYS[table]
        sql = f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE at < $1 LIMIT $2)"
        return (await self._run([(sql, [(before, limit)])]))[0]

    async def forget(self, call_id: str) -> tuple[int, int]:
        counts = await self._run([("DELETE FROM decisions WHERE call_id = $1", [(call_id,)]),
                                  ("DELETE FROM events WHERE call_id = $1", [(call_id,)])])
        return counts[0], counts[1]

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self._live().fetch(sql, *args)
        except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
            error = await self._failed(exc)
            raise (error if isinstance(error, StoreUnavailable) else StoreError(str(error))) from None

    async def decisions_page(self, after: tuple[datetime, str], limit: int) -> list[DecisionRow]:
        rows = await self._fetch(f"{SELECT_DECISIONS} WHERE (at, decision_id) > ($1, $2) "
                                 "ORDER BY at, decision_id LIMIT $3", after[0], after[1], limit)
        return [DecisionRow(**_named(r)) for r in rows]

    async def calls(self, call_ids: Sequence[str]) -> tuple[list[DecisionRow], list[EventRow]]:
        if not call_ids:
            return [], []
        ids = list(call_ids)
        decisions = await self._fetch(f"{SELECT_DECISIONS} WHERE call_id = ANY($1::text[]) "
                                      "ORDER BY call_id, at, decision_id", ids)
        events = await self._fetch(f"{SELECT_EVENTS} WHERE call_id = ANY($1::text[]) "
                                   "ORDER BY call_id, at, event_key", ids)
        return [DecisionRow(**_named(r)) for r in decisions], [EventRow(**_named(r)) for r in events]

    async def schema_version(self) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        return int(rows[0]["v"])


def _values(row: DecisionRow | EventRow, columns: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(keys_text(getattr(row, c)) if c == "destination_keys" else getattr(row, c) for c in columns)


def _named(record: asyncpg.Record) -> dict[str, Any]:
    named = dict(record.items())
    named["destination_keys"] = keys_from(named["destination_keys"])
    return named


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
