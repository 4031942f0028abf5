"""What a database driver gives the store, and the three ways it can fail.

A backend is used from the store's own thread and event loop only, one operation at a time (the store holds a
lock around each). It turns its driver's exceptions into:
- StoreUnavailable: the database cannot be reached or cannot take writes now (stopped, restarting, full disk,
  locked): the rows are kept and the operation retried after a backoff;
- RowsRefused: the database refused these rows (a value it cannot hold): the store writes them one by one and
  drops, counted, only those refused again;
- StoreError: anything else; on start (a wrong password, a missing database, a schema from a newer release) it
  stops the start with the message, which says how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from app.errors import UserError
from app.store.rows import DecisionRow, EventRow, OutcomeRow


class StoreError(UserError):
    """The store cannot do what was asked; the message says why and what to do (the CLI prints it as one
    `Error:` line)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written now; trying again later may work."""


class RowsRefused(StoreError):
    """The database refused the rows of one write (not the connection)."""


class Backend(Protocol):
    description: str  # for logs: the file, or the URL without its password

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection (idempotent)."""

    async def close(self) -> None:
        """Close the connection; never raises."""

    async def migrate(self) -> tuple[int, int]:
        """Apply the migrations the database lacks; (version before, version after)."""

    async def write(self, decisions: Sequence[DecisionRow], events: Sequence[EventRow],
                    outcomes: Sequence[OutcomeRow]) -> None:
        """All of them in one transaction; rows already there (same decision id or event key) are left as they
        are, so writing again after an uncertain commit duplicates nothing."""

    async def purge(self, table: str, before: datetime, limit: int) -> int:
        """Delete at most `limit` rows of `table` ("decisions" or "events") older than `before`; how many."""

    async def forget(self, call_id: str) -> tuple[int, int]:
        """Delete every decision and event of a call; (decisions, events) deleted."""

    async def decisions_page(self, after: tuple[datetime, str], limit: int) -> list[DecisionRow]:
        """Decisions after (at, decision_id), in that order, at most `limit`."""

    async def calls(self, call_ids: Sequence[str]) -> tuple[list[DecisionRow], list[EventRow]]:
        """Every decision and event of these calls, each in (call, time) order."""
