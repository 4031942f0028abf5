"""`switchboard label FILE...`: label recorded calls in the terminal (the files' side is app/dataset/labelling.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.cli import catalogue_option, prompt_option, settings_from


@click.command("label")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--low-score", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="A decision scored below this counts as low confidence, and is offered early.")
@catalogue_option
@prompt_option
def label(files: tuple[Path, ...], low_score: float, catalogue: Path | None, prompt: Path | None) -> None:
    """Label recorded calls: Enter accepts the recorded answer, an id (any case) corrects it, #words add tags,
    u undoes the last label, s skips, q quits.

    A label names where the caller should end up. Each call shows its conversation, its time and the entries open
    then, the earlier transfers that failed, what the router chose, what was answered and its confidence. Labels
    are checked against the catalogue (named at the start, with its hash): label with the one the calls were
    recorded with. Tags (billing #angry #repeat) go into the row's tags, which eval reports accuracy by.

    Likely mistakes come first, so a few minutes of labelling go where they matter: in each file, calls whose
    outcome was rerouted (from `switchboard export`), then low confidence (a score below --low-score, or the
    decision's outcome low_confidence), then unreachable, then the rest, each group in file order.

    Recording writes one file per process; give them all. Calls recorded while you label are kept.

    \b
    Example:
      SWITCHBOARD_RECORD_DIR=recordings switchboard serve   # calls are recorded as they come
      switchboard label recordings/calls-*.jsonl
      switchboard label --catalogue destinations.json recordings/calls-*.jsonl
      switchboard export --out recordings/export.jsonl && switchboard label recordings/export.jsonl
    """
    from app.catalogue.destinations import NONE
    from app.dataset.labelling import KEYS, label_file
    from app.loading import load_catalogue_hashed

    # label reads no prompt; --prompt is taken (and checked like every setting) so that the same flags work on
    # every command
    settings = settings_from(destinations=catalogue, prompt=prompt)
    path = settings.destinations
    loaded, digest = load_catalogue_hashed(path, settings.origin("destinations"))  # found as every command finds it
    click.echo(f"Catalogue: {path} (hash {digest}, {len(loaded.ids)} entries); labels are checked against it.")
    click.echo(KEYS)
    # Piped answers (a script, a test) have none for "end of file: go on or undo?": only a person at a terminal
    # is asked it
    at_terminal = sys.stdin.isatty()
    valid = {*loaded.ids, NONE}
    totals = {"labelled": 0, "skipped": 0, "remaining": 0}
    for file in files:
        try:
            counts = label_file(file, valid, lambda prompt: click.prompt(prompt, default="", show_default=False),
                                click.echo, lambda text: click.secho(f"Warning: {text}", fg="yellow", err=True),
                                low_score, catalogue=loaded, catalogue_name=str(path), ask_at_end=at_terminal)
        except (KeyboardInterrupt, click.Abort, EOFError):
            click.echo("\nstopped; every label given so far is saved")
            return
        totals = {k: totals[k] + counts[k] for k in totals}
        if counts["remaining"] or counts.get("quit"):
            break
    click.echo(f"labelled {totals['labelled']}, skipped {totals['skipped']}, left {totals['remaining']}")
