"""The embedded store: one SQLite file, through aiosqlite (which runs sqlite3 on a thread of its own).

The file is in WAL mode, so `switchboard outcomes` reading it never waits for the service writing it, and several
service workers on one machine can share it (each write takes the file's write lock; a busy lock is waited for up
to BUSY_TIMEOUT, then the rows stay buffered and are retried).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from app.store.backend import RowsRefused, StoreError, StoreUnavailable
from app.store.migrations import SQLITE, Migration, SchemaTooNew, pending
from app.store.rows import (
    DECISION_COLUMNS,
    EVENT_COLUMNS,
    DecisionRow,
    EventRow,
    OutcomeRow,
    keys_from,
    keys_text,
    utc,
)
from app.store.url import ENV

BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's write lock before the rows wait in the buffer
TABLES = ("decisions", "events")
KEYS = {"decisions": "decision_id", "events": "event_key"}

_DECISION_TIMES = frozenset({"at", "outcome_at"})


def to_text(at: datetime) -> str:
    """One fixed format, always UTC with microseconds, so that comparing texts compares times."""
    return utc(at).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


INSERT_DECISION = (f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES "
                   f"({_placeholders(len(DECISION_COLUMNS))}) ON CONFLICT (decision_id) DO NOTHING")
INSERT_EVENT = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES "
                f"({_placeholders(len(EVENT_COLUMNS))}) ON CONFLICT (event_key) DO NOTHING")
# The latest outcome wins, whatever order the updates arrive in; the same update twice changes nothing.
UPDATE_OUTCOME = ("UPDATE decisions SET outcome = ?, outcome_at = ? WHERE decision_id = ? "
                  "AND (outcome_at IS NULL OR outcome_at <= ?)")
SELECT_DECISIONS = f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions"
SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"


def _to_sql(column: str, value: Any) -> Any:
    if column == "destination_keys":
        return keys_text(value)
    if isinstance(value, datetime):
        return to_text(value)
    if isinstance(value, bool):
        return int(value)
    return value


def decision_values(row: DecisionRow) -> tuple[Any, ...]:
    return tuple(_to_sql(c, getattr(row, c)) for c in DECISION_COLUMNS)


def event_values(row: EventRow) -> tuple[Any, ...]:
    return tuple(_to_sql(c, getattr(row, c)) for c in EVENT_COLUMNS)


def decision_from(values: Sequence[Any]) -> DecisionRow:
    named = dict(zip(DECISION_COLUMNS, values, strict=True))
    for c in _DECISION_TIMES:
        if named[c] is not None:
            named[c] = from_text(named[c])
    named["destination_keys"] = keys_from(named["destination_keys"])
    return DecisionRow(**named)


def event_from(values: Sequence[Any]) -> EventRow:
    named = dict(zip(EVENT_COLUMNS, values, strict=True))
    named["at"] = from_text(named["at"])
    named["destination_keys"] = keys_from(named["destination_keys"])
    named["timed"] = bool(named["timed"])
    return EventRow(**named)


class SQLiteBackend:
    def __init__(self, path: Path, migrations: tuple[Migration, ...] = SQLITE) -> None:
        self.path = path
        self.migrations = migrations
        self.description = f"sqlite:///{path}"
        self._conn: aiosqlite.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def _fix(self) -> str:
        return (f"make {self.path.parent or '.'} a writable folder, or set {ENV}=sqlite:///ANOTHER/PATH "
                "(or SWITCHBOARD_DATABASE_URL=none for no store)")

    async def connect(self) -> None:
        if self._conn is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # on the store's thread: a slow disk waits there
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the SQLite file {self.path}: {exc.strerror or exc}; "
                             f"{self._fix()}") from None
        if self.path.is_dir():
            raise StoreError(f"the SQLite file {self.path} is a folder; {self._fix()}")
        conn: aiosqlite.Connection | None = None
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT)
            await conn.execute("PRAGMA journal_mode=WAL")  # readers and the writer do not wait for each other
            await conn.execute("PRAGMA synchronous=NORMAL")  # WAL keeps the file consistent; saves an fsync a write
        except sqlite3.Error as exc:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            if _busy(exc):
                raise StoreUnavailable(f"the SQLite file {self.path} is locked: {exc}") from None
            raise StoreError(f"cannot open the SQLite file {self.path}: {exc}; {self._fix()}") from None
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"not connected to {self.description}")
        return self._conn

    async def _transaction(self, work: list[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]]) -> list[int]:
        """Run (sql, parameters, many) in one write transaction; the rows each changed. Driver errors become
        StoreUnavailable (locked, full, I/O: the connection is reopened next time) or RowsRefused."""
        conn = self._live()
        counts = []
        try:
            await conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way
            try:
                for sql, parameters, many in work:
                    cursor = await (conn.executemany(sql, parameters) if many else conn.execute(sql, parameters))
                    counts.append(cursor.rowcount)
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            await self.close()
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                OverflowError, ValueError) as exc:
            raise RowsRefused(f"{self.description} refused the rows: {exc}") from None
        except sqlite3.Error as exc:
            await self.close()
            raise StoreUnavailable(f"{self.description}: {exc}") from None
        return counts

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Sequence[Any]]:
        try:
            return list(await self._live().execute_fetchall(sql, parameters))
        except sqlite3.Error as exc:
            await self.close()
            raise StoreUnavailable(f"{self.description}: {exc}") from None

    async def migrate(self) -> tuple[int, int]:
        conn = self._live()
        try:
            await conn.execute("BEGIN IMMEDIATE")  # a second process starting at once waits here, then sees ours
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                                   "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
                rows = list(await conn.execute_fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
                before = int(rows[0][0])
                todo = pending(self.migrations, before)
                for migration in todo:
                    for statement in migration.statements:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                                       (migration.version, migration.name, to_text(datetime.now(UTC))))
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                raise
        except SchemaTooNew as exc:
            raise StoreError(f"{self.description}: {exc}") from None
        except sqlite3.Error as exc:
            await self.close()
            if _busy(exc):
                raise StoreUnavailable(f"{self.description} is locked: {exc}") from None
            raise StoreError(f"cannot set up the tables in {self.description}: {exc}; {self._fix()}") from None
        return before, todo[-1].version if todo else before

    async def write(self, decisions: Sequence[DecisionRow], events: Sequence[EventRow],
                    outcomes: Sequence[OutcomeRow]) -> None:
        work: list[tuple[str, Sequence[Any] | list[Sequence[Any]], bool]] = []
        if decisions:
            work.append((INSERT_DECISION, [decision_values(d) for d in decisions], True))
        if events:
            work.append((INSERT_EVENT, [event_values(e) for e in events], True))
        if outcomes:
            work.append((UPDATE_OUTCOME, [(o.outcome, to_text(o.at), o.decision_id, to_text(o.at))
                                          for o in outcomes], True))
        if work:
            await self._transaction(work)

    async def purge(self, table: str, before: datetime, limit: int) -> int:
        key = KEYS[table]
        sql = f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE at < ? LIMIT ?)"
        return (await self._transaction([(sql, (to_text(before), limit), False)]))[0]

    async def forget(self, call_id: str) -> tuple[int, int]:
        counts = await self._transaction([("DELETE FROM decisions WHERE call_id = ?", (call_id,), False),
                                          ("DELETE FROM events WHERE call_id = ?", (call_id,), False)])
        return counts[0], counts[1]

    async def decisions_page(self, after: tuple[datetime, str], limit: int) -> list[DecisionRow]:
        rows = await self._read(f"{SELECT_DECISIONS} WHERE (at, decision_id) > (?, ?) ORDER BY at, decision_id "
                                "LIMIT ?", (to_text(after[0]), after[1], limit))
        return [decision_from(r) for r in rows]

    async def calls(self, call_ids: Sequence[str]) -> tuple[list[DecisionRow], list[EventRow]]:
        if not call_ids:
            return [], []
        marks = _placeholders(len(call_ids))
        decisions = await self._read(f"{SELECT_DECISIONS} WHERE call_id IN ({marks}) "
                                     "ORDER BY call_id, at, decision_id", list(call_ids))
        events = await self._read(f"{SELECT_EVENTS} WHERE call_id IN ({marks}) ORDER BY call_id, at, event_key",
                                  list(call_ids))
        return [decision_from(r) for r in decisions], [event_from(r) for r in events]

    async def schema_version(self) -> int:
        rows = await self._read("SELECT COALESCE(MAX(version), 0) FROM schema_version", ())
        return int(rows[0][0])


def _busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
