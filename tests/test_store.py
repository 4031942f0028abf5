"""The decision store (app/store): SQLite by default, PostgreSQL for replicas, a buffer that never makes a caller
wait, and a database outage that loses nothing the buffer can hold.

The PostgreSQL tests run a real server (tests/postgres.py): one per session, a fresh database per test. They are
skipped where PostgreSQL is not installed, and fail instead when CI is set.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.errors import UserError
from app.logs import LOGGER
from app.store import (
    ENV,
    CallRecord,
    DecisionRow,
    EventRow,
    OutcomeRow,
    Store,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    backend_for,
    event_key,
    open_store,
    open_store_sync,
    parse_database_url,
)
from app.store.backend import Backend
from app.store.migrations import POSTGRESQL, SQLITE, Migration
from app.store.postgres import PostgresBackend
from app.store.rows import DECISION_COLUMNS, EVENT_COLUMNS
from app.store.sqlite import SQLiteBackend
from tests import postgres
from tests.conftest import poll as shared_poll

# Recent (retention would delete older rows at start), with microseconds: times must come back exactly.
NOW = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=3)
WAIT = 60.0  # seconds any poll or flush may take on a busy machine before the test gives up


def decision(n: int, call: str = "call-1", at: datetime = NOW, **extra: Any) -> DecisionRow:
    fields: dict[str, Any] = {"message_type": "transfer", "chosen": "billing", "answered": "billing",
                              "destination_keys": ("tel:14155550142;ext=204",), "confidence": 0.87, "prompt_hash": "p1",
                              "latency_ms": 412.5, "catalogue_hash": "c1"}
    fields.update(extra)
    return DecisionRow(decision_id=f"dec-{n}", call_id=call, request_id=f"req-{n}", at=at + timedelta(seconds=n),
                       **fields)


def transfer_event(call: str, status: str, at: datetime = NOW, destination: str = "tel:14155550142;ext=204",
                   index: int = 0) -> EventRow:
    """One entry of an end-of-call-report's artifact.transfers[], as app/vapi/outcomes reads it."""
    source = f"report-{call}-{status}"
    return EventRow(event_key(source, index), call, "transfer", at + timedelta(minutes=1), (destination,), status,
                    source, index)


poll = functools.partial(shared_poll, timeout=WAIT)  # tests.conftest.poll, with this file's patience


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [getattr(r, "fields", {}) for r in self.records if r.getMessage() == name]


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger = logging.getLogger(LOGGER)
    handler = Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


class Gated:
    """A backend whose writes (or connects) wait for a gate, and which notes the threads it runs on."""

    def __init__(self, inner: Backend, *, gate_writes: bool = False, gate_connect: bool = False) -> None:
        self.inner = inner
        self.description = inner.description
        self.gate = threading.Event()
        self.gate_writes, self.gate_connect = gate_writes, gate_connect
        self.threads: set[int] = set()
        self.writes = 0
        self.entered_writes = 0
        self.fail_after_next_write = False
        self.unreachable = False

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def _wait(self) -> None:
        self.threads.add(threading.get_ident())
        await asyncio.to_thread(self.gate.wait, WAIT)

    async def connect(self) -> None:
        self.threads.add(threading.get_ident())
        if self.unreachable:
            raise StoreUnavailable("connection refused (test)")
        if self.gate_connect:
            await self._wait()
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def migrate(self) -> tuple[int, int]:
        return await self.inner.migrate()

    async def write(self, decisions: Sequence[DecisionRow], events: Sequence[EventRow],
                    outcomes: Sequence[OutcomeRow]) -> None:
        self.threads.add(threading.get_ident())
        self.entered_writes += 1
        if self.gate_writes:
            await self._wait()
        await self.inner.write(decisions, events, outcomes)
        self.writes += 1
        if self.fail_after_next_write:  # committed, but the answer "got lost": the store must write it again
            self.fail_after_next_write = False
            await self.inner.close()
            raise StoreUnavailable("connection reset after COMMIT (test)")

    async def purge(self, table: str, before: datetime, limit: int) -> int:
        return await self.inner.purge(table, before, limit)

    async def forget(self, call_id: str) -> tuple[int, int]:
        return await self.inner.forget(call_id)

    async def decisions_page(self, after: tuple[datetime, str], limit: int) -> list[DecisionRow]:
        return await self.inner.decisions_page(after, limit)

    async def calls(self, call_ids: Sequence[str]) -> tuple[list[DecisionRow], list[EventRow]]:
        return await self.inner.calls(call_ids)


