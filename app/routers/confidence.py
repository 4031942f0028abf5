"""How sure the model was of the id it wrote: the probability of that id, from the token log-probabilities.

The answer text is rebuilt from the tokens (their bytes when the server gives them, else their text), the
id's characters are located in it by offset, and the probabilities of every token that overlaps them are
multiplied. Offsets, not token boundaries, so it works whatever the tokenizer: `account_security` may be
one token, or `account`, `_`, `security`, or share a token with the quote before it.

Everything here reads what the model's server sent, so nothing here may raise on it or take more than
linear time: the text is searched with plain string operations over a bounded prefix (no regular
expression), and log-probabilities that cannot be used (bytes out of range, NaN, +inf, tokens that do not
spell the answer) give no figure, with the reason, instead of an exception.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass

SCAN_CHARS = 16_384  # how far into an answer its id is looked for: a real answer is a few hundred characters
MAX_TOKEN_BYTES = 1_024  # the longest token a real vocabulary has is a few hundred bytes
# A log-probability a little above 0 is float noise some servers send for a certain token (clamped to 0);
# one well above it is not a log-probability at all.
POSITIVE_SLACK = 1e-3
_JSON_SPACE = " \t\r\n"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # keeps offsets, unlike lower()


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    utf8: tuple[int, ...] | None = None  # the server's `bytes`, when it gives them

    @property
    def raw(self) -> bytes:
        """Raises ValueError when `utf8` holds a value that is not a byte (see `measure`)."""
        return bytes(self.utf8) if self.utf8 is not None else self.token.encode("utf-8", "surrogatepass")


def find_word(text: str, word: str, limit: int = SCAN_CHARS) -> int:
    """Offset of the first `word` in text[:limit] that is not part of a longer id or word (ASCII letters
    match either case; ids are lowercase ASCII), else -1. Linear in `limit`."""
    haystack = text[:limit].translate(_ASCII_LOWER)
    start = haystack.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not _is_word(haystack[start - 1])) and (end == len(haystack) or not _is_word(haystack[end])):
            return start
        start = haystack.find(word, start + 1)
    return -1


def _is_word(char: str) -> bool:
    return char.isalnum() or char in "_-"


def id_span(content: str, chosen: str, json_answer: bool) -> tuple[int, int] | None:
    """Character offsets of the chosen id in the answer text: the value of "destination" in a JSON answer
    (not a mention of it in the reason), or the id itself in a plain-text answer."""
    if not json_answer:
        start = find_word(content, chosen)
        return (start, start + len(chosen)) if start >= 0 else None
    limit = min(len(content), SCAN_CHARS)
    key = content.find('"destination"', 0, limit)
    while key >= 0:
        at = _skip_space(content, key + len('"destination"'), limit)
        if at < limit and content[at] == ":":
            at = _skip_space(content, at + 1, limit)
            if at < limit and content[at] == '"':
                close = content.find('"', at + 1, limit)
                if close < 0:
                    return None
                value = content[at + 1:close]
                if value.strip() == chosen:
                    start = at + 1 + value.index(chosen)
                    return start, start + len(chosen)
                key = content.find('"destination"', close + 1, limit)
                continue
        key = content.find('"destination"', key + 1, limit)
    return None


def _skip_space(text: str, at: int, limit: int) -> int:
    while at < limit and text[at] in _JSON_SPACE:
        at += 1
    return at


def measure(content: str, span: tuple[int, int], tokens: Sequence[TokenLogprob]) -> tuple[float | None, str]:
    """The product of the probabilities of the tokens overlapping `span`, or (None, why there is none)."""
    try:
        raws = [t.raw for t in tokens]
    except (ValueError, TypeError, OverflowError, UnicodeError):
        return None, "a token's bytes are not bytes"
    rebuilt = b"".join(raws)
    text = content.encode("utf-8", "surrogatepass")
    offset = rebuilt.find(text) if rebuilt != text else 0
    if offset < 0:
        return None, "the log-probabilities' tokens do not spell the answer"
    start = len(content[: span[0]].encode("utf-8", "surrogatepass")) + offset
    end = len(content[: span[1]].encode("utf-8", "surrogatepass")) + offset
    position, total, seen = 0, 0.0, False
    for token, raw in zip(tokens, raws, strict=True):
        size = len(raw)
        if position < end and position + size > start:
            logprob = token.logprob
            if logprob == -math.inf:
                return 0.0, ""  # the server says the id was impossible: probability 0, refused by any minimum
            if not math.isfinite(logprob) or logprob > POSITIVE_SLACK:
                return None, f"a log-probability of the id is {logprob!r}, not a number at or below 0"
            total += min(logprob, 0.0)
            seen = True
        position += size
        if position >= end:
            break
    if not seen:
        return None, "no token covers the id"
    return math.exp(total), ""


def probability(content: str, span: tuple[int, int], tokens: Sequence[TokenLogprob]) -> float | None:
    """The product of the probabilities of the tokens overlapping `span`; None when the tokens do not spell
    out the answer or cannot be used (then nothing can be said about the id)."""
    return measure(content, span, tokens)[0]
