"""The `switchboard` command. Each subcommand lives in a module of its own and is imported only when it
runs, so `switchboard --help` does not load the model client, the web framework or the schema validator.

A UserError (app/errors.py: a setting, the catalogue, the prompt, a body, a dataset, a directory) raised anywhere
below becomes one readable `Error:` line and exit code 2 here, in LazyGroup.invoke, and nowhere else.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from app import __version__
from app.errors import UserError, meant

if TYPE_CHECKING:
    from app.settings import Settings

# name: (module, attribute, one line for the command list)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("app.cli.serve", "serve", "Answer Vapi's destination requests (the webhook service)."),
    "route": ("app.cli.route", "route", "Decide one saved webhook body, as the service would."),
    "check": ("app.cli.check", "check", "Check settings, catalogue and prompt, as serve does at start-up."),
    "label": ("app.cli.label", "label", "Label recorded calls in the terminal."),
    "eval": ("app.cli.eval", "eval_command", "Measure prompts, models and routers on labelled calls."),
    "outcomes": ("app.cli.outcomes", "outcomes", "What became of the answered calls, per destination, worst first."),
    "export": ("app.cli.export", "export", "Write the recorded calls in the store as a dataset, with outcomes."),
    "forget": ("app.cli.forget", "forget", "Delete everything kept about one call."),
    "init": ("app.cli.init", "init", "Create a project folder: a catalogue, a prompt, settings, an example request."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):  # from the table above: listing them imports nothing
            formatter.write_dl([(name, line) for name, (_, _, line) in COMMANDS.items()])

    def invoke(self, ctx: click.Context) -> Any:
        """Runs the subcommand; the one place a UserError becomes an `Error:` line and exit code 2."""
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="switchboard")
def cli() -> None:
    """Switchboard answers Vapi's transfer- and handoff-destination requests with a destination from your
    catalogue (destinations.json), chosen by an LLM or, with no key, by the offline router.

    \b
    The loop, in a fresh clone:
      switchboard serve                                      # answer webhooks on 127.0.0.1:8000
      SWITCHBOARD_RECORD_DIR=recordings switchboard serve    # ... and record every answered call
      switchboard label recordings/calls-*.jsonl             # label the recorded calls
      switchboard eval datasets/sample.jsonl -r offline      # measure a router on labelled calls
      switchboard eval datasets/sample.jsonl -r offline -o eval-out --baseline eval-out/results.json

    Settings are environment variables (SWITCHBOARD_*, OPENAI_API_KEY, OPENAI_BASE_URL), or lines in a .env
    file in the working directory (or the one SWITCHBOARD_ENV_FILE names); flags override both. A new project
    folder: `switchboard init DIR`. `switchboard COMMAND --help` shows each command's examples;
    docs/operations.md lists every setting and its default.
    """


F = TypeVar("F", bound=Callable[..., Any])
FILE = click.Path(dir_okay=False, path_type=Path)


def catalogue_option(command: F) -> F:
    """--catalogue FILE, the same on every command that reads the catalogue (a `catalogue` keyword)."""
    return click.option("--catalogue", "catalogue", type=FILE, metavar="FILE",
                        help="Catalogue file.  [default: SWITCHBOARD_DESTINATIONS, else destinations.json]")(command)


def prompt_option(command: F) -> F:
    """--prompt FILE, the same on every command that reads one routing prompt (a `prompt` keyword)."""
    return click.option("-p", "--prompt", "prompt", type=FILE, metavar="FILE",
                        help="Routing prompt file.  [default: SWITCHBOARD_PROMPT, else prompts/route.md]")(command)


def fail(message: str) -> NoReturn:
    """Stop a command over something the user can fix that the CLI itself found (a flag, a file it was given)."""
    raise UserError(message)


# The flag each settings_from keyword comes from, where it is not the setting's own name (--port: port).
FLAGS = {"destinations": "--catalogue"}


def settings_from(*, warn_unknown: bool = True, **overrides: Any) -> Settings:
    """Settings from the environment and .env, flags (the keywords) winning; a bad value is a SettingsError (one
    line and exit 2) naming the variable, or the flag when a flag gave it; an unknown SWITCHBOARD_* name is a
    warning with a guess, printed first, so that a settings error does not hide the typo behind it.
    `warn_unknown=False`: the caller says it itself (serve logs it as an event, in the log's format)."""
    from app.settings import Settings

    if warn_unknown:
        warn_unknown_settings()
    flags = {field: FLAGS.get(field, "--" + field.replace("_", "-")) for field in overrides}
    return Settings.from_env(flags=flags, **overrides)


def warn_unknown_settings() -> None:
    """A `Warning:` line for each SWITCHBOARD_* name that is no setting, with a guess."""
    from app.settings import unknown_variables

    for name, guess in unknown_variables():
        click.secho(f"Warning: {name}{meant(guess)} is not a Switchboard setting; it is ignored", fg="yellow",
                    err=True)


def main() -> None:
    cli()