def started(store: Store) -> Store:
    assert store.start().result(WAIT) is None
    return store


def sqlite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


# ----- SWITCHBOARD_DATABASE_URL -----


@pytest.mark.parametrize(("value", "kind", "where"), [
    (None, "sqlite", "DATA/switchboard.db"),
    ("  ", "sqlite", "DATA/switchboard.db"),
    ("none", "none", None),
    ("NONE", "none", None),
    ("sqlite:///kept/x.db", "sqlite", "kept/x.db"),
    ("sqlite:////var/lib/switchboard/x.db", "sqlite", "/var/lib/switchboard/x.db"),
    ("sqlite:///my%20calls.db", "sqlite", "my calls.db"),
    ("postgresql://sb@db.internal:5432/switchboard", "postgresql", "postgresql://sb@db.internal:5432/switchboard"),
    ("postgres://sb:s3cret@db/switchboard?sslmode=require", "postgresql",
     "postgres://sb:***@db/switchboard?sslmode=require"),
])
def test_database_url_forms(value: str | None, kind: str, where: str | None) -> None:
    target = parse_database_url(value, Path("DATA"))
    assert target.kind == kind
    if kind == "sqlite":
        assert str(target.path) == where
    if kind == "postgresql":
        assert target.describe() == where
        assert target.dsn == value  # given to the driver as written, password and options included


