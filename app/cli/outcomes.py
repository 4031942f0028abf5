"""`switchboard outcomes`: per destination, the decisions kept in the store and what became of them, overall and by
hour of the week, worst first. Also the store access `export` and `forget` share: the same settings, one way to
open the store, one way to turn its rows into the outcome join's inputs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli import fail, settings_from
from app.logs import LOGGER

if TYPE_CHECKING:
    from app.dataset.outcomes import Joined, Summary
    from app.settings import Settings
    from app.store import CallRecord, DecisionRow, Store

CLI_START_TIMEOUT = 10.0  # seconds a command waits for the database before saying it cannot reach it
_AGO = re.compile(r"(\d{1,6})([dhw])")  # --since 7d: bounded digits, one unit


class Since(click.ParamType[dt.datetime]):
    """--since: a date (2026-05-01), a date and time (2026-05-01T09:30, UTC unless it names an offset), or an age
    (36h, 7d, 2w)."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        ago = _AGO.fullmatch(text.lower())
        if ago:
            hours = int(ago.group(1)) * {"h": 1, "d": 24, "w": 24 * 7}[ago.group(2)]
            return dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date: write 2026-05-01, 2026-05-01T09:30 (UTC unless an offset is "
                      "given, like +02:00) or an age like 36h, 7d or 2w", param, ctx)
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


SINCE = Since()


def database_option(f: Any) -> Any:
    return click.option("--database-url", metavar="URL",
                        help="The store to read, overriding SWITCHBOARD_DATABASE_URL (and SWITCHBOARD_DATA_DIR's "
                             "default file): sqlite:///PATH or postgresql://user@host:port/db.")(f)


def command_settings(database_url: str | None) -> Settings:
    """The settings `serve` reads, with --database-url winning."""
    return settings_from(database_url=database_url)


def open_store(settings: Settings, *, missing_ok: bool = False) -> Store | None:
    """The store the service writes to, for reading. None when `missing_ok` and nothing was ever kept there (an
    embedded file that does not exist: opening it would create it). A store that cannot be reached is a
    StoreUnavailable (one `Error:` line, exit 2)."""
    from app.store import ENV, open_store_sync, parse_database_url

    target = parse_database_url(settings.database_url, settings.data_dir)
    if target.kind == "none":
        if missing_ok:
            return None
        fail(f"{ENV}=none: no decision is kept, so there is nothing to read; set {ENV} (or --database-url) to "
             "the store the service writes to")
    if target.kind == "sqlite" and target.path is not None and not target.path.exists():
        if missing_ok:
            return None
        fail(f"no store at {target.path}: nothing has been kept there yet. Give the store the service writes to "
             f"(--database-url, {ENV}, or SWITCHBOARD_DATA_DIR as serve has it)")
    return open_store_sync(settings.database_url, settings.data_dir, retention_days=None,
                           start_timeout=CLI_START_TIMEOUT, require_connection=True, logger=_quiet())


def _quiet() -> logging.Logger:
    """The store's log lines are for the service's log; a command says what went wrong once, as its `Error:`
    line (with no handler, Python printed the bare event name, `store_unavailable`, above it)."""
    log = logging.getLogger(f"{LOGGER}.cli.store")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    return log


def records(store: Store, since: dt.datetime | None) -> Iterator[CallRecord]:
    for page in store.records_sync(since):
        yield from page


def joined_records(calls: Iterator[CallRecord]) -> Iterator[tuple[DecisionRow, Joined]]:
    """Each kept decision with its outcome, as the join decides it from the call's kept events (one call at a
    time: memory stays bounded by the largest call, not the store)."""
    from app.catalogue.destinations import NONE
    from app.dataset.outcomes import Decided, join_call
    from app.vapi.outcomes import OutcomeEvent

    for call in calls:
        rows = {d.decision_id: d for d in call.decisions}
        # The keys were computed when the decision was made (destination_keys), the same way as the events'.
        decisions = [Decided(d.decision_id, d.call_id, d.at.timestamp(),
                             d.answered if d.answered and d.answered != NONE else None, d.destination_keys)
                     for d in call.decisions]
        events = [OutcomeEvent(e.call_id, e.kind, e.destination_keys, e.status, e.at.timestamp(),
                               e.source or e.event_key, e.position, e.timed) for e in call.events]
        for item in join_call(decisions, events):
            yield rows[item.decision.decision_id], item


