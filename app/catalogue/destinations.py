"""The catalogue of allowed destinations (`destinations.json`): loading and validation.

A broken catalogue must stop start-up with a message naming the entry and the field, because the
alternative is a caller transferred to the wrong place, or nowhere, at run time.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.catalogue import hours as hours_mod
from app.catalogue.hours import Hours, HoursError
from app.errors import UserError, first_error

if TYPE_CHECKING:
    import jsonschema
    from jsonschema import ValidationError as ValidationError_

NONE = "none"  # the router's answer when no destination fits; reserved
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
KINDS = {"number": "TransferDestinationNumber", "sip": "TransferDestinationSip",
         "assistant": "TransferDestinationAssistant"}
HANDOFF_KINDS = {"assistant": "HandoffDestinationAssistant", "squad": "HandoffDestinationSquad"}
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


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destinations: list[_EntryModel] = Field(min_length=1)
    fallback: str | None = None
    assistants: dict[str, list[str]] | None = None
    timezone: str | None = None  # the default for entries whose hours give none


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    description: str
    examples: tuple[str, ...]
    destination: dict[str, Any] | None  # a Vapi transfer destination, answered to transfer requests
    handoff: dict[str, Any] | None = None  # a Vapi handoff destination, answered to handoff requests
    hours: Hours | None = None  # None: always open
    after_hours: str | None = None  # the entry answered instead while this one is closed

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
        opens = first.hours.opens_text(at) if first.hours else "it cannot be reached now"
        return None, f"{entry_id} is closed now; {opens}"

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


@cache
def _vapi_schemas() -> dict[str, Any]:
    text = resources.files("app.vapi").joinpath("data/vapi_destinations.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def _strict(node: Any) -> Any:
    """Forbid unknown keys wherever Vapi lists an object's properties: Vapi silently ignores a typo such as
    `trasferPlan`, which would turn a warm transfer into a blind one."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(x) for x in node]
    return node


def _closure(defs: dict[str, Any], root: str) -> list[str]:
    """The schemas `root` refers to, directly or not: only those need making strict for it."""
    seen, stack = [root], [defs[root]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] not in seen:
                seen.append(ref[8:])
                stack.append(defs[ref[8:]])
            stack.extend(v for k, v in node.items() if k != "$ref")
        elif isinstance(node, list):
            stack.extend(node)
    return seen


@cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    import jsonschema  # here, not at the top: `switchboard --help` and the service's hot path need none of it

    defs = _vapi_schemas()["$defs"]
    schema = {"$defs": {name: _strict(defs[name]) for name in _closure(defs, schema_name)},
              "$ref": f"#/$defs/{schema_name}"}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _specific(err: ValidationError_) -> ValidationError_:
    """For a "not valid under any of the given schemas", the error inside the alternative that was meant: Vapi's
    alternatives are told apart by their `type`, so the one whose `type` matched says what is wrong."""
    while err.validator in ("oneOf", "anyOf") and err.context:
        by_alternative: dict[Any, list[ValidationError_]] = {}
        for sub in err.context:
            by_alternative.setdefault(sub.schema_path[0], []).append(sub)
        meant = [subs for subs in by_alternative.values()
                 if not any(s.validator in ("enum", "const") and list(s.relative_path) == ["type"] for s in subs)]
        candidates = meant[0] if len(meant) == 1 else list(err.context)
        from jsonschema.exceptions import best_match

        best = best_match(candidates)
        if best is None:
            break
        err = best
    return err


def _destination_problem(dest: dict[str, Any], field: str = "destination") -> str | None:
    kinds = KINDS if field == "destination" else HANDOFF_KINDS
    kind = dest.get("type")
    if kind not in kinds:
        dynamic = " ('dynamic' would ask this service again)" if kind == "dynamic" else ""
        return f"{field}.type: must be one of {sorted(kinds)}, got {kind!r}{dynamic}"
    errors = sorted(_validator(kinds[str(kind)]).iter_errors(dest), key=lambda e: list(e.absolute_path))
    for err in map(_specific, errors):
        path = ".".join(str(p) for p in err.absolute_path)
        where = f"{field}.{path}" if path else field
        if err.validator == "additionalProperties":
            known = list(err.schema.get("properties", {})) if isinstance(err.schema, dict) else []
            extra = [k for k in err.instance if k not in known] if isinstance(err.instance, dict) else []
            hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else repr(k)
                     for k in extra]
            return f"{where}: unknown field {', '.join(hints)}; Vapi would silently ignore it"
        return f"{where}: {err.message}"
    if kind == "number" and dest.get("numberE164CheckEnabled", True) and not E164.match(str(dest["number"])):
        return (f"destination.number: {dest['number']!r} is not E.164 (like +14155550142); "
                "fix it, or set \"numberE164CheckEnabled\": false for a non-E.164 number")
    return None


def parse(data: Any, source: str = "destinations.json") -> Catalogue:
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        first = first_error(exc)
        raise CatalogueError(f"{source}: {_describe(data, list(first.loc))}: {first.message}") from None
    if model.timezone is not None:
        try:
            hours_mod.zone(model.timezone, "timezone")
        except HoursError as exc:
            raise CatalogueError(f"{source}: {exc}") from None
    entries: list[Entry] = []
    seen: set[str] = set()
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
        if not raw.description.strip():
            raise CatalogueError(f"{source}: {label}: description is empty; the router reads it to choose")
        if raw.destination is None and raw.handoff is None:
            raise CatalogueError(f"{source}: {label}: needs a \"destination\" (for transfers), a \"handoff\" "
                                 "(for handoffs), or both")
        for field_name, target in (("destination", raw.destination), ("handoff", raw.handoff)):
            problem = _destination_problem(target, field_name) if target is not None else None
            if problem:
                raise CatalogueError(f"{source}: {label}: {problem}")
        examples = tuple(x.strip() for x in raw.examples if x.strip())
        try:
            hours = hours_mod.parse(raw.hours, model.timezone) if raw.hours is not None else None
        except HoursError as exc:
            raise CatalogueError(f"{source}: {label}: {exc}") from None
        if raw.after_hours is not None and hours is None:
            raise CatalogueError(f"{source}: {label}: after_hours: has no effect without \"hours\" (the entry is "
                                 "always open); add hours or remove after_hours")
        entries.append(Entry(raw.id, raw.description.strip(), examples, raw.destination, raw.handoff, hours,
                             raw.after_hours))
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
    return Catalogue(tuple(entries), model.fallback, assistants, source, model.timezone)


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
    """Turn a pydantic location into 'destinations[2] (id 'billing').description'."""
    if len(loc) >= 2 and loc[0] == "destinations" and isinstance(loc[1], int):
        try:
            entry_id = data["destinations"][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            entry_id = None
        head = f"destinations[{loc[1]}]" + (f" (id {entry_id!r})" if isinstance(entry_id, str) else "")
        rest = ".".join(str(p) for p in loc[2:])
        return f"{head}.{rest}" if rest else head
    return ".".join(str(p) for p in loc) or "top level"


def load(path: Path) -> Catalogue:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(f"{path}: file not found; set SWITCHBOARD_DESTINATIONS or create it "
                             "(see README, 'The catalogue')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"{path}: not valid JSON: {exc}") from None
    return parse(data, str(path))
