"""SWITCHBOARD_DATABASE_URL: which database the store writes to.

- unset or empty: the embedded SQLite file `switchboard.db` in the data folder (`./data` unless told otherwise;
  the Docker image's volume is /data), created on first use;
- `sqlite:///PATH`: that SQLite file (SQLAlchemy's spelling: `sqlite:///data/x.db` is relative to the working
  folder, `sqlite:////var/lib/switchboard/x.db` is absolute);
- `postgresql://user@host:port/db` (or `postgres://`): a PostgreSQL database that several replicas share; a
  password may be in the URL, in PGPASSWORD or in ~/.pgpass, and libpq's query options (sslmode=...) are passed on;
- `none`: no store at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from app.errors import UserError

ENV = "SWITCHBOARD_DATABASE_URL"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_FILE = "switchboard.db"
FORMS = ("sqlite:///PATH (an embedded file), postgresql://user@host:port/db (shared by replicas), or none "
         "(no store); unset, it is DATA_DIR/switchboard.db")
OFF = frozenset({"none", "off"})


class StoreConfigError(UserError, ValueError):
    """SWITCHBOARD_DATABASE_URL cannot be used; the message names it and says how to fix it (the CLI prints it
    as one `Error:` line)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the store writes: kind `sqlite` (path), `postgresql` (dsn, the URL as given) or `none`."""

    kind: Literal["sqlite", "postgresql", "none"]
    path: Path | None = None
    dsn: str | None = None

    def describe(self) -> str:
        """For logs and errors: the file, or the URL without its password."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        if self.kind == "postgresql" and self.dsn is not None:
            return hide_password(self.dsn)
        return "none"


def hide_password(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return url
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return urlunsplit(parts._replace(netloc=f"{user}{':***' if colon else ''}@{hosts}"))


def _error(value: str, why: str, fix: str = f"use {FORMS}") -> StoreConfigError:
    return StoreConfigError(f"{ENV}={hide_password(value)!r}: {why}; {fix}")


def parse_database_url(value: str | None, data_dir: Path | None = None) -> Target:
    """The store's target from SWITCHBOARD_DATABASE_URL's value (None or blank: the default SQLite file in
    `data_dir`). Raises StoreConfigError naming the variable and the fix."""
    text = (value or "").strip()
    if not text:
        return Target("sqlite", path=(data_dir or DEFAULT_DATA_DIR) / DEFAULT_FILE)
    if text.lower() in OFF:
        return Target("none")
    scheme, sep, _ = text.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme.isascii() or not scheme.replace("+", "").isalnum():
        hint = f"to name a file, write sqlite:///{text}" if text.endswith((".db", ".sqlite", ".sqlite3")) else \
            f"use {FORMS}"
        raise _error(text, "not a database URL", hint)
    if scheme == "sqlite":
        return _sqlite(text)
    if scheme in ("postgresql", "postgres"):
        return _postgresql(text)
    raise _error(text, f"the scheme {scheme!r} is not supported")


def _sqlite(text: str) -> Target:
    rest = text[len("sqlite://"):]
    if not rest.startswith("/"):
        raise _error(text, "a SQLite URL takes no host", "write sqlite:///relative/path.db or "
                     "sqlite:////absolute/path.db (three slashes, then the path)")
    if "?" in rest or "#" in rest:
        raise _error(text, "SQLite URL options are not supported", "name the file only: sqlite:///PATH")
    path = unquote(rest[1:])
    if not path or path.endswith("/"):
        raise _error(text, "no file is named", "write sqlite:///PATH, e.g. sqlite:///data/switchboard.db")
    if path == ":memory:":
        raise _error(text, "an in-memory database keeps nothing once the process stops",
                     "name a file, e.g. sqlite:///data/switchboard.db, or none for no store")
    if "\x00" in path:
        raise _error(text, "the path holds a NUL character", "name a file: sqlite:///PATH")
    return Target("sqlite", path=Path(path))


def _postgresql(text: str) -> Target:
    try:
        parts: SplitResult = urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed [ in an IPv6 host
        raise _error(text, f"not a valid URL ({exc})", "write postgresql://user@host:port/db") from None
    hosts = parts.netloc.rpartition("@")[2]
    if "," not in hosts:  # several hosts (failover) are the driver's to parse; one is checked here
        try:
            port = parts.port  # raises ValueError for a port that is no number or over 65535
        except ValueError:
            port = 0
        if port == 0:
            raise _error(text, "the port is not a number from 1 to 65535",
                         "write postgresql://user@host:5432/db") from None
    database = unquote(parts.path.lstrip("/"))
    if "/" in database:
        raise _error(text, f"{database!r} is not a database name", "write postgresql://user@host:port/db")
    if not hosts and not database:
        raise _error(text, "no host and no database are named", "write postgresql://user@host:port/db")
    return Target("postgresql", dsn=text)
