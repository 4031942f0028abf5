"""The build step that ships a new project's starting files inside the package (app/defaults): the sample
catalogue, the routing prompts and the example requests are copied from the checkout's top level, their one source
of truth, into the wheel. Everything else about the package is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = [("destinations.json", "destinations.json"), ("prompts", "*.md"), ("examples", "*.json")]


class BuildPyWithDefaults(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's files in place
            return
        target = Path(self.build_lib) / "app" / "defaults"
        for source, pattern in SHIPPED:
            if pattern == source:  # a single file
                shutil.copyfile(ROOT / source, target / source)
                continue
            (target / source).mkdir(parents=True, exist_ok=True)
            for file in sorted((ROOT / source).glob(pattern)):
                shutil.copyfile(file, target / source / file.name)


setup(cmdclass={"build_py": BuildPyWithDefaults})