@pytest.mark.parametrize(("value", "says"), [
    ("mysql://u@h/db", "not supported"),
    ("/data/switchboard.db", "sqlite:////data/switchboard.db"),
    ("sqlite://", "no host"),
    ("sqlite://host/x.db", "no host"),
    ("sqlite:///", "no file"),
    ("sqlite:///:memory:", "in-memory"),
    ("sqlite:///x.db?mode=ro", "options"),
    ("postgresql://u:hunter2@h:99999/db", "port"),
    ("postgresql://u:hunter2@h:abc/db", "port"),
    ("postgresql://u@h/db/extra", "database name"),
])
def test_database_url_errors_name_the_variable_and_the_fix(value: str, says: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        parse_database_url(value)
    assert isinstance(caught.value, UserError)  # the CLI prints it as one `Error:` line, exit 2
    message = str(caught.value)
    assert message.startswith(f"{ENV}=")
    assert says in message
    assert "hunter2" not in message  # a password never reaches a log line


# ----- SQLite -----


def test_sqlite_round_trip_by_default_in_the_data_folder(tmp_path: Path) -> None:
    async def main() -> tuple[CallRecord, list[list[CallRecord]], Any]:
        store = await open_store(None, tmp_path / "data")
        for n in range(7):
            assert store.add_decision(decision(n, call=f"call-{n % 3}"))
        store.add_decision(decision(9, call="call-1", request_json='{"message": {"type": "x"}}',
                                    message_type="handoff", confidence=None, answered="after_hours"))
        store.add_event(transfer_event("call-1", "no-answer"))
        store.add_event(EventRow(event_key("status-1", 0), "call-1", "ended", NOW + timedelta(minutes=2),
                                 status="customer-ended-call", source="status-1", timed=False))
        store.add_outcome(OutcomeRow("dec-1", "unreachable", NOW + timedelta(minutes=3)))
        assert await store.flush(WAIT)
        record = await store.call("call-1")
        pages = [page async for page in store.records(batch=2)]
        stats = await store.close()
        return record, pages, stats

    record, pages, stats = asyncio.run(main())
    assert (tmp_path / "data" / "switchboard.db").is_file()
    assert [d.decision_id for d in record.decisions] == ["dec-1", "dec-4", "dec-9"]
    first = record.decisions[0]
    assert first == decision(1, call="call-1", outcome="unreachable", outcome_at=NOW + timedelta(minutes=3))
    assert record.decisions[2].request_json == '{"message": {"type": "x"}}'
    assert record.decisions[2].message_type == "handoff" and record.decisions[2].confidence is None
    assert record.events == (transfer_event("call-1", "no-answer"),
                             EventRow(event_key("status-1", 0), "call-1", "ended", NOW + timedelta(minutes=2),
                                      status="customer-ended-call", source="status-1", timed=False))
    # batches of 2 decisions: each call exactly once, with all its decisions, in the order of its first one
    calls = [r.call_id for page in pages for r in page]
    assert calls == ["call-0", "call-1", "call-2"]
    assert len(pages) >= 2
    assert sum(len(r.decisions) for page in pages for r in page) == 8
    assert stats.written == 11 and stats.dropped == stats.rejected == stats.lost == 0


def test_records_since_a_date_and_across_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    with open_store_sync(url) as store:
        for n in range(10):
            store.add_decision(decision(n, call=f"call-{n // 2}", at=NOW + timedelta(days=n)))
        assert store.flush_sync(WAIT)
    with open_store_sync(url) as again:  # another process, later: what was written is there
        since = NOW + timedelta(days=5)
        records = [r for page in again.records_sync(since, batch=3) for r in page]
    # call-2 has decisions on days 4 and 5: it is included, with only the one at or after `since`
    assert [r.call_id for r in records] == ["call-2", "call-3", "call-4"]
    assert [d.decision_id for d in records[0].decisions] == ["dec-5"]
    assert all(d.at >= since for r in records for d in r.decisions)


def test_database_work_never_runs_on_the_callers_thread(tmp_path: Path) -> None:
    backend = Gated(SQLiteBackend(tmp_path / "s.db"), gate_writes=True)
    store = Store(backend, capacity=1000)
    assert store.start().result(WAIT) is None

    async def service() -> tuple[int, float]:
        # On an event loop, as the service calls it, while every write is stuck: add_* must not wait for it.
        began = time.perf_counter()
        accepted = sum(store.add_decision(decision(n)) for n in range(500))
        return accepted, time.perf_counter() - began

    accepted, _ = asyncio.run(service())
    assert accepted == 500
    poll(lambda: backend.entered_writes == 1 and backend.writes == 0 and store.stats().buffered == 500,
         "the writer is stuck in its first write, on its own thread")
    backend.gate.set()
    assert store.flush_sync(WAIT)
    assert threading.get_ident() not in backend.threads
    assert store.close_sync().written == 500


def test_full_buffer_drops_are_counted_and_logged_once(tmp_path: Path, lines: Lines) -> None:
    backend = Gated(SQLiteBackend(tmp_path / "s.db"), gate_writes=True)
    store = started(Store(backend, capacity=10, batch_rows=4, log_interval=60))
    results = [store.add_decision(decision(0))]
    poll(lambda: backend.entered_writes == 1, "the first row is being written")
    results += [store.add_decision(decision(n)) for n in range(1, 25)]
    assert results == [True] * 10 + [False] * 15  # the row being written counts against the capacity too
    stats = store.stats()
    assert (stats.accepted, stats.dropped, stats.buffered) == (10, 15, 10)
    drops = lines.named("store_rows_dropped")
    assert len(drops) == 1 and drops[0]["dropped"] == 1  # the first drop is said at once, the rest next interval
    backend.gate.set()
    assert store.flush_sync(WAIT)
    final = store.close_sync()
    assert (final.written, final.dropped, final.lost) == (10, 15, 0)
    assert sqlite_rows(tmp_path / "s.db", "SELECT decision_id FROM decisions ORDER BY at") == [
        (f"dec-{n}",) for n in range(10)]


def test_resent_rows_and_a_lost_commit_answer_duplicate_nothing(tmp_path: Path) -> None:
    backend = Gated(SQLiteBackend(tmp_path / "s.db"))
    store = Store(backend, backoff_start=0.01)
    store.add_decision(decision(1))  # added before the start: one batch
    store.add_event(transfer_event("call-1", "connected"))
    backend.fail_after_next_write = True  # the batch commits, then "the connection drops"
    started(store)
    assert store.flush_sync(WAIT)
    assert backend.writes == 2 and store.stats().failures == 1  # written again after the reconnect
    # Vapi resends the same message; the service records the same decision again (a retried webhook)
    store.add_event(transfer_event("call-1", "connected"))
    store.add_decision(decision(1, chosen="something else"))
    # outcomes: the latest wins, whatever order they arrive in, and the same one twice changes nothing
    store.add_outcome(OutcomeRow("dec-1", "rerouted", NOW + timedelta(minutes=9)))
    store.add_outcome(OutcomeRow("dec-1", "reached", NOW + timedelta(minutes=5)))
    store.add_outcome(OutcomeRow("dec-1", "rerouted", NOW + timedelta(minutes=9)))
    assert store.flush_sync(WAIT)
    store.close_sync()
    with open_store_sync(f"sqlite:///{tmp_path}/s.db") as again:
        again.add_decision(decision(1))
        assert again.flush_sync(WAIT)
        record = again.call_sync("call-1")
    assert len(record.decisions) == 1 and len(record.events) == 1
    assert record.decisions[0].chosen == "billing"  # the first write stays
    assert (record.decisions[0].outcome, record.decisions[0].outcome_at) == ("rerouted", NOW + timedelta(minutes=9))


def test_rows_no_database_should_take_are_rejected_alone(tmp_path: Path, lines: Lines) -> None:
    with started(Store(SQLiteBackend(tmp_path / "s.db"))) as store:
        store.add_decision(decision(1))
        store.add_decision(decision(2, message_type="sms"))  # a bug upstream: counted and said, not written
        store.add_outcome(OutcomeRow("dec-1", "lost-in-space", NOW))
        store.add_decision(decision(3, call="bad\x00id\ud800", destination_keys=("sip:a@b" + "x" * 5000, "", "k")))
        assert store.flush_sync(WAIT)
        stats = store.stats()
        bad = store.call_sync("bad\ufffdid?")
    assert (stats.written, stats.rejected) == (2, 2)
    assert lines.named("store_row_rejected")
    assert [d.decision_id for d in bad.decisions] == ["dec-3"]
    keys = bad.decisions[0].destination_keys
    assert [len(k) for k in keys] == [1024, 1]  # bounded: a hostile value cannot bloat the store


def test_migrations_bring_an_older_database_up_to_date(tmp_path: Path, lines: Lines) -> None:
    path = tmp_path / "s.db"
    later = (*SQLITE, Migration(2, "a later release's column", (
        "ALTER TABLE decisions ADD COLUMN reason TEXT",
        "CREATE INDEX decisions_outcome ON decisions (outcome, at)",
    )))
    with started(Store(SQLiteBackend(path))) as old:  # the release before
        old.add_decision(decision(1))
        assert old.flush_sync(WAIT)
    assert sqlite_rows(path, "SELECT version FROM schema_version") == [(1,)]

    with started(Store(SQLiteBackend(path, later))) as new:
        new.add_decision(decision(2))
        assert new.flush_sync(WAIT)
        assert new.stats().schema_version == 2
        kept = new.call_sync("call-1")
    assert [d.decision_id for d in kept.decisions] == ["dec-1", "dec-2"]  # the old rows survive
    assert [r[0] for r in sqlite_rows(path, "SELECT version FROM schema_version ORDER BY version")] == [1, 2]
    assert "reason" in [r[1] for r in sqlite_rows(path, "PRAGMA table_info(decisions)")]
    assert [f.get("migrated_from") for f in lines.named("store_ready")] == [0, 1]

    with started(Store(SQLiteBackend(path, later))):  # started again: nothing to apply
        pass
    assert len(sqlite_rows(path, "SELECT version FROM schema_version")) == 2

    older = Store(SQLiteBackend(path))  # an older release on a newer database: refused, and says why
    with pytest.raises(StoreError, match=f"newer than the 1 this release knows.*{ENV}"):
        older.start().result(WAIT)
    older.close_sync()


def test_forget_deletes_a_call_written_and_still_buffered(tmp_path: Path) -> None:
    backend = Gated(SQLiteBackend(tmp_path / "s.db"), gate_writes=True)
    store = started(Store(backend, batch_rows=3))
    for n in range(8):
        store.add_decision(decision(n, call="forget-me" if n % 2 else "keep-me"))
    store.add_event(transfer_event("forget-me", "connected"))
    store.add_outcome(OutcomeRow("dec-1", "reached", NOW))
    poll(lambda: backend.entered_writes == 1, "the first batch is being written")

    async def forget_while_stuck() -> Any:
        store_forget = asyncio.ensure_future(store.forget("forget-me"))
        await asyncio.sleep(0.05)
        backend.gate.set()  # the batch in progress is written, then forget runs
        return await store_forget

    forgotten = asyncio.run(forget_while_stuck())
    # its 4 decisions, its event and its outcome: each deleted from the database or from the buffer
    assert forgotten.decisions + forgotten.events + forgotten.buffered == 6
    assert forgotten.decisions > 0 and forgotten.buffered > 0  # some were written, some never reached it
    assert store.flush_sync(WAIT)
    assert store.call_sync("forget-me") == CallRecord("forget-me", (), ())
    assert [d.decision_id for d in store.call_sync("keep-me").decisions] == ["dec-0", "dec-2", "dec-4", "dec-6"]
    store.close_sync()


def test_retention_at_start_and_periodically(tmp_path: Path, lines: Lines) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    old, recent = datetime.now(UTC) - timedelta(days=100), datetime.now(UTC) - timedelta(days=1)
    with open_store_sync(url, retention_days=None) as keep_all:
        keep_all.add_decision(decision(1, call="old", at=old))
        keep_all.add_event(transfer_event("old", "busy", at=old))
        keep_all.add_decision(decision(2, call="recent", at=recent))
        assert keep_all.flush_sync(WAIT)

    with open_store_sync(url, retention_days=30) as store:  # retention runs as the store starts
        poll(lambda: store.call_sync("old") == CallRecord("old", (), ()), "old rows deleted at start")
        assert len(store.call_sync("recent").decisions) == 1
    assert [(f["decisions"], f["events"]) for f in lines.named("store_retention")] == [(1, 1)]

    store = started(Store(SQLiteBackend(tmp_path / "s.db"), retention_days=30, retention_interval=0.1))
    store.add_decision(decision(3, call="old-again", at=old))  # e.g. a clock that was wrong
    assert store.flush_sync(WAIT)
    poll(lambda: store.call_sync("old-again").decisions == (), "old rows deleted by the periodic run")
    purged = store.purge_sync(datetime.now(UTC))  # and on demand
    assert (purged.decisions, purged.events) == (1, 0)
    store.close_sync()


def test_an_unreachable_database_is_waited_for_or_refused(tmp_path: Path, lines: Lines) -> None:
    backend = Gated(SQLiteBackend(tmp_path / "s.db"))
    backend.unreachable = True
    store = Store(backend, backoff_start=0.01, backoff_max=0.05)
    assert "connection refused" in (store.start().result(WAIT) or "")
    assert all(store.add_decision(decision(n)) for n in range(5))
    poll(lambda: store.stats().failures >= 3, "the writer keeps trying")
    assert len(lines.named("store_unavailable")) == 1  # once per interval, not once per attempt
    stats = store.close_sync(timeout=0.2)
    assert (stats.lost, stats.written) == (5, 0)
    assert lines.named("store_rows_lost")[0]["lost"] == 5


def test_close_is_bounded_when_a_write_hangs(tmp_path: Path, lines: Lines) -> None:
    backend = Gated(SQLiteBackend(tmp_path / "s.db"), gate_writes=True)  # a server that stopped answering
    store = started(Store(backend))
    for n in range(3):
        store.add_decision(decision(n))
    poll(lambda: backend.entered_writes == 1, "the write hangs")
    try:
        # close_sync waits at most 0.5 s + CLOSE_GRACE; the rows are counted as lost only once the hung write
        # was cut off and the thread ended within that time
        stats = store.close_sync(timeout=0.5)
    finally:
        backend.gate.set()
    assert (stats.lost, stats.written) == (3, 0)
    assert lines.named("store_rows_lost")[0]["lost"] == 3


def test_the_cli_is_told_when_the_database_cannot_be_reached() -> None:
    with pytest.raises(StoreUnavailable, match=f"start the database, or check {ENV}"):
        open_store_sync(f"postgresql://nobody@127.0.0.1:{postgres.free_port()}/none", start_timeout=WAIT)


def test_a_sqlite_path_that_cannot_work_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=f"cannot create the folder.*{ENV}=sqlite:///") as caught:
        open_store_sync(f"sqlite:///{tmp_path}/file/s.db")
    assert isinstance(caught.value, UserError)


