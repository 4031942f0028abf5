"""Print the settings table of docs/operations.md from app/settings.py, the one source of truth.

    python scripts/settings_table.py   # paste between the settings-table markers in docs/operations.md
tests/test_docs.py fails when the page's table differs from this output.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.settings import Settings


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    envs = Settings.env_names()
    for name, field in Settings.model_fields.items():
        env = envs[name]
        default = field.default
        shown = "unset" if default is None or default == "" else str(default).lower() if isinstance(default, bool) \
            else str(default)
        rows.append(f"| `{env}` | `{shown}` | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
