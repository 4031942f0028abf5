"""An entry's `closed_message`: what the caller hears while the entry is closed and its `after_hours` entry answers
instead, with `{opens}` filled with when it opens again ("Billing is closed now; it opens tomorrow at 8:00 AM.").

`{opens}` is the only placeholder, filled by plain substitution (never str.format, which would read anything in
braces). Text in double braces, like `{{customer.number}}`, is Vapi's own templating (Liquid) and is passed to
Vapi as written; any other single brace is refused at load, so a misspelt `{open}` is caught by `check`, not
read out to a caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import meant, nearest

PLACEHOLDER = "opens"
MAX_LENGTH = 1000  # spoken to a caller on hold: anything longer is a mistake (a pasted document)
LATER = "at a later date"  # {opens} for a calendar with no opening in the coming year


class MessageError(Exception):
    """A malformed `closed_message`; the message names the field (the catalogue adds the entry)."""


@dataclass(frozen=True, slots=True)
class ClosedMessage:
    parts: tuple[str, ...]  # the text between the `{opens}` placeholders, braces for Vapi kept as written

    def fill(self, opens: str | None) -> str:
        return (opens or LATER).join(self.parts)


def parse(text: object, where: str = "closed_message") -> ClosedMessage:
    """Read the template once, at load; MessageError says what is wrong and where. A linear scan, no regex."""
    if not isinstance(text, str) or not text.strip():
        raise MessageError(f"{where}: must be the sentence the caller hears, like \"Billing is closed now; it "
                           "opens {opens}. Let me put you through to our front desk.\"")
    if len(text) > MAX_LENGTH:
        raise MessageError(f"{where}: {len(text)} characters; keep it under {MAX_LENGTH}: it is read to a caller")
    parts: list[str] = []
    start = i = 0
    while i < len(text):
        if text.startswith("{{", i):  # Vapi's variable: kept whole, braces and all
            end = text.find("}}", i + 2)
            if end < 0:
                raise MessageError(f"{where}: '{{{{' at character {i + 1} has no closing '}}}}' (Vapi's variables "
                                   "are written like {{customer.number}})")
            if text[i + 2:end].strip() == PLACEHOLDER:  # Vapi knows no `opens`: the caller would hear nothing
                raise MessageError(f"{where}: {{{{opens}}}} is Vapi's templating; Switchboard's placeholder takes "
                                   "one pair of braces: {opens}")
            i = end + 2
        elif text[i] == "{":
            end = text.find("}", i + 1)
            name = text[i + 1:end] if end >= 0 else ""
            if end < 0 or "{" in name:
                raise MessageError(f"{where}: '{{' at character {i + 1} is not closed; the placeholder is {{opens}}")
            if name != PLACEHOLDER:
                # Judged on the bare name (braces on both would make any {word} look close), and shown as it is
                # written, {opens}, in did_you_mean's words.
                guess = nearest(name.strip().lower(), [PLACEHOLDER])
                hint = meant(f"{{{guess}}}") if guess else " (the only placeholder is {opens})"
                raise MessageError(f"{where}: unknown placeholder {{{name}}}{hint}; Vapi's variables take two "
                                   "braces, like {{customer.number}}")
            parts.append(text[start:i])
            start = i = end + 1
        elif text[i] == "}":
            raise MessageError(f"{where}: '}}' at character {i + 1} closes nothing; the placeholder is {{opens}}")
        else:
            i += 1
    parts.append(text[start:])
    return ClosedMessage(tuple(parts))
