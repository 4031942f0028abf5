"""The errors that are the user's to fix, and the one way a pydantic validation error is put into words.

Library code raises a UserError whose message tells the user the fix (naming the setting, file, entry or field);
the CLI turns any of them into one `Error:` line and exit code 2, in one place (app/cli/__init__.py). Nothing
below the CLI exits the process.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(Exception):
    """Something the user can fix (a setting, the catalogue, the prompt, a request body, a dataset, a directory):
    the message tells the user the fix."""


GUESS_CHARS = 100  # difflib's cost grows with the product of the lengths: a longer word is no typo of a name


def nearest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice a misspelt `word` most likely meant, if one is close enough (difflib's ratio >= cutoff)."""
    if len(word) > GUESS_CHARS:
        return None
    matches = difflib.get_close_matches(word, [c for c in choices if len(c) <= GUESS_CHARS], 1, cutoff)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """" (did you mean 'x'?)" after a misspelt word, or "" when nothing is close: every "did you mean" the
    user sees (settings, catalogue fields and values, ids typed while labelling) is worded by this."""
    return meant(nearest(word, choices, cutoff))


def meant(guess: str | None) -> str:
    """did_you_mean's words for a guess made already (nearest): " (did you mean 'x'?)", or "" for none."""
    return f" (did you mean {guess!r}?)" if guess is not None else ""


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