def test_store_off_keeps_nothing() -> None:
    store = asyncio.run(open_store("none"))
    assert not store.enabled and not store.add_decision(decision(1))
    assert store.stats().accepted == 0
    with pytest.raises(StoreError, match="off"):
        store.forget_sync("call-1")
    store.close_sync()


# ----- PostgreSQL -----


# `pg` and `pg_url`: tests/conftest.py (the service tests share the server)


def test_postgresql_round_trip_with_hostile_text(pg_url: str) -> None:
    with open_store_sync(pg_url) as store:
        store.add_decision(decision(1, request_json='{"text": "nul \\u0000 kept escaped"}'))
        store.add_decision(decision(2, call="call\x00with nul\ud83d", chosen="a\x00b"))  # text PostgreSQL refuses
        store.add_event(transfer_event("call-1", "voicemail"))
        store.add_outcome(OutcomeRow("dec-1", "unreachable", NOW + timedelta(minutes=2)))
        assert store.flush_sync(WAIT)
        record = store.call_sync("call-1")
        hostile = store.call_sync("call\ufffdwith nul?")
        pages = list(store.records_sync(batch=1))
        stats = store.stats()
    assert record.decisions[0] == decision(1, request_json='{"text": "nul \\u0000 kept escaped"}',
                                           outcome="unreachable", outcome_at=NOW + timedelta(minutes=2))
    assert record.events == (transfer_event("call-1", "voicemail"),)
    assert hostile.decisions[0].chosen == "a\ufffdb"
    assert [[r.call_id for r in page] for page in pages] == [["call-1"], ["call\ufffdwith nul?"]]
    assert (stats.written, stats.rejected) == (4, 0)


