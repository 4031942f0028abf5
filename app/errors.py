"""The errors that are the user's to fix, and the one way a pydantic validation error is put into words.

Library code raises a UserError whose message tells the user the fix (naming the setting, file, entry or field);
the CLI turns any of them into one `Error:` line and exit code 2, in one place (app/cli/__init__.py). Nothing
below the CLI exits the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(Exception):
    """Something the user can fix (a setting, the catalogue, the prompt, a request body, a dataset, a directory):
    the message tells the user the fix."""


@dataclass(frozen=True, slots=True)
class FirstError:
    """The first problem pydantic found, the part every message quotes."""

    loc: tuple[str | int, ...]  # pydantic's location, without the prefix
    where: str  # the dotted location (`artifact.messages.3.role`), after any prefix; "" for the value as a whole
    message: str  # pydantic's words, e.g. "Field required"
    type: str  # pydantic's error type, e.g. "json_invalid", "model_type"
    input: Any  # the value at fault
    count: int  # how many problems pydantic found in all


def first_error(exc: ValidationError, *prefix: str | int) -> FirstError:
    """The first of `exc`'s errors, its location joined with dots after `prefix` (the caller's own path)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in (*prefix, *first["loc"]))
    return FirstError(tuple(first["loc"]), where, str(first["msg"]), str(first["type"]), first.get("input"),
                      exc.error_count())
