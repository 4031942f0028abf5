"""Extract the Vapi schemas Switchboard needs from Vapi's published openapi.json.

Usage: python scripts/extract_vapi_schemas.py ../shared/vapi/openapi.json

Writes two self-contained files (every `$ref` they need copied in, refs rewritten to `#/$defs/...`):
- app/data/vapi_destinations.json: the three destination kinds, used to validate the catalogue at load.
- tests/data/vapi_transfer_response.json: the answer to a transfer-destination-request, which every answer
  the test suite produces is validated against.
A user's clone has no openapi.json, so these copies are what runs; re-run this when Vapi's API changes.
"""

from __future__ import annotations

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


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    source = "VapiAI/docs fern/apis/api/openapi.json, as of 2026-08-18"
    kinds = ["TransferDestinationNumber", "TransferDestinationSip", "TransferDestinationAssistant"]
    destinations = bundle(spec, kinds, {}, source)
    (ROOT / "app/data/vapi_destinations.json").write_text(json.dumps(destinations, indent=1) + "\n")
    response = bundle(
        spec, ["ServerMessageResponseTransferDestinationRequest", "HMACAuthenticationPlan", "BearerAuthenticationPlan"],
        {"$ref": "#/$defs/ServerMessageResponseTransferDestinationRequest"}, source)
    (ROOT / "tests/data/vapi_transfer_response.json").write_text(json.dumps(response, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/vapi/openapi.json"))
