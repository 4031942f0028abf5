"""The offline router: lexical ranking of catalogue entries against the conversation. No network, no model.

Each destination is a document made of its id's words, description and examples (examples weigh most:
they are callers' own phrasing). The query is the conversation with caller turns weighted over the
assistant's and recent turns over old ones, plus the transfer tool's hint. Scoring is BM25 with light
stemming; confidence compares the best score with the runner-up and with a floor that stands for `none`.
"""

from __future__ import annotations

import heapq
import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import ClassVar, Self

from app.catalogue.destinations import NONE, Catalogue
from app.routers.base import Capabilities, Choice, Parts, Query, Retry, RunnerUp

K1, B = 1.2, 0.5
FIELD_WEIGHTS = {"id": 2.0, "description": 1.0, "examples": 1.5}
CALLER, ASSISTANT, HINT = 1.0, 0.15, 1.5
RECENCY_FLOOR = 0.4  # the oldest caller turn still counts this much relative to the latest
NONE_FLOOR = 1.4  # score a destination must clearly beat to be confident
RUNNER_UPS = 3  # best-ranked ids a decision carries, to explain it
MATCHED_WORDS = 5  # words kept per runner-up: the ones that weighed most

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# The last words are about the act of transferring, which says nothing about where to.
STOPWORDS = frozenset("""
a about above after again all am an and any are as at be been being but by can could did do does doing don for
from get got had has have having he her here hi hello him his how i i'd i'm i've if in into is it it's its
just let like me my myself no nor not now of off on once only or other our out over please so some such than
thank thanks that that's the their them then there these they this those to too up uh um us very was we well
were what when where which while who why will with would yeah yes you your you're okay ok oh hey need want
going gonna call calling today sure right know think one also really actually maybe could someone talk speak
transfer transferring connect connecting put through dial route line nothing anything else
""".split())

# A change of mind makes earlier caller turns count for little; words right after "never mind" or
# "forget" are what the caller no longer wants; "most important" marks the need that wins.
CHANGE = re.compile(r"\b(actually|never ?mind|forget (it|that|about)|instead|rather|on second thought|"
                    r"changed my mind|you know what|don'?t need|no longer)\b")
DROP_AFTER = re.compile(r"\b(never ?mind|forget(?: about)?|instead of|no longer need|don'?t need)\s+((?:\S+\s*){1,3})")
PRIORITY = re.compile(r"\b(most important|main reason|real problem|mainly|priority|urgent)\b")
LATER = re.compile(r"\b(can wait|not urgent|later|maybe)\b")
CLAUSES = re.compile(r"[.;!?]+|,|\bbut\b|\balso\b")
EARLIER_AFTER_CHANGE = 0.25