def time_zone(tz: str | None, settings: Settings) -> tuple[dt.tzinfo, str]:
    """--tz, else the catalogue's time zone, else UTC; with words saying which."""
    from zoneinfo import ZoneInfo

    from app.catalogue.hours import HoursError, zone
    from app.errors import UserError

    if tz:
        try:
            return ZoneInfo(zone(tz, "--tz")), f"{tz} (--tz)"
        except HoursError as exc:
            fail(str(exc))
    try:
        from app.loading import load_catalogue

        catalogue = load_catalogue(settings.destinations)
    except UserError as exc:
        click.secho(f"Warning: hours of the week are in UTC: the catalogue cannot be read ({exc})", fg="yellow",
                    err=True)
        return dt.UTC, "UTC (the catalogue could not be read)"
    if catalogue.timezone:
        return ZoneInfo(catalogue.timezone), f"{catalogue.timezone} (the catalogue's time zone)"
    return dt.UTC, "UTC (the catalogue names no time zone; --tz sets one)"


@click.command("outcomes")
@click.option("--since", type=SINCE, help="Only decisions made at or after this: 2026-05-01, 2026-05-01T09:30 "
              "(UTC unless an offset is given) or an age such as 7d.  [default: everything kept]")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table", show_default=True,
              help="table for the terminal; json for scripts; html for a self-contained page with the heat maps.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@click.option("--tz", metavar="ZONE", help="Time zone of the hours of the week (an IANA name such as "
              "Europe/Paris).  [default: the catalogue's \"timezone\", else UTC]")
@database_option
def outcomes(since: dt.datetime | None, fmt: str, out: Path | None, tz: str | None,
             database_url: str | None) -> None:
    """Per destination: decisions, and the share of each outcome (reached, unreachable, hung up, rerouted,
    pending, unknown), overall and by hour of the week; worst destinations first (the highest share of settled
    calls not reached, i.e. unreachable, hung up or rerouted).

    The outcomes are joined from what Vapi reported (end-of-call reports, status and transfer updates) to the
    decisions kept in the store the service writes to (SWITCHBOARD_DATABASE_URL; unset, DATA_DIR/switchboard.db).

    \b
    Examples:
      switchboard outcomes
      switchboard outcomes --since 7d --format json
      switchboard outcomes --format html --out outcomes.html      # open it in a browser
    """
    from app.dataset.outcomes import summarise

    settings = command_settings(database_url)
    zone_, zone_words = time_zone(tz, settings)
    store = open_store(settings)
    assert store is not None
    with store:
        summary = summarise((joined for _, joined in joined_records(records(store, since))), zone_)
    meta = {"since": since.isoformat() if since else None, "time_zone": zone_words, "database": store.description}
    if fmt == "json":
        text = json.dumps({**summary.as_json(), **meta}, indent=2) + "\n"
    elif fmt == "html":
        from app.cli.outcomes_html import outcomes_page

        text = outcomes_page(summary, meta)
    else:
        text = table(summary, meta)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{out}: cannot write: {exc.strerror or exc}; choose a writable file")
    click.echo(f"wrote {out} ({len(summary.destinations)} destinations, {summary.total.decisions} decisions)",
               err=True)


COLUMNS = ("reached", "unreachable", "hung_up", "rerouted", "pending", "unknown")


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def table(summary: Summary, meta: dict[str, Any]) -> str:
    """Plain columns (they survive a pipe, a log and a narrow terminal), then each destination's worst hours."""
    from app.dataset.outcomes import hour_label

    head = ["destination", "decisions", *(c.replace("_", " ") for c in COLUMNS), "not reached"]
    rows = [head]
    for name, c in [*summary.destinations.items(), ("(all)", summary.total)]:
        not_reached = c.share_not_reached
        rows.append([name, str(c.decisions), *(share(getattr(c, col), c.decisions) for col in COLUMNS),
                     "-" if not_reached is None else f"{100 * not_reached:.0f}% of {c.settled}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"Outcomes since {meta['since'] or 'the first decision kept'}; worst first (share of settled "
             "calls unreachable, hung up or rerouted)."]
    for n, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in
                               enumerate(r)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not summary.destinations:
        lines.append("(no decisions kept in this period)")
    worst = []
    for name, hours in summary.by_hour.items():
        bad = sorted(((c.share_not_reached or 0.0, c.not_reached, h) for h, c in hours.items() if c.not_reached),
                     reverse=True)[:3]
        if bad:
            worst.append(f"  {name}: " + ", ".join(f"{hour_label(h)} {100 * s:.0f}% of {hours[h].settled}"
                                                    for s, _, h in bad))
    if worst:
        lines += ["", f"Worst hours of the week (not reached, of settled), in {meta['time_zone']}:", *worst]
    else:
        lines += ["", f"Hours of the week are in {meta['time_zone']}."]
    lines.append("Shares are of all decisions; pending: nothing heard yet; unknown: the call ended without a word "
                 "on this transfer. --format html shows every hour as a heat map.")
    return "\n".join(lines) + "\n"
