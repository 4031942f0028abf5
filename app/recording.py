"""Recording answered transfer requests as an evaluation dataset (JSONL), redacted by default.

One file per process (`calls-<host>-<pid>.jsonl`), appended one line per call, so replicas and workers
never write to the same file.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from pathlib import Path
from typing import Any

from .decision import Decision
from .logs import PHONE

REDACTED = "<redacted>"
PHONE_NUMBER_KEEP = frozenset({"id", "provider", "name", "orgId"})  # drop numbers and account secrets


def redact(message: dict[str, Any]) -> dict[str, Any]:
    """A copy of the Vapi message without caller numbers, customer details or phoneNumber secrets."""
    out = copy.deepcopy(message)
    for holder in (out, out.get("call") if isinstance(out.get("call"), dict) else None):
        if holder is None:
            continue
        if isinstance(holder.get("customer"), dict):
            holder["customer"] = {k: REDACTED for k in holder["customer"]}
        if isinstance(holder.get("phoneNumber"), dict):
            holder["phoneNumber"] = {k: v for k, v in holder["phoneNumber"].items() if k in PHONE_NUMBER_KEEP}
    masked: dict[str, Any] = _mask_numbers(out)
    return masked


def _mask_numbers(node: Any) -> Any:
    if isinstance(node, str):
        return PHONE.sub(lambda m: REDACTED if sum(c.isdigit() for c in m.group(0)) >= 7 else m.group(0), node)
    if isinstance(node, dict):
        return {k: _mask_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask_numbers(v) for v in node]
    return node


class Recorder:
    def __init__(self, directory: Path, redact_payloads: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"calls-{socket.gethostname()}-{os.getpid()}.jsonl"
        self.redact = redact_payloads

    def record(self, message: dict[str, Any], decision: Decision) -> None:
        payload = redact(message) if self.redact else message
        call = message.get("call")
        line = {
            "id": (call.get("id") if isinstance(call, dict) else None) or f"rec-{os.urandom(6).hex()}",
            "expected": None,
            "tags": ["recorded"],
            "payload": {"message": payload},
            "decision": {"chosen": decision.chosen, "answered": decision.answered, "outcome": decision.outcome,
                         "router": decision.router, "model": decision.model},
        }
        # One write call per line: appends from one process stay whole.
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
