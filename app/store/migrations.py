"""The store's schema, as numbered migrations per dialect.

Each database records the migrations it has had in `schema_version` (one row per version). On start the store
applies, in one transaction, every migration newer than the database's version; concurrent starters wait for one
another (PostgreSQL: an advisory lock; SQLite: the write lock of BEGIN IMMEDIATE). A database whose version is
newer than this release knows is refused rather than written with an older idea of its tables.

To change the schema, append a Migration to both lists with the next number; never edit a released one. Both
dialects keep the same tables and columns (the tests compare them).

Times: PostgreSQL `timestamptz`; SQLite text in one fixed UTC format (sqlite.py), so that text order is time order.
Destination keys: a JSON array of texts in both (a destination has a few keys: an assistant's name and id).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]  # run one by one: no splitting of SQL text on semicolons


def _initial(time: str, real: str, boolean: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE decisions (
            decision_id TEXT PRIMARY KEY,
            call_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            at {time} NOT NULL,
            message_type TEXT NOT NULL,
            chosen TEXT,
            answered TEXT,
            destination_keys TEXT NOT NULL DEFAULT '[]',
            outcome TEXT NOT NULL DEFAULT 'pending',
            outcome_at {time},
            confidence {real},
            prompt_hash TEXT,
            latency_ms {real},
            catalogue_hash TEXT,
            request_json TEXT
        )""",
        "CREATE INDEX decisions_call ON decisions (call_id)",
        "CREATE INDEX decisions_at ON decisions (at, decision_id)",
        f"""CREATE TABLE events (
            event_key TEXT PRIMARY KEY,
            call_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            at {time} NOT NULL,
            destination_keys TEXT NOT NULL DEFAULT '[]',
            status TEXT,
            source TEXT,
            position INTEGER NOT NULL DEFAULT 0,
            timed {boolean} NOT NULL
        )""",
        "CREATE INDEX events_call ON events (call_id, at)",
        "CREATE INDEX events_at ON events (at)",
    )


SQLITE: tuple[Migration, ...] = (
    Migration(1, "decisions and call events", _initial("TEXT", "REAL", "INTEGER")),
)
POSTGRESQL: tuple[Migration, ...] = (
    Migration(1, "decisions and call events", _initial("TIMESTAMPTZ", "DOUBLE PRECISION", "BOOLEAN")),
)


class SchemaTooNew(Exception):
    """The database was migrated by a newer release than this one."""


def pending(migrations: tuple[Migration, ...], current: int) -> tuple[Migration, ...]:
    """The migrations a database at version `current` still needs, in order. Raises SchemaTooNew."""
    latest = max((m.version for m in migrations), default=0)
    if current > latest:
        raise SchemaTooNew(f"the database's schema is at version {current}, newer than the {latest} this release "
                           "knows: upgrade Switchboard, or point SWITCHBOARD_DATABASE_URL at another database")
    numbers = [m.version for m in migrations]
    if numbers != sorted(set(numbers)):
        raise ValueError(f"migration versions must be unique and in order, not {numbers}")
    return tuple(m for m in migrations if m.version > current)