def test_postgresql_migrations_concurrent_starters_and_schema_parity(pg: postgres.PostgresServer, pg_url: str,
                                                                      tmp_path: Path) -> None:
    async def replicas() -> list[Store]:  # four replicas starting at once on an empty database
        return list(await asyncio.gather(*(open_store(pg_url, require_connection=True) for _ in range(4))))

    stores = asyncio.run(replicas())
    for store in stores:
        store.close_sync()
    database = pg_url.rsplit("/", 1)[1]
    assert pg.psql("SELECT version FROM schema_version", database).split() == ["1"]

    later = (*POSTGRESQL, Migration(2, "a later release's column", ("ALTER TABLE events ADD COLUMN detail TEXT",)))
    with started(Store(PostgresBackend(pg_url, later))) as new:
        assert new.stats().schema_version == 2
    assert pg.psql("SELECT version FROM schema_version ORDER BY version", database).split() == ["1", "2"]
    with pytest.raises(StoreError, match="newer than the 1 this release knows"):
        open_store_sync(pg_url)

    # both dialects' first migration make the same tables and columns, the ones the rows have
    columns = {table: pg.psql(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' "
                              "ORDER BY ordinal_position", database).split() for table in ("decisions", "events")}
    with open_store_sync(f"sqlite:///{tmp_path}/s.db"):
        pass
    lite = {table: [r[1] for r in sqlite_rows(tmp_path / "s.db", f"PRAGMA table_info({table})")]
            for table in ("decisions", "events")}
    assert lite == {"decisions": list(DECISION_COLUMNS), "events": list(EVENT_COLUMNS)}
    assert columns == {"decisions": list(DECISION_COLUMNS), "events": [*EVENT_COLUMNS, "detail"]}