def normalise(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def stem(word: str) -> str:
    """A light suffix stripper: enough to meet 'charged'/'charges'/'charging' at 'charg'."""
    if len(word) <= 4:
        return word
    for suffix in ("ational", "ations", "ation", "ments", "ment", "ness", "ings", "ing", "ies", "ied", "ers",
                   "er", "ed", "es", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                word += "y"
            break
    if word.endswith("e") and len(word) > 4:  # 'charge' meets 'charged' at 'charg'
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(normalise(text)) if w not in STOPWORDS and len(w) > 1]


@dataclass(frozen=True, slots=True)
class _Doc:
    id: str
    tf: dict[str, float]
    length: float


class OfflineIndex:
    """BM25 statistics over the catalogue, built once per catalogue."""

    def __init__(self, catalogue: Catalogue) -> None:
        docs = []
        for entry in catalogue.entries:
            tf: defaultdict[str, float] = defaultdict(float)
            for term in tokens(entry.id.replace("_", " ").replace("-", " ")):
                tf[term] += FIELD_WEIGHTS["id"]
            for term in tokens(entry.description):
                tf[term] += FIELD_WEIGHTS["description"]
            for example in entry.examples:
                for term in tokens(example):
                    tf[term] += FIELD_WEIGHTS["examples"]
            docs.append(_Doc(entry.id, dict(tf), sum(tf.values())))
        self.docs = {d.id: d for d in docs}
        self.avg_length = sum(d.length for d in docs) / max(1, len(docs))
        df: Counter[str] = Counter()
        for d in docs:
            df.update(d.tf.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}

    def matched(self, query: dict[str, float], entry_id: str, limit: int = MATCHED_WORDS) -> tuple[str, ...]:
        """The query's terms found in the entry, those that weighed most first (at most `limit`): catalogue
        words, stemmed, never more of the caller's text than the catalogue already holds."""
        tf = self.docs[entry_id].tf
        weights = {term: weight * self.idf[term] for term, weight in query.items() if term in tf}
        return tuple(heapq.nlargest(limit, weights, key=weights.__getitem__))

    def scores(self, query: dict[str, float], allowed: tuple[str, ...]) -> dict[str, float]:
        out: dict[str, float] = {}
        for entry_id in allowed:
            doc = self.docs[entry_id]
            norm = K1 * (1 - B + B * doc.length / self.avg_length)
            total = 0.0
            for term, weight in query.items():
                tf = doc.tf.get(term)
                if tf:
                    total += weight * self.idf[term] * tf * (K1 + 1) / (tf + norm)
            out[entry_id] = total
        return out


def _caller_terms(text: str, base: float, weights: defaultdict[str, float]) -> None:
    text = normalise(text)
    text = DROP_AFTER.sub(lambda m: m.group(1) + " ", text)  # "never mind the bill": the bill is not it
    clauses = [(c, tokens(c)) for c in CLAUSES.split(text)]
    # "most important, my internet is down": the marker lifts its clause and the next;
    # "a billing question but that can wait": the marker lowers its clause and the one before.
    priority = {j for i, (c, _) in enumerate(clauses) if PRIORITY.search(c) for j in (i, i + 1)}
    later = {j for i, (c, _) in enumerate(clauses) if LATER.search(c) for j in (i - 1, i)}
    factors = [2.0 if i in priority else 0.3 if i in later else 0.5 if priority else 1.0
               for i in range(len(clauses))]
    for (_, terms), factor in zip(clauses, factors, strict=True):
        for term in terms:
            weights[term] += base * factor


def query_terms(query: Query) -> dict[str, float]:
    """Term weights from the conversation: caller over assistant, recent over old, plus the hint."""
    turns = query.conversation.turns
    caller_positions = [i for i, t in enumerate(turns) if t.speaker == "caller"]
    last = caller_positions[-1] if caller_positions else 0
    changed_at = max((i for i in caller_positions if CHANGE.search(normalise(turns[i].text))), default=-1)
    weights: defaultdict[str, float] = defaultdict(float)
    for i, turn in enumerate(turns):
        if turn.speaker == "caller":
            recency = RECENCY_FLOOR + (1 - RECENCY_FLOOR) * (i / last if last else 1.0)
            if i < changed_at:
                recency *= EARLIER_AFTER_CHANGE
            _caller_terms(turn.text, CALLER * recency, weights)
        elif turn.speaker == "assistant":
            for term in tokens(turn.text):
                weights[term] += ASSISTANT
    if query.conversation.hint:
        for term in tokens(query.conversation.hint):
            weights[term] += HINT
    # Repeating a word helps, with diminishing returns; a weight under 1 is kept as it is.
    return {t: w if w <= 1 else 1 + math.log(w) for t, w in weights.items()}


@dataclass
class OfflineRouter:
    index: OfflineIndex
    threshold: float
    name: str = ""  # given by the registry (app.routers.registry), which owns router names

    # No model; its score is the margin of its best id over the runner-up, thresholded here. The offline rescue
    # would only repeat its own answer.
    capabilities: ClassVar[Capabilities] = Capabilities(scored_by="margin", rescuable=False)

    @classmethod
    def for_catalogue(cls, catalogue: Catalogue, threshold: float, name: str = "") -> OfflineRouter:
        return cls(OfflineIndex(catalogue), threshold, name)

    @classmethod
    def build(cls, parts: Parts, name: str) -> Self:
        return cls(OfflineIndex(parts.catalogue), parts.settings.offline_threshold, name)

    @property
    def model(self) -> str | None:
        return None

    def rank(self, query: Query) -> tuple[str, float, dict[str, float]]:
        """The best id (`none` when no word matched any entry), its confidence in [0, 1], and every allowed id's
        raw score."""
        best, confidence, scores, _, _ = self._ranked(query)
        return best, confidence, scores

    def _ranked(self, query: Query) -> tuple[str, float, dict[str, float], list[tuple[str, float]], dict[str, float]]:
        terms = query_terms(query)
        scores = self.index.scores(terms, query.allowed)
        # The top three are all a decision needs (best, runner-up, explanation): no full sort.
        top3 = heapq.nlargest(RUNNER_UPS, scores.items(), key=lambda kv: kv[1])
        best, top = top3[0]
        second = top3[1][1] if len(top3) > 1 else 0.0
        if top <= 0:  # nothing matched: no entry is a candidate (not the catalogue's first at 0.0)
            return NONE, 0.0, scores, [], terms
        return best, top / (top + second + NONE_FLOOR), scores, top3, terms

    async def choose(self, query: Query, timeout: float, *, retry: Retry | None = None,
                     hedge: bool = False) -> Choice:
        best, confidence, _, top3, terms = self._ranked(query)
        chosen = best if best != NONE and confidence >= self.threshold else NONE
        runner_ups = tuple(RunnerUp(i, round(score, 3), self.index.matched(terms, i)) for i, score in top3 if score > 0)
        return Choice(destination=chosen, score=round(confidence, 4), candidate=best if best != NONE else "",
                      runner_ups=runner_ups)
