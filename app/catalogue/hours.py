"""Business hours and holidays per destination: is it open at a given moment, and when does it open next.

    "hours": {"timezone": "America/Los_Angeles",
              "open": {"mon-fri": "09:00-12:30,13:30-18:00", "sat": "10:00-14:00"},
              "closed": ["2026-12-25", "2027-01-01"]}

The catalogue's top-level `hours` is a shared calendar (a Calendar): an entry without `hours` takes it whole, an
entry's own `hours` overrides its `timezone` and `open` and adds its `closed` dates, and `"hours": "always"`
makes an entry always open.

Days are `mon` to `sun`, single, as ranges (`mon-fri`, `sat-sun`, `fri-mon` wraps) or lists (`mon,wed`);
times are 24-hour local ranges, an end of `24:00` allowed; `closed` lists local dates closed all day. Local
time comes from the time-zone rules (zoneinfo, with the `tzdata` package where the system has none), so
daylight-saving changes need nothing from the catalogue.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import did_you_mean

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FIELDS = ("timezone", "open", "closed")
ALWAYS = "always"  # an entry's `"hours": "always"`: always open, whatever the shared calendar says
# Spoken names, not strftime's %A/%B: those follow the process's locale.
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
LOOK_AHEAD_DAYS = 400  # how far to look for the next opening (a year of holidays, at most)
NO_OPENING = "it has no opening time in the coming year"
# The instants the hours code works with: far enough inside datetime's own range (years 1 to 9999) that a time
# zone's offset and a year of looking ahead never leave it (an OverflowError there was a 500 to a live caller).
EARLIEST = dt.datetime(2, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9998, 1, 1, tzinfo=dt.UTC)


class HoursError(Exception):
    """A malformed `hours`; the message names the field (the catalogue adds the entry)."""


Week = tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Monday first): (start, end) minutes, sorted


@dataclass(frozen=True)
class Hours:
    timezone: str
    open: Week
    closed: frozenset[dt.date]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, at: dt.datetime) -> bool:
        local = _within(at).astimezone(self.zone)
        if local.date() in self.closed:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.open[local.weekday()])

    def next_opening(self, at: dt.datetime) -> dt.datetime | None:
        """The next local moment it opens, after `at` (None if it never does within a year)."""
        local = _within(at).astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        for ahead in range(LOOK_AHEAD_DAYS):
            day = local.date() + dt.timedelta(days=ahead)
            if day in self.closed:
                continue
            for start, _ in self.open[day.weekday()]:
                if ahead > 0 or start > minute:
                    return dt.datetime(day.year, day.month, day.day, start // 60, start % 60, tzinfo=self.zone)
        return None

    def opens_text(self, at: dt.datetime) -> str:
        """For the operator (check, /healthz, `route --explain`): what a caller is told, with the calendar's time
        zone, 'it opens tomorrow at 9:00 AM (America/Los_Angeles)'. Built from spoken_opening, so the two never
        disagree on the day."""
        spoken = self.spoken_opening(at)
        return NO_OPENING if spoken is None else f"it opens {spoken} ({self.timezone})"

    def opens_sentence(self, at: dt.datetime) -> str:
        """What the error answered to Vapi says, read out to the caller: 'it opens tomorrow at 9:00 AM'."""
        spoken = self.spoken_opening(at)
        return NO_OPENING if spoken is None else f"it opens {spoken}"

    def spoken_opening(self, at: dt.datetime) -> str | None:
        """When it opens next, as a caller is told it, in this calendar's time zone: 'today at 1:30 PM',
        'tomorrow at 8:00 AM', 'on Monday at 9:00 AM', 'on Monday, January 4 at 9:00 AM' (a week or more
        ahead); None if it does not open within a year. The one place a day is put into words: names from
        DAY_NAMES/MONTH_NAMES, never strftime, whose names follow the process's locale."""
        when = self.next_opening(at)
        if when is None:
            return None
        days = (when.date() - _within(at).astimezone(self.zone).date()).days
        clock = f"{when.hour % 12 or 12}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"
        name = DAY_NAMES[when.weekday()]
        day = ("today" if days == 0 else "tomorrow" if days == 1 else f"on {name}" if days < 7
               else f"on {name}, {MONTH_NAMES[when.month - 1]} {when.day}")
        return f"{day} at {clock}"


