"""The files a new project starts from, shipped inside the package: the sample catalogue (destinations.json), the
routing prompts (prompts/*.md) and the example requests (examples/*.json), plus the project README that
`switchboard init` writes.

Their one source of truth is the checkout's top-level destinations.json, prompts/ and examples/: the build
(setup.py) copies them beside this module into the wheel, and in a checkout (an editable install, the tests) they
are read where they are. No second copy sits in the repository to drift.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_README = HERE / "project-readme.md"  # a file of this package itself, in a checkout and a wheel alike


def folder() -> Path:
    """Where the shipped files are: beside this module in an installed wheel, else the checkout's root."""
    return HERE if (HERE / "destinations.json").is_file() else HERE.parent.parent


def sample_catalogue() -> Path:
    return folder() / "destinations.json"


def prompt(name: str) -> Path | None:
    """The shipped prompt of this file name (route.md, route-with-reason.md), if there is one."""
    path = folder() / "prompts" / Path(name).name
    return path if path.is_file() else None


def example(name: str) -> Path:
    return folder() / "examples" / name
