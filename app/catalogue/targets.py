"""A catalogue entry's `destination` and `handoff`, checked before any caller is sent there: against Vapi's own
schema for its type (unknown fields refused), numbers against their country's numbering plan, SIP URIs by
their scheme. Each problem is one line naming the field and saying how to fix it.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from app.errors import did_you_mean

if TYPE_CHECKING:
    import jsonschema
    from jsonschema import ValidationError as ValidationError_

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
KINDS = {"number": "TransferDestinationNumber", "sip": "TransferDestinationSip",
         "assistant": "TransferDestinationAssistant"}
HANDOFF_KINDS = {"assistant": "HandoffDestinationAssistant", "squad": "HandoffDestinationSquad"}


@cache
def _vapi_schemas() -> dict[str, Any]:
    text = resources.files("app.vapi").joinpath("data/vapi_destinations.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def _strict(node: Any) -> Any:
    """Forbid unknown keys wherever Vapi lists an object's properties: Vapi silently ignores a typo such as
    `trasferPlan`, which would turn a warm transfer into a blind one."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(x) for x in node]
    return node


def _closure(defs: dict[str, Any], root: str) -> list[str]:
    """The schemas `root` refers to, directly or not: only those need making strict for it."""
    seen, stack = [root], [defs[root]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] not in seen:
                seen.append(ref[8:])
                stack.append(defs[ref[8:]])
            stack.extend(v for k, v in node.items() if k != "$ref")
        elif isinstance(node, list):
            stack.extend(node)
    return seen


@cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    import jsonschema  # here, not at the top: `switchboard --help` and the service's hot path need none of it

    defs = _vapi_schemas()["$defs"]
    schema = {"$defs": {name: _strict(defs[name]) for name in _closure(defs, schema_name)},
              "$ref": f"#/$defs/{schema_name}"}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _specific(err: ValidationError_) -> ValidationError_:
    """For a "not valid under any of the given schemas", the error inside the alternative that was meant: Vapi's
    alternatives are told apart by their `type`, so the one whose `type` matched says what is wrong."""
    while err.validator in ("oneOf", "anyOf") and err.context:
        by_alternative: dict[Any, list[ValidationError_]] = {}
        for sub in err.context:
            by_alternative.setdefault(sub.schema_path[0], []).append(sub)
        meant = [subs for subs in by_alternative.values()
                 if not any(s.validator in ("enum", "const") and list(s.relative_path) == ["type"] for s in subs)]
        candidates = meant[0] if len(meant) == 1 else list(err.context)
        from jsonschema.exceptions import best_match

        best = best_match(candidates)
        if best is None:
            break
        err = best
    return err


def destination_problem(dest: dict[str, Any], field: str = "destination") -> str | None:
    kinds = KINDS if field == "destination" else HANDOFF_KINDS
    kind = dest.get("type")
    if kind not in kinds:
        dynamic = " ('dynamic' would ask this service again)" if kind == "dynamic" else ""
        return f"{field}.type: must be one of {sorted(kinds)}, got {kind!r}{dynamic}"
    errors = sorted(_validator(kinds[str(kind)]).iter_errors(dest), key=lambda e: list(e.absolute_path))
    for err in map(_specific, errors):
        path = ".".join(str(p) for p in err.absolute_path)
        where = f"{field}.{path}" if path else field
        if err.validator == "additionalProperties":
            known = list(err.schema.get("properties", {})) if isinstance(err.schema, dict) else []
            extra = [k for k in err.instance if k not in known] if isinstance(err.instance, dict) else []
            hints = [f"{k!r}{did_you_mean(k, known)}" for k in extra]
            return f"{where}: unknown field {', '.join(hints)}; Vapi would silently ignore it"
        return f"{where}: {err.message}"
    if kind == "number" and dest.get("numberE164CheckEnabled", True):
        problem = number_problem(str(dest["number"]))
        if problem:
            return (f"destination.number: {dest['number']!r} {problem}; fix it, or set "
                    "\"numberE164CheckEnabled\": false for a number Vapi should dial as written")
    if kind == "sip":
        return sip_problem(str(dest["sipUri"]))
    return None


def number_problem(number: str) -> str | None:
    """Why `number` cannot be dialled (None if it can): E.164, a length its country's plan allows, and a number
    that plan assigns (phonenumbers, Google's libphonenumber metadata). Vapi would accept `+1602555013` (a
    digit short) and the call would fail at transfer time, with the caller on the line."""
    if not E164.match(number):
        return "is not E.164 (like +14155550142)"
    import phonenumbers  # here: only catalogue loading needs it

    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        parsed = None
    reason = phonenumbers.is_possible_number_with_reason(parsed) if parsed is not None else None
    if parsed is None or reason == phonenumbers.ValidationResult.INVALID_COUNTRY_CODE:
        return "does not start with a country calling code (like +1 or +44)"
    code = parsed.country_code or 0
    name = _plan_name(code)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        region = phonenumbers.region_code_for_country_code(code)
        meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        lengths = sorted(meta.general_desc.possible_length) if meta and meta.general_desc else []
        what = "too long" if reason == phonenumbers.ValidationResult.TOO_LONG else "too short"
        allowed = " or ".join(", ".join(map(str, lengths)).rsplit(", ", 1)) if lengths else "other lengths"
        return f"is {what} for +{code} ({name}: {allowed} digits after +{code})"
    if not phonenumbers.is_valid_number(parsed):
        # The plan is phonenumbers' copy of it: a range opened after that release is refused until an upgrade,
        # so the error names the data's version and the upgrade (docs/catalogue.md, "Checks at load").
        return (f"is not a valid number for +{code} ({name}): its plan has no such area code or range (in "
                f"phonenumbers {phonenumbers.__version__}'s data); check the digits after +{code}; for a range "
                "opened since, upgrade phonenumbers (pip install -U phonenumbers)")
    return None


def _plan_name(code: int) -> str:
    """'North America' for +1, else the country's English name (the first region sharing the code)."""
    if code == 1:
        return "North America"
    import phonenumbers

    region = phonenumbers.region_code_for_country_code(code)
    if region == "001":
        return "international services"
    try:  # the names phonenumbers' geocoder uses (0.3 s to import: paid only when a number is wrong)
        from phonenumbers.geodata.locale import LOCALE_DATA

        names = LOCALE_DATA[region]
        name = str(names["en"])
        return str(names[name[1:]]) if name.startswith("*") else name  # "*aa": the name kept under "aa"
    except (ImportError, KeyError):
        return region


def sip_problem(uri: str) -> str | None:
    """A SIP URI starts with `sip:` or `sips:` (RFC 3261, any case) and names someone after it; Vapi takes any
    string, and `finance@pbx.example` fails only when a caller is transferred."""
    scheme, colon, rest = uri.partition(":")
    if colon and scheme.lower() in ("sip", "sips") and rest.strip():
        return None
    example = f"sip:{uri.strip()}" if uri.strip() and not colon else "sip:frontdesk@pbx.example.com"
    return (f"destination.sipUri: {uri!r} is not a SIP URI: it must start with \"sip:\" or \"sips:\" and name "
            f"the destination after it, like \"{example}\"")
