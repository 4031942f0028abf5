"""Routing prompt files (`prompts/*.md`): a TOML header between `+++` lines, then the template.

Placeholders: {{catalogue}} and {{conversation}} are required, {{hint}} and {{ids}} optional.
Everything before {{conversation}} is static for a catalogue, so it is rendered once and sent first
(as the system message) where providers' prompt caching applies; the conversation goes last.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.catalogue.destinations import NONE, Catalogue
from app.errors import UserError, first_error

PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
REQUIRED = ("catalogue", "conversation")
KNOWN = (*REQUIRED, "hint", "ids")
NONE_DESCRIPTION = "No destination fits: out of scope, unclear, or a request for a place not listed here."
REASON_MAX_CHARS = 160  # one short sentence; the schema says so, and max_tokens leaves room for no more
PADDING_TOKENS = 24  # room for whitespace a grammar lets a small model add around the JSON


class PromptError(UserError):
    """The prompt file cannot be used; the message says what to fix."""


class PromptHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    temperature: float | None = Field(0.0, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=4096)  # None: sized from the longest id (and the reason)
    reason: bool = False  # ask for a short reason before the choice


@dataclass(frozen=True)
class Prompt:
    header: PromptHeader
    static_template: str
    dynamic_template: str
    hash: str
    path: str

    @property
    def name(self) -> str:
        return self.header.name


@dataclass(frozen=True, slots=True)
class CompiledPrompt:
    """The prompt and output schema for one allowed set of ids, built once per catalogue."""
    system: str
    dynamic_template: str
    schema: dict[str, Any]
    allowed: tuple[str, ...]
    ids_text: str  # "billing, sales, ..., none", for {{ids}} and plain-text output modes
    reason: bool = False

    def messages(self, conversation: str, hint: str | None,
                 unreachable: tuple[tuple[str, str], ...] = ()) -> list[dict[str, str]]:
        hint_text = f"Hint from the voice assistant (a suggestion, not the answer): {hint}" if hint else ""
        user = _fill(self.dynamic_template, {"conversation": conversation, "hint": hint_text,
                                             "ids": self.ids_text}).strip()
        if unreachable:
            # The system part stays the same (and cached); the enum leaves these out, and the model is told why.
            gone = "; ".join(f"{i} (the transfer ended {why})" for i, why in unreachable)
            user += (f"\n\nEarlier in this call the caller could not be reached at: {gone}. Do not choose "
                     f"{'it' if len(unreachable) == 1 else 'them'}; choose the best remaining destination, or none.")
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def max_tokens(self, text: bool) -> int:
        return _max_tokens(self.allowed, self.reason, text)

    def for_allowed(self, allowed: tuple[str, ...]) -> CompiledPrompt:
        """The same prompt with a smaller enum (destinations left out for this call)."""
        if allowed == self.allowed:
            return self
        return CompiledPrompt(self.system, self.dynamic_template, output_schema(allowed, self.reason), allowed,
                              ", ".join((*allowed, NONE)), self.reason)


@functools.lru_cache(maxsize=1024)  # bounded: reloads bring new catalogues
def _max_tokens(allowed: tuple[str, ...], reason: bool, text: bool) -> int:
    """Enough for the longest allowed answer at one token per byte (no tokenizer does worse), plus room for
    padding: a small model under a grammar may add whitespace, and a cut-off answer is a lost one. Cached:
    the same few allowed sets come back on every request."""
    longest = max((*allowed, NONE), key=len)
    if text:
        return len(longest) + PADDING_TOKENS
    answer: dict[str, str] = {"destination": longest}
    if reason:
        answer = {"reason": "é" * REASON_MAX_CHARS, **answer}  # two bytes a character: Latin text at worst
    return len(json.dumps(answer, ensure_ascii=False).encode()) + PADDING_TOKENS


def _fill(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def parse(text: str, path: str = "prompt") -> Prompt:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "+++":
        raise PromptError(f"{path}: must start with a '+++' line, a TOML header (name = \"...\"), and '+++'")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        raise PromptError(f"{path}: the header has no closing '+++' line") from None
    try:
        header = PromptHeader.model_validate(tomllib.loads("".join(lines[1:end])))
    except tomllib.TOMLDecodeError as exc:
        raise PromptError(f"{path}: header is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = first_error(exc)
        raise PromptError(f"{path}: header field {first.where}: {first.message}") from None
    body = "".join(lines[end + 1:])
    found = PLACEHOLDER.findall(body)
    unknown = sorted(set(found) - set(KNOWN))
    if unknown:
        raise PromptError(f"{path}: unknown placeholders: {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    missing = [p for p in REQUIRED if p not in found]
    if missing:
        raise PromptError(f"{path}: missing placeholders: {', '.join('{{' + m + '}}' for m in missing)}")
    conv = next(m for m in PLACEHOLDER.finditer(body) if m.group(1) == "conversation")
    static, dynamic = body[: conv.start()], body[conv.start():]
    if "catalogue" not in PLACEHOLDER.findall(static):
        raise PromptError(f"{path}: put {{{{catalogue}}}} before {{{{conversation}}}}, so the static part is "
                          "sent first and can be cached")
    if "hint" in PLACEHOLDER.findall(static):
        raise PromptError(f"{path}: put {{{{hint}}}} after {{{{conversation}}}}: it changes per call")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Prompt(header, static, dynamic, digest, path)


def load(path: Path) -> Prompt:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"{path}: file not found; set SWITCHBOARD_PROMPT to a file in prompts/") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: cannot read: {exc}") from None
    return parse(text, str(path))


def catalogue_text(catalogue: Catalogue, allowed: tuple[str, ...]) -> str:
    lines = []
    for entry_id in allowed:
        entry = catalogue.get(entry_id)
        assert entry is not None
        line = f"- {entry.id}: {entry.description}"
        if entry.examples:
            line += " Callers say things like: " + "; ".join(f'"{x}"' for x in entry.examples)
        lines.append(line)
    lines.append(f"- {NONE}: {NONE_DESCRIPTION}")
    return "\n".join(lines)


def output_schema(allowed: tuple[str, ...], reason: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if reason:  # before the choice, so the model reasons first
        props["reason"] = {"type": "string", "maxLength": REASON_MAX_CHARS,
                           "description": "One short sentence: why this destination."}
    props["destination"] = {"type": "string", "enum": [*allowed, NONE]}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def compile_all(prompt: Prompt, catalogue: Catalogue) -> dict[tuple[str, ...], CompiledPrompt]:
    out: dict[tuple[str, ...], CompiledPrompt] = {}
    for allowed in catalogue.subsets():
        ids_text = ", ".join((*allowed, NONE))
        system = _fill(prompt.static_template, {"catalogue": catalogue_text(catalogue, allowed),
                                                "ids": ids_text}).strip()
        out[allowed] = CompiledPrompt(system, prompt.dynamic_template, output_schema(allowed, prompt.header.reason),
                                      allowed, ids_text, prompt.header.reason)
    return out
