"""`switchboard init [DIR]`: a project folder of one's own, from the files shipped in the package (app/defaults)."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli import fail

# The settings a new operator is most likely to change, in the order .env.example lists them.
COMMON_SETTINGS = ("openai_api_key", "openai_base_url", "model", "router", "destinations", "prompt", "timeout",
                   "on_llm_failure", "secret", "host", "port", "log_format", "log_level", "record_dir",
                   "database_url", "data_dir")


def env_example() -> str:
    """The common settings, each commented out at its default, from app/settings.py's own fields (so the file
    cannot drift from the code): copied to .env, it changes nothing until a line is uncommented."""
    from app.settings import Settings

    names = Settings.env_names()
    lines = ["# Switchboard's common settings, each at its default. Copy this file to .env and uncomment what you",
             "# change; the environment wins over .env, and flags win over both. Relative paths are taken from the",
             "# folder of this file. Every setting: `switchboard --help` and the docs' settings table.", ""]
    for name in COMMON_SETTINGS:
        field = Settings.model_fields[name]
        default = field.default
        value = "" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        lines += [f"# {field.description}", f"# {names[name]}={value}", ""]
    return "\n".join(lines)


def project_files() -> dict[str, bytes]:
    """What init writes, by path relative to the project folder."""
    from app import defaults

    prompt = defaults.prompt("route.md")
    assert prompt is not None, "the package ships prompts/route.md"
    return {
        "destinations.json": defaults.sample_catalogue().read_bytes(),
        "prompts/route.md": prompt.read_bytes(),
        ".env.example": env_example().encode(),
        "requests/transfer-request.json": defaults.example("transfer-request.json").read_bytes(),
        "README.md": defaults.PROJECT_README.read_bytes(),
    }


@click.command()
@click.argument("directory", metavar="[DIR]", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a project folder in DIR (default: here; created if missing): the sample catalogue to edit
    (destinations.json), the routing prompt (prompts/route.md), the common settings (.env.example), an example
    request (requests/transfer-request.json) and a README.md explaining each catalogue field. Refuses to
    overwrite anything: if one of the files is there, nothing is written (exit 2).

    \b
    Examples:
      switchboard init my-switchboard
      switchboard init                 # in the current folder
    """
    files = project_files()
    taken = sorted(name for name in files if (directory / name).exists() or (directory / name).is_symlink())
    if taken:
        fail(f"{directory.absolute()} already has {', '.join(taken)}; nothing was written. Move them away, or run "
             "`switchboard init` in another folder")
    written: list[Path] = []
    try:
        for name, data in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as out:  # "x": never replace a file that appeared since the check above
                written.append(path)
                out.write(data)
    except OSError as exc:
        for path in written:  # all or nothing
            path.unlink(missing_ok=True)
        fail(f"cannot write the project in {directory.absolute()}: {exc}; nothing was kept")
    click.echo(f"Created a Switchboard project in {directory.absolute()}:")
    for name, what in (("destinations.json", "the catalogue: every place a call may go; edit it (see README.md)"),
                       ("prompts/route.md", "the routing prompt the LLM router reads"),
                       (".env.example", "the common settings at their defaults: copy to .env to change them"),
                       ("requests/transfer-request.json", "a request as Vapi sends it"),
                       ("README.md", "each catalogue field explained")):
        click.echo(f"  {name:<32} {what}")
    here = directory.resolve() == Path.cwd().resolve()
    click.echo("Next:" + ("" if here else f"\n  cd {directory}"))
    click.echo("  switchboard check                                  # as serve checks at start-up\n"
               "  switchboard route requests/transfer-request.json   # one decision, no server\n"
               "  switchboard serve                                  # answer webhooks on 127.0.0.1:8000")
