"""How sure the model was of the id it wrote: the probability of that id, from the token log-probabilities.

The answer text is rebuilt from the tokens (their bytes when the server gives them, else their text), the
id's characters are located in it by offset, and the probabilities of every token that overlaps them are
multiplied. Offsets, not token boundaries, so it works whatever the tokenizer: `account_security` may be
one token, or `account`, `_`, `security`, or share a token with the quote before it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_JSON_ID = re.compile(r'"destination"\s*:\s*"([^"]*)"')


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    utf8: tuple[int, ...] | None = None  # the server's `bytes`, when it gives them

    @property
    def raw(self) -> bytes:
        return bytes(self.utf8) if self.utf8 is not None else self.token.encode("utf-8")


def id_span(content: str, chosen: str, json_answer: bool) -> tuple[int, int] | None:
    """Character offsets of the chosen id in the answer text: the value of "destination" in a JSON answer
    (not a mention of it in the reason), or the id itself in a plain-text answer."""
    if json_answer:
        for match in _JSON_ID.finditer(content):
            if match.group(1).strip() == chosen:
                start = match.start(1) + match.group(1).index(chosen)
                return start, start + len(chosen)
        return None
    found = re.search(rf"(?<![\w-]){re.escape(chosen)}(?![\w-])", content, re.IGNORECASE)
    return (found.start(), found.end()) if found else None


def probability(content: str, span: tuple[int, int], tokens: Sequence[TokenLogprob]) -> float | None:
    """The product of the probabilities of the tokens overlapping `span`; None when the tokens do not spell
    out the answer (then nothing can be said about the id)."""
    text = content.encode("utf-8")
    rebuilt = b"".join(t.raw for t in tokens)
    offset = rebuilt.find(text) if rebuilt != text else 0
    if offset < 0:
        return None
    start = len(content[: span[0]].encode("utf-8")) + offset
    end = len(content[: span[1]].encode("utf-8")) + offset
    position, total, seen = 0, 0.0, False
    for token in tokens:
        size = len(token.raw)
        if position < end and position + size > start:
            if not math.isfinite(token.logprob):
                return 0.0 if token.logprob == -math.inf else None
            total += min(token.logprob, 0.0)
            seen = True
        position += size
        if position >= end:
            break
    return math.exp(total) if seen else None