def test_postgresql_outage_loses_no_row_and_never_blocks_add(pg: postgres.PostgresServer, pg_url: str,
                                                             lines: Lines) -> None:
    store = open_store_sync(pg_url)
    store.add_decision(decision(0))
    assert store.flush_sync(WAIT)
    before = store.stats()
    pg.stop("fast")
    try:
        began = time.perf_counter()
        accepted = [store.add_decision(decision(n, call=f"down-{n % 7}")) for n in range(1, 301)]
        accepted += [store.add_event(transfer_event(f"down-{n}", "connected")) for n in range(7)]
        adding = time.perf_counter() - began
        assert all(accepted)
        # the writer has met the outage (the rows really waited), and keeps them all
        poll(lambda: store.stats().failures > before.failures, "the writer sees the database down")
        assert store.stats().buffered == 307 and not store.stats().connected
    finally:
        pg.start()  # same port, same data folder
    assert adding < 2.0, f"adding 307 rows took {adding:.2f} s while the database was down"  # no connect waited
    assert store.flush_sync(WAIT)
    stats = store.close_sync()
    assert (stats.written - before.written, stats.dropped, stats.lost, stats.rejected) == (307, 0, 0, 0)
    assert lines.named("store_unavailable") and lines.named("store_recovered")
    database = pg_url.rsplit("/", 1)[1]
    assert pg.psql("SELECT count(*) FROM decisions", database).strip() == "301"
    assert pg.psql("SELECT count(*) FROM events", database).strip() == "7"