def local_text(at: dt.datetime, timezone: str | None) -> str:
    """For the operator (`route --explain`, `label`): `at` in a calendar's time zone (UTC without one), as 'Mon 24
    Nov 2025 21:30 (America/Los_Angeles)'; names from DAY_NAMES/MONTH_NAMES, not strftime's, which follow the
    process's locale."""
    local = _within(at).astimezone(ZoneInfo(timezone) if timezone else dt.UTC)
    return (f"{DAY_NAMES[local.weekday()][:3]} {local.day:02d} {MONTH_NAMES[local.month - 1][:3]} {local.year} "
            f"{local.hour:02d}:{local.minute:02d} ({timezone or 'UTC'})")


@dataclass(frozen=True)
class Calendar:
    """The catalogue's top-level `hours`: what entries inherit. Any part may be missing."""

    timezone: str | None
    open: Week | None
    closed: frozenset[dt.date]
    hours: Hours | None  # the calendar itself, for entries without `hours`: None unless it has `open`


def zone(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise HoursError(f"{where}: a time zone name is needed, like \"America/Los_Angeles\" or \"Europe/Paris\"")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError(f"{where}: {name!r} is not a time zone (use an IANA name like \"America/Los_Angeles\"; "
                         "the tzdata package provides them where the system has none)") from None
    return name


def _days(key: str) -> list[int]:
    out: list[int] = []
    for part in key.lower().split(","):
        part = part.strip()
        ends = [p.strip() for p in part.split("-")]
        if len(ends) not in (1, 2) or any(e not in DAYS for e in ends):
            raise HoursError(f"hours.open: {key!r} is not a day or range of days (mon..sun, e.g. \"mon-fri\", "
                             "\"sat\", \"mon,wed\")")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        out += [(first + i) % 7 for i in range((last - first) % 7 + 1)]
    return out


def _ranges(key: str, value: Any) -> list[tuple[int, int]]:
    where = f"hours.open.{key}"
    if not isinstance(value, str) or not value.strip():
        raise HoursError(f"{where}: times must be a string of 24-hour ranges, like \"09:00-12:30,13:30-18:00\"")
    out = []
    for part in value.split(","):
        match = _RANGE.match(part)
        if not match:
            raise HoursError(f"{where}: {part.strip()!r} is not a range like \"09:00-17:30\"")
        h1, m1, h2, m2 = map(int, match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise HoursError(f"{where}: {part.strip()!r} is not a time of day (00:00 to 24:00)")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise HoursError(f"{where}: {part.strip()!r} ends before it starts; a range past midnight is two: "
                             "\"22:00-24:00\" on one day and \"00:00-02:00\" on the next")
        out.append((start, end))
    out.sort()
    for (_, end), (start, _) in itertools.pairwise(out):
        if start < end:
            raise HoursError(f"{where}: ranges overlap in {value!r}")
    return out


def _date(value: Any, index: int) -> dt.date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise HoursError(f"hours.closed[{index}]: {value!r} is not a date like \"2026-12-25\"")


def _fields(data: Any, where: str) -> None:
    """Refuse an unknown field, suggesting the one meant (a misspelt `closd` would drop every holiday)."""
    for key in data:
        if key not in FIELDS:
            hint = did_you_mean(str(key), FIELDS) or f" (fields: {', '.join(FIELDS)})"
            raise HoursError(f"{where}.{key}: unknown field{hint}")


def _week(opening: Any) -> Week:
    if not isinstance(opening, dict) or not opening:
        raise HoursError("hours.open: needs at least one day, like {\"mon-fri\": \"09:00-17:00\"} (no hours at all "
                         "means always open: \"hours\": \"always\")")
    week: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    seen: dict[int, str] = {}
    for key, value in opening.items():
        ranges = _ranges(key, value)
        for day in _days(key):
            if day in seen:
                raise HoursError(f"hours.open: {DAYS[day]} is in both {seen[day]!r} and {key!r}")
            seen[day] = key
            week[day] = ranges
    return tuple(tuple(day) for day in week)


def _closed(data: dict[str, Any]) -> frozenset[dt.date]:
    closed_list = data.get("closed", [])
    if not isinstance(closed_list, list):
        raise HoursError("hours.closed: must be a list of dates, like [\"2026-12-25\"]")
    return frozenset(_date(value, i) for i, value in enumerate(closed_list))


def parse_calendar(data: Any, default_timezone: str | None) -> Calendar:
    """The catalogue's top-level `hours` (`default_timezone`: its top-level `timezone`); HoursError names the
    field at fault."""
    if not isinstance(data, dict):
        raise HoursError("hours: must be an object with any of \"timezone\", \"open\" and \"closed\": the "
                         "calendar every entry inherits (an entry opts out with \"hours\": \"always\")")
    _fields(data, "hours")
    name = zone(data["timezone"], "hours.timezone") if "timezone" in data else default_timezone
    if default_timezone and name != default_timezone:
        raise HoursError(f"hours.timezone: {name!r} differs from the top-level \"timezone\" "
                         f"{default_timezone!r}; give the time zone once")
    week = _week(data["open"]) if "open" in data else None
    closed = _closed(data)
    if week is not None and name is None:
        raise HoursError("hours.timezone: missing; the shared opening hours need a time zone, like "
                         "\"America/Los_Angeles\"")
    hours = Hours(name, week, closed) if week is not None and name is not None else None
    return Calendar(name, week, closed, hours)


def parse(data: Any, default_timezone: str | None, shared: Calendar | None = None) -> Hours:
    """An entry's `hours` object, on top of the shared calendar if any; HoursError names the field at fault."""
    if not isinstance(data, dict):
        raise HoursError("hours: must be an object with \"open\" (and \"timezone\", \"closed\"), or \"always\"")
    _fields(data, "hours")
    if "timezone" in data:
        name = zone(data["timezone"], "hours.timezone")
    elif shared is not None and shared.timezone:
        name = shared.timezone
    elif default_timezone:
        name = default_timezone
    else:
        raise HoursError("hours.timezone: missing; set it here, or a top-level \"timezone\" for every entry")
    if "open" not in data and shared is not None and shared.open is not None:
        week = shared.open
    else:
        week = _week(data.get("open"))
    closed = _closed(data)
    return Hours(name, week, shared.closed | closed if shared is not None else closed)


def entry_hours(data: Any, default_timezone: str | None, shared: Calendar | None) -> Hours | None:
    """An entry's calendar: its `hours` (absent: the shared calendar's; "always": None, always open)."""
    if data is None:
        return shared.hours if shared is not None else None
    if isinstance(data, str):
        if data.strip().lower() == ALWAYS:
            return None
        hint = did_you_mean(data.strip().lower(), [ALWAYS])
        raise HoursError(f"hours: {data!r} is not \"always\" or an object with \"open\" (and \"timezone\", "
                         f"\"closed\"){hint}")
    return parse(data, default_timezone, shared)


def _within(at: dt.datetime) -> dt.datetime:
    """`at`, moved inside EARLIEST..LATEST (only a time given outside it, like `route --at 9999-12-31`, moves)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC) if at.year in (1, 9999) else at.astimezone()  # .astimezone() can overflow
    return min(max(at, EARLIEST), LATEST)


def read_moment(value: Any) -> dt.datetime | None:
    """The moment a request's `timestamp` names (Vapi sends epoch milliseconds; seconds and ISO 8601 with an
    offset are accepted), in UTC; None when it names none, or one outside EARLIEST..LATEST."""
    parsed: dt.datetime | None = None
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value and abs(value) < 1e16:
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            parsed = dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and len(value) <= 40:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                return None
            parsed = parsed.astimezone(dt.UTC)
        except (OverflowError, ValueError):  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
            return None
    return parsed if parsed is not None and EARLIEST <= parsed <= LATEST else None


def moment(value: Any, default: dt.datetime | None = None) -> dt.datetime:
    """The decision time from a request's `timestamp` (see read_moment), else `default`, else now."""
    return read_moment(value) or default or dt.datetime.now(dt.UTC)
