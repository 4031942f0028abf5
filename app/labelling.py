"""`switchboard label FILE`: label recorded calls in the terminal.

Each label is written back at once by writing a temporary file next to FILE and renaming it over FILE,
so an interruption (Ctrl-C, a closed terminal, a crash) never loses or truncates a line.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .catalogue import NONE, CatalogueError
from .catalogue import load as load_catalogue
from .conversation import NoConversation, extract, render
from .payload import PayloadError, parse_json, parse_transfer_request
from .settings import Settings, SettingsError


def write_atomically(path: Path, lines: list[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def conversation_text(row: dict[str, Any]) -> str:
    try:
        request = parse_transfer_request(parse_json(json.dumps(row.get("payload", {})).encode()))
        return render(extract(request), 4000)
    except (PayloadError, NoConversation) as exc:
        return f"(no conversation: {exc})"


def label_file(path: Path, valid: set[str], ask: Callable[[str], str], show: Callable[[str], None]) -> dict[str, int]:
    """Go through unlabelled rows; returns counts of labelled, skipped and remaining rows."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    counts = {"labelled": 0, "skipped": 0}
    todo = [i for i, line in enumerate(lines) if line.strip() and not json.loads(line).get("expected")]
    for n, i in enumerate(todo, start=1):
        row = json.loads(lines[i])
        decided = (row.get("decision") or {}).get("chosen") or ""
        show(f"\n--- {n}/{len(todo)}  {row.get('id')}  tags: {', '.join(row.get('tags', [])) or '-'}")
        show(conversation_text(row))
        show(f"recorded decision: {decided or '(none recorded)'}")
        while True:
            answer = ask(f"[Enter] accept {decided or '-'} | an id | s skip | q quit").strip()
            if answer == "q":
                return {**counts, "remaining": len(todo) - n + 1}
            if answer == "s":
                counts["skipped"] += 1
                break
            label = answer or decided
            if label in valid:
                row["expected"] = label
                lines[i] = json.dumps(row, ensure_ascii=False) + "\n"
                write_atomically(path, lines)
                counts["labelled"] += 1
                break
            show(f"'{label}' is not an id; choose one of: {', '.join(sorted(valid))}")
    return {**counts, "remaining": 0}


@click.command("label")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def label_command(file: Path) -> None:
    """Label recorded calls: Enter accepts the recorded decision, an id corrects it, s skips, q quits.

    \b
    Example:
      SWITCHBOARD_RECORD_DIR=recordings switchboard serve   # calls are recorded as they come
      switchboard label recordings/calls-myhost-1234.jsonl
    """
    try:
        catalogue = load_catalogue(Settings.from_env().destinations)
    except (CatalogueError, SettingsError) as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        raise SystemExit(2) from None
    valid = {*catalogue.ids, NONE}
    try:
        counts = label_file(file, valid, lambda prompt: click.prompt(prompt, default="", show_default=False),
                            click.echo)
    except (KeyboardInterrupt, click.Abort, EOFError):
        click.echo("\nstopped; every label given so far is saved")
        return
    except json.JSONDecodeError as exc:
        click.secho(f"Error: {file}: a line is not JSON ({exc})", fg="red", err=True)
        raise SystemExit(2) from None
    click.echo(f"labelled {counts['labelled']}, skipped {counts['skipped']}, left {counts['remaining']}")