def test_two_replicas_share_one_postgresql(pg_url: str) -> None:
    async def main() -> tuple[CallRecord, CallRecord, list[str]]:
        one, two = await asyncio.gather(open_store(pg_url), open_store(pg_url))
        one.add_decision(decision(1, call="shared"))  # the decision is made on one replica
        two.add_event(transfer_event("shared", "completed"))  # its end-of-call report reaches the other
        two.add_decision(decision(2, call="shared"))  # a second request of the call, on the other replica
        assert await one.flush(WAIT) and await two.flush(WAIT)
        seen_by_one, seen_by_two = await one.call("shared"), await two.call("shared")
        listed = [r.call_id async for page in one.records() for r in page]
        await asyncio.gather(one.close(), two.close())
        return seen_by_one, seen_by_two, listed

    seen_by_one, seen_by_two, listed = asyncio.run(main())
    assert seen_by_one == seen_by_two
    assert [d.decision_id for d in seen_by_one.decisions] == ["dec-1", "dec-2"]
    assert [e.status for e in seen_by_one.events] == ["completed"]
    assert listed == ["shared"]


def test_postgresql_that_refuses_us_stops_the_start_with_the_fix(pg: postgres.PostgresServer) -> None:
    with pytest.raises(StoreError, match="createdb"):
        open_store_sync(pg.url("no_such_database"))


def test_backend_for_each_target(tmp_path: Path) -> None:
    assert isinstance(backend_for(parse_database_url(None, tmp_path)), SQLiteBackend)
    assert isinstance(backend_for(parse_database_url("postgresql://u@h/db")), PostgresBackend)
    assert backend_for(parse_database_url("none")) is None
    assert asyncpg.__version__  # the driver is installed with the package, not only in the tests


def test_missing_postgresql_is_skipped_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "find_bindir", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so the PostgreSQL tests must run"):
        next(postgres.server())
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"PostgreSQL is not installed.*apt-get install postgresql"):
        next(postgres.server())


def test_outcome_events_and_decisions_come_back_as_the_join_needs_them(tmp_path: Path) -> None:
    """The wiring's contract with app/vapi/outcomes and app/dataset/outcomes: each OutcomeEvent and decision goes in
    as a row and comes back with every field the join reads, so a call joined from the store (on any replica)
    gets the outcome it gets from the messages themselves."""
    from app.dataset.outcomes import Decided, join_call
    from app.vapi.outcomes import OutcomeEvent

    at = NOW.timestamp()
    billing = ("tel:14155550142;ext=204",)
    events = [
        OutcomeEvent("c", "forwarding", billing, None, at + 1, "status-a", 0, timed=False),
        OutcomeEvent("c", "transfer", billing, "connected", at + 30, "report-b", 0),
        OutcomeEvent("c", "transfer", ("sip:retention@pbx.example",), "no-answer", at + 90, "report-b", 1),
        OutcomeEvent("c", "report", (), "customer-ended-call", at + 95, "report-b", 2),
    ]
    decisions = [Decided("d1", "c", at, "billing", billing), Decided("d2", "c", at + 60, "retention",
                                                                   ("sip:retention@pbx.example",))]
    with open_store_sync(f"sqlite:///{tmp_path}/s.db") as store:
        for d in decisions:
            store.add_decision(DecisionRow(d.decision_id, d.call_id, f"req-{d.decision_id}",
                                           datetime.fromtimestamp(d.at, UTC), "transfer", answered=d.destination_id,
                                           destination_keys=d.keys))
        for e in [*events, events[1]]:  # the report sent twice
            store.add_event(EventRow(event_key(e.source, e.index), e.call_id, e.kind,
                                     datetime.fromtimestamp(e.at, UTC), e.keys, e.status, e.source, e.index, e.timed))
        assert store.flush_sync(WAIT)
        record = store.call_sync("c")
    kept_decisions = [Decided(r.decision_id, r.call_id, r.at.timestamp(), r.answered, r.destination_keys)
                      for r in record.decisions]
    kept_events = [OutcomeEvent(r.call_id, r.kind, r.destination_keys, r.status, r.at.timestamp(), r.source or "",
                                r.position, r.timed) for r in record.events]
    assert kept_events == events and kept_decisions == decisions
    joined = [(j.decision.decision_id, j.outcome) for j in join_call(kept_decisions, kept_events)]
    assert joined == [(j.decision.decision_id, j.outcome) for j in join_call(decisions, events)]
    assert joined == [("d1", "rerouted"), ("d2", "unreachable")]
