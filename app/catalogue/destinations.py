"""The catalogue of allowed destinations (`destinations.json`): loading and validation.

A broken catalogue must stop start-up with a message naming the entry and the field, because the
alternative is a caller transferred to the wrong place, or nowhere, at run time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.catalogue import hours as hours_mod
from app.catalogue import messages
from app.catalogue.hours import Calendar, Hours, HoursError
from app.catalogue.messages import ClosedMessage, MessageError
from app.catalogue.targets import destination_problem
from app.errors import UserError, did_you_mean, first_error

NONE = "none"  # the router's answer when no destination fits; reserved
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TRANSFER, HANDOFF = "transfer", "handoff"  # what a request asks for: an entry's `destination` or its `handoff`


class CatalogueError(UserError):
    """The catalogue cannot be used; the message names the file, the entry and the field."""


class _EntryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    description: str = Field(min_length=1)
    examples: list[str] = Field(default_factory=list)
    destination: dict[str, Any] | None = None
    handoff: dict[str, Any] | None = None
    hours: Any = None  # checked by app/catalogue/hours.py, which names the field at fault
    after_hours: str | None = None
    closed_message: Any = None  # checked by app/catalogue/messages.py


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destinations: list[_EntryModel] = Field(min_length=1)
    fallback: str | None = None
    assistants: dict[str, list[str]] | None = None
    timezone: str | None = None  # the default for entries whose hours give none
    hours: Any = None  # the shared calendar (app/catalogue/hours.py checks it)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    description: str
    examples: tuple[str, ...]
    destination: dict[str, Any] | None  # a Vapi transfer destination, answered to transfer requests
    handoff: dict[str, Any] | None = None  # a Vapi handoff destination, answered to handoff requests
    hours: Hours | None = None  # None: always open
    after_hours: str | None = None  # the entry answered instead while this one is closed
    closed_message: ClosedMessage | None = None  # said to callers sent to after_hours instead, with {opens}

    def target(self, kind: str) -> dict[str, Any] | None:
        """What this entry answers to a request of `kind` (transfer or handoff), as written in the file."""
        return self.destination if kind == TRANSFER else self.handoff


@dataclass(frozen=True)
class Catalogue:
    entries: tuple[Entry, ...]
    fallback: str | None = None
    assistants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "destinations.json"
    timezone: str | None = None  # the catalogue's default time zone (hours, `route --at`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {e.id: e for e in self.entries})

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.entries)

    def get(self, entry_id: str) -> Entry | None:
        return self._by_id.get(entry_id)  # type: ignore[attr-defined, no-any-return]

    def allowed_for(self, assistant_id: str | None, assistant_name: str | None,
                    kind: str = TRANSFER) -> tuple[str, ...]:
        """The ids this voice assistant may send a call to by `kind` (transfer or handoff), in catalogue order."""
        subset = self.ids
        for key in (assistant_id, assistant_name):
            if key and key in self.assistants:
                subset = self.assistants[key]
                break
        return self._with_kind(subset, kind)

    def open_target(self, entry_id: str, at: dt.datetime, allowed: tuple[str, ...]) -> tuple[str | None, str]:
        """What to answer for `entry_id` at `at`: itself if open; else the first open entry along its
        `after_hours` chain that this call may use; else None. The text says why, for the caller."""
        first = self._by_id[entry_id]  # type: ignore[attr-defined]
        current: str | None = entry_id
        seen: set[str] = set()
        while current is not None and current not in seen:
            seen.add(current)
            entry: Entry = self._by_id[current]  # type: ignore[attr-defined]
            if current in allowed and (entry.hours is None or entry.hours.is_open(at)):
                return current, "" if current == entry_id else f"{entry_id} is closed now; {current} answers"
            current = entry.after_hours
        return None, f"{_spoken(entry_id)} is closed now; {_opens(first.hours, at)}"

    def closed_message(self, entry_id: str, at: dt.datetime) -> str | None:
        """What a caller hears when `entry_id` is closed at `at` and its after_hours entry answers a transfer:
        its closed_message with {opens} filled, or None (the answering entry's own message is kept)."""
        entry: Entry = self._by_id[entry_id]  # type: ignore[attr-defined]
        if entry.closed_message is None or entry.hours is None:
            return None
        return entry.closed_message.fill(entry.hours.spoken_opening(at))

    def hours_now(self, at: dt.datetime) -> dict[str, Any]:
        """For /healthz and `check`: the entries with hours that are open, and those closed with when they open.
        Entries often share their hours (a team's lines, a site's desks): each distinct `hours` is worked out once."""
        texts: dict[Hours, str | None] = {}  # None: open now; else when it opens
        out: dict[str, Any] = {"open": [], "closed": {}, "always_open": []}
        for e in self.entries:
            if e.hours is None:
                out["always_open"].append(e.id)
                continue
            if e.hours not in texts:
                texts[e.hours] = None if e.hours.is_open(at) else e.hours.opens_text(at)
            text = texts[e.hours]
            if text is None:
                out["open"].append(e.id)
            else:
                out["closed"][e.id] = text
        return out

    def _with_kind(self, ids: tuple[str, ...], kind: str) -> tuple[str, ...]:
        return tuple(i for i in ids if self._by_id[i].target(kind) is not None)  # type: ignore[attr-defined]

    def subsets(self) -> set[tuple[str, ...]]:
        """Every distinct allowed set, so prompts and schemas can be built once per catalogue."""
        return {self._with_kind(ids, kind) for ids in (self.ids, *self.assistants.values())
                for kind in (TRANSFER, HANDOFF)} - {()}


def parse(data: Any, source: str = "destinations.json") -> Catalogue:
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        first = first_error(exc)
        if first.type == "extra_forbidden":
            raise CatalogueError(f"{source}: {_unknown_field(data, list(first.loc))}") from None
        raise CatalogueError(f"{source}: {_describe(data, list(first.loc))}: {first.message}") from None
    try:
        if model.timezone is not None:
            hours_mod.zone(model.timezone, "timezone")
        shared = hours_mod.parse_calendar(model.hours, model.timezone) if model.hours is not None else None
    except HoursError as exc:
        raise CatalogueError(f"{source}: {exc}") from None
    entries: list[Entry] = []
    seen: set[str] = set()
    calendars: dict[Hours, Hours] = {}  # one object per distinct calendar, however many entries share it
    for i, raw in enumerate(model.destinations):
        label = f"destinations[{i}] (id {raw.id!r})"
        if not ID_PATTERN.match(raw.id):
            raise CatalogueError(f"{source}: destinations[{i}].id: {raw.id!r} must be lowercase letters, digits, "
                                 "'_' or '-' (at most 64), starting with a letter or digit")
        if raw.id == NONE:
            raise CatalogueError(f"{source}: {label}: id 'none' is reserved for 'no suitable destination'")
        if raw.id in seen:
            raise CatalogueError(f"{source}: {label}: id is used twice; ids must be unique")
        seen.add(raw.id)
        try:
            entries.append(_entry(raw, model.timezone, shared, calendars))
        except (CatalogueError, HoursError, MessageError) as exc:
            raise CatalogueError(f"{source}: {label}: {exc}") from None
    _check_after_hours(entries, source)
    if model.fallback is not None and model.fallback not in seen:
        raise CatalogueError(f"{source}: fallback: {model.fallback!r} is not the id of any destination "
                             f"(ids: {', '.join(sorted(seen))})")
    assistants: dict[str, tuple[str, ...]] = {}
    for key, ids in (model.assistants or {}).items():
        if not ids:
            raise CatalogueError(f"{source}: assistants[{key!r}]: the list is empty; remove the key to allow all")
        unknown = [x for x in ids if x not in seen]
        if unknown:
            raise CatalogueError(f"{source}: assistants[{key!r}]: unknown destination id(s) {unknown}")
        order = [e.id for e in entries if e.id in set(ids)]
        assistants[key] = tuple(order)
    timezone = model.timezone or (shared.timezone if shared is not None else None)
    return Catalogue(tuple(entries), model.fallback, assistants, source, timezone)


def _entry(raw: _EntryModel, timezone: str | None, shared: Calendar | None,
           calendars: dict[Hours, Hours]) -> Entry:
    """One entry, checked; the errors name the field (parse adds the file and the entry)."""
    if not raw.description.strip():
        raise CatalogueError("description is empty; the router reads it to choose")
    if raw.destination is None and raw.handoff is None:
        raise CatalogueError("needs a \"destination\" (for transfers), a \"handoff\" (for handoffs), or both")
    for field_name, target in (("destination", raw.destination), ("handoff", raw.handoff)):
        problem = destination_problem(target, field_name) if target is not None else None
        if problem:
            raise CatalogueError(problem)
    examples = tuple(x.strip() for x in raw.examples if x.strip())
    hours = hours_mod.entry_hours(raw.hours, timezone, shared)
    if hours is not None:
        hours = calendars.setdefault(hours, hours)
    if raw.after_hours is not None and hours is None:
        why = "\"hours\": \"always\"" if raw.hours is not None else "it has no \"hours\" and the catalogue no " \
            "shared opening hours"
        raise CatalogueError(f"after_hours: has no effect: the entry is always open ({why}); give it hours or "
                             "remove after_hours")
    closed = messages.parse(raw.closed_message) if raw.closed_message is not None else None
    if closed is not None and raw.after_hours is None:
        raise CatalogueError("closed_message: has no effect without \"after_hours\": it is what callers hear when "
                             "the after_hours entry answers instead; add after_hours or remove closed_message")
    if closed is not None and raw.destination is None:
        raise CatalogueError("closed_message: has no effect on an entry without a \"destination\" (Vapi's handoff "
                             "destinations carry no message); remove it")
    return Entry(raw.id, raw.description.strip(), examples, raw.destination, raw.handoff, hours, raw.after_hours,
                 closed)


def _check_after_hours(entries: list[Entry], source: str) -> None:
    """Every after_hours names an entry that can answer what this one answers; no chain comes back on itself."""
    by_id = {e.id: e for e in entries}
    for i, entry in enumerate(entries):
        label = f"destinations[{i}] (id {entry.id!r}): after_hours"
        chain, current = [entry.id], entry.after_hours
        while current is not None:
            target = by_id.get(current)
            if target is None:
                raise CatalogueError(f"{source}: {label}: {current!r} is not the id of any destination "
                                     f"(ids: {', '.join(sorted(by_id))})")
            if current in chain:
                raise CatalogueError(f"{source}: {label}: the chain {' -> '.join([*chain, current])} comes back on "
                                     "itself; end it with an entry that has no hours, or no after_hours")
            previous = by_id[chain[-1]]
            for kind, have in (("destination", previous.destination), ("handoff", previous.handoff)):
                if have is not None and target.target(TRANSFER if kind == "destination" else HANDOFF) is None:
                    raise CatalogueError(f"{source}: {label}: {current!r} has no {kind}, so {chain[-1]!r}'s "
                                         f"{kind} requests would find nothing there; give it one or choose another")
            chain.append(current)
            current = target.after_hours


def _describe(data: Any, loc: list[Any]) -> str:
    """Turn a pydantic location into "destinations[2] (id 'billing'): description"."""
    if len(loc) >= 2 and loc[0] == "destinations" and isinstance(loc[1], int):
        try:
            entry_id = data["destinations"][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            entry_id = None
        head = f"destinations[{loc[1]}]" + (f" (id {entry_id!r})" if isinstance(entry_id, str) else "")
        rest = ".".join(str(p) for p in loc[2:])
        return f"{head}: {rest}" if rest else head
    return ".".join(str(p) for p in loc) or "top level"


def _unknown_field(data: Any, loc: list[Any]) -> str:
    """An unknown field, with the one meant: the same help at every level as inside `destination`."""
    model = _EntryModel if len(loc) == 3 and loc[0] == "destinations" else _FileModel
    known = list(model.model_fields)
    if loc[-1] in hours_mod.FIELDS and not (model is _FileModel and loc[-1] == "timezone"):
        hint = f" (it belongs inside \"hours\": {{\"{loc[-1]}\": ...}})"  # a top-level "closed": holidays
    else:
        hint = did_you_mean(str(loc[-1]), known) or f" (fields: {', '.join(known)})"
    return f"{_describe(data, loc)}: unknown field{hint}"


def _spoken(entry_id: str) -> str:
    """An id as a voice assistant reads it out: 'tech support', not 'tech_support'."""
    return entry_id.replace("_", " ").replace("-", " ")


def _opens(hours: Hours | None, at: dt.datetime) -> str:
    """'it opens tomorrow at 8:00 AM', for the error a voice assistant reads to the caller."""
    return hours.opens_sentence(at) if hours is not None else "it cannot be reached now"
