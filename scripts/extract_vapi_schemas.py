"""Extract the Vapi schemas Switchboard needs from Vapi's published openapi.json.

Usage: python scripts/extract_vapi_schemas.py ../shared/vapi/openapi.json

Writes self-contained files (every `$ref` they need copied in, refs rewritten to `#/$defs/...`):
- app/vapi/data/vapi_destinations.json: the three transfer destination kinds and the two handoff destination kinds,
  used to validate the catalogue at load.
- app/vapi/data/vapi_message_types.json: every server message type Vapi defines (the metrics' fixed label set).
- tests/data/vapi_transfer_response.json and tests/data/vapi_handoff_response.json: the answers to a
  transfer-destination-request and a handoff-destination-request, which every answer the test suite
  produces is validated against.
A user's clone has no openapi.json, so these copies are what runs; re-run this when Vapi's API changes.

Corrections applied to Vapi's schema (see CORRECTIONS; each is also in the README's layout section):
- `TransferPlan.sipVerb` is declared `type: object` with a string enum, so no value validates and `"dial"`
  (which `callerId` on SIP destinations needs) could not be used: it becomes `type: string`.
- Vapi's SDK 3.0 (newer than this openapi.json) adds an optional display `name` to the number, SIP and
  assistant transfer destinations: it is added as an optional string.
- `ServerMessageResponseHandoffDestinationRequest` requires `destination`, but Vapi documents `{"error": ...}`
  as the answer when no handoff should be made: the answer must carry `destination` or `error`.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def closure(schemas: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen[name] = schemas[name]

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "$ref" and isinstance(value, str):
                        stack.append(value.rsplit("/", 1)[-1])
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(schemas[name])
    return seen


def rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else rewrite(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite(x) for x in node]
    return node


def bundle(spec: dict[str, Any], roots: list[str], top: dict[str, Any], source: str) -> dict[str, Any]:
    defs = closure(spec["components"]["schemas"], roots)
    return {
        "$comment": f"Extracted from Vapi's openapi.json ({source}) by scripts/extract_vapi_schemas.py; "
                    "do not edit by hand.",
        **top,
        "$defs": {k: rewrite(defs[k]) for k in sorted(defs)},
    }


TRANSFER_KINDS = ["TransferDestinationNumber", "TransferDestinationSip", "TransferDestinationAssistant"]
HANDOFF_KINDS = ["HandoffDestinationAssistant", "HandoffDestinationSquad"]
SIP_VERB = {"type": "string", "enum": ["refer", "bye", "dial"], "default": "refer",
            "description": "The SIP verb for the transfer (corrected: Vapi's schema says type object)."}
NAME = {"type": "string", "maxLength": 80,
        "description": "A display name for the destination (Vapi SDK 3.0; not yet in openapi.json)."}


def correct(schemas: dict[str, Any]) -> dict[str, Any]:
    """Vapi's schema bugs, fixed the same way every time this runs (see the module docstring)."""
    schemas = copy.deepcopy(schemas)
    schemas["TransferPlan"]["properties"]["sipVerb"] = SIP_VERB
    for kind in TRANSFER_KINDS:
        schemas[kind]["properties"].setdefault("name", NAME)
    handoff = schemas["ServerMessageResponseHandoffDestinationRequest"]
    handoff.pop("required", None)
    handoff["anyOf"] = [{"required": ["destination"]}, {"required": ["error"]}]
    return schemas


def message_types(schemas: dict[str, Any]) -> list[str]:
    types: set[str] = set()
    for name, schema in schemas.items():
        if name.startswith("ServerMessage") and not name.startswith("ServerMessageResponse"):
            types.update(schema.get("properties", {}).get("type", {}).get("enum", []))
    return sorted(types)


def write(path: str, doc: dict[str, Any]) -> None:
    (ROOT / path).write_text(json.dumps(doc, indent=1) + "\n")


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    spec["components"]["schemas"] = correct(spec["components"]["schemas"])
    source = "VapiAI/docs fern/apis/api/openapi.json, as of 2026-08-18"
    write("app/vapi/data/vapi_destinations.json", bundle(spec, TRANSFER_KINDS + HANDOFF_KINDS, {}, source))
    write("app/vapi/data/vapi_message_types.json", {
        "$comment": f"Every server message type in Vapi's openapi.json ({source}), by "
                    "scripts/extract_vapi_schemas.py; do not edit by hand.",
        "types": message_types(spec["components"]["schemas"])})
    # The handoff answer types `destination` as any object: its kinds come along to check it against.
    for kind, name, extra in (("transfer", "ServerMessageResponseTransferDestinationRequest", TRANSFER_KINDS),
                              ("handoff", "ServerMessageResponseHandoffDestinationRequest", HANDOFF_KINDS)):
        write(f"tests/data/vapi_{kind}_response.json",
              bundle(spec, [name, *extra], {"$ref": f"#/$defs/{name}"}, source))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/vapi/openapi.json"))
