"""`switchboard forget CALL_ID`: delete everything kept about one call, now (retention deletes old calls on its own,
in the service)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from app.cli.outcomes import command_settings, database_option, open_store


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _line_is_the_calls(raw: bytes, call_id: str, needles: tuple[bytes, ...]) -> bool:
    if not any(n in raw for n in needles) and b"\\" not in raw:  # cheap: most lines are other calls'
        return False
    try:
        row = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    if not isinstance(row, dict):
        return False
    message = row.get("payload", {}).get("message", row.get("payload")) if isinstance(row.get("payload"), dict) \
        else None
    if isinstance(message, dict):
        for holder in (message.get("call"), message.get("chat")):
            if isinstance(holder, dict) and holder.get("id") == call_id:
                return True
    decision = row.get("decision")
    return isinstance(decision, dict) and decision.get("call_id") == call_id


def forget_recorded(directory: Path, call_id: str) -> dict[Path, int]:
    """Remove the call's lines from the recording files (calls-*.jsonl) in `directory`, each file rewritten under
    the lock recording and labelling take, by an atomic rename. {file: lines removed} for files that had some."""
    from app import files
    from app.dataset.labelling import write_atomically
    from app.dataset.locking import locked

    needles = (call_id.encode("utf-8", "surrogatepass"), json.dumps(call_id).encode("ascii")[1:-1])
    removed: dict[Path, int] = {}
    for path in sorted(directory.glob("calls-*.jsonl")):
        with locked(path):
            lines: list[bytes] = []
            with os.fdopen(files.open_regular(path), "rb") as f:
                while raw := f.readline(files.DATASET_LINE_BYTES + 1):
                    lines.append(raw)
            kept = [raw for raw in lines if not _line_is_the_calls(raw, call_id, needles)]
            if len(kept) != len(lines):
                write_atomically(path, kept)
                removed[path] = len(lines) - len(kept)
    return removed


@click.command("forget")
@click.argument("call_id")
@database_option
def forget(call_id: str, database_url: str | None) -> None:
    """Delete everything kept about the call CALL_ID (Vapi's call id, or a chat's id), now: its decisions and
    the events Vapi reported, in the store the service writes to (rows still waiting in a running service's
    buffer are not this process's: run it again after a minute if the call just ended), and its lines in the
    recording files of SWITCHBOARD_RECORD_DIR. Prints what was deleted; exit 0 when nothing was kept.

    Datasets you exported or copied elsewhere are yours to edit.

    \b
    Example:
      switchboard forget 0a8f3c5e-3f1b-4c9e-9d57-2f4b8a1c7e10
    """
    settings = command_settings(database_url)
    found = False
    store = open_store(settings, missing_ok=True)
    if store is None:
        click.echo(f"no store to delete from ({settings.database_url or settings.data_dir / 'switchboard.db'}: "
                   "nothing was ever kept there)")
    else:
        with store:
            gone = store.forget_sync(call_id)
        if gone.decisions or gone.events or gone.buffered:
            found = True
            click.echo(f"deleted {_plural(gone.decisions, 'decision')} and {_plural(gone.events, 'event')} of call "
                       f"{call_id} from {store.description}")
        else:
            click.echo(f"nothing kept about call {call_id} in {store.description}")
    if settings.record_dir is not None and settings.record_dir.is_dir():
        from app import files
        from app.errors import UserError

        try:
            removed = forget_recorded(settings.record_dir, call_id)
        except (OSError, files.FileProblem) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UserError(f"{settings.record_dir}: cannot rewrite a recording file ({why}); the "
                            "call's lines are still there: fix the permissions and run forget again") from None
        for path, n in removed.items():
            found = True
            click.echo(f"deleted {_plural(n, 'recorded line')} of call {call_id} from {path}")
        if not removed:
            click.echo(f"no recorded line of call {call_id} in {settings.record_dir}")
    if not found:
        click.echo(f"nothing was kept about call {call_id}; nothing deleted")
