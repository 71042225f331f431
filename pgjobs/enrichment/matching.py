"""Name matching: normalise artist/album names and pick the best fuzzy match (rapidfuzz ratio).

Scores are `rapidfuzz.fuzz.ratio / 100` (Indel similarity, 2·LCS / (len a + len b)) on normalised
names. `best_match` always scans every candidate and keeps the highest score: a wrong artist can
clear the threshold before the right one appears (Discogs returns `Goldplay` at 0.875 for
`Coldplay`), so "first above threshold" is never good enough.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from rapidfuzz import fuzz

T = TypeVar("T")

DEFAULT_THRESHOLD = 0.85

# MusicBrainz style uses typographic hyphens (JAY‐Z is U+2010) and apostrophes; Discogs uses ASCII.
_HYPHENS = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")
_APOSTROPHES = dict.fromkeys(map(ord, "\u2018\u2019\u02bc\u2032"), "'")
_DISCOGS_SUFFIX = re.compile(r"\s*\(\d+\)\s*$")  # 'Cold Play (2)': Discogs' same-name disambiguation
_AMPERSAND = re.compile(r"\s*&\s*")
_SPACES = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """Fold a name to its comparable form: 'Ella & Louis (2)' -> 'ella and louis', 'JAY‐Z' -> 'jay-z'."""
    text = _DISCOGS_SUFFIX.sub("", name)
    # NFKD splits accents off their letters ('Beyoncé' -> 'Beyonce') and folds compatibility forms.
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = text.casefold().translate(_HYPHENS).translate(_APOSTROPHES)
    text = _AMPERSAND.sub(" and ", text)
    return _SPACES.sub(" ", text).strip()


def similarity(a: str, b: str, *, normalize: bool = True) -> float:
    """Similarity in [0, 1]; with normalize=False only case is folded (the fixture's 'raw' score)."""
    if normalize:
        a, b = normalize_name(a), normalize_name(b)
    else:
        a, b = a.casefold(), b.casefold()
    return fuzz.ratio(a, b) / 100.0


@dataclass(frozen=True)
class MatchResult(Generic[T]):
    """Outcome of `best_match`: the top candidate even when it misses the threshold, and its score."""

    best: T | None  # highest-scoring candidate; None only when there were no candidates
    score: float  # best's score (0.0 without candidates): log it even when nothing matched
    threshold: float
    candidates_scored: int

    @property
    def matched(self) -> bool:
        return self.best is not None and self.score >= self.threshold

    @property
    def match(self) -> T | None:
        """The accepted candidate, or None when the best score is below the threshold."""
        return self.best if self.matched else None


def best_match(
    query: str,
    candidates: Iterable[T],
    *,
    key: Callable[[T], str | Iterable[str]] = str,
    threshold: float = DEFAULT_THRESHOLD,
) -> MatchResult[T]:
    """Score every candidate against `query` and return the best one.

    `key` gives a candidate's name, or several names (e.g. a Discogs artist's name plus its
    namevariations); a candidate scores as its best name. Ties keep the earlier candidate, i.e.
    the API's own relevance order.
    """
    wanted = normalize_name(query)
    best: T | None = None
    best_score = 0.0
    count = 0
    for candidate in candidates:
        count += 1
        names = key(candidate)
        if isinstance(names, str):
            names = (names,)
        score = max((fuzz.ratio(wanted, normalize_name(n)) / 100.0 for n in names), default=0.0)
        if best is None or score > best_score:
            best, best_score = candidate, score
    return MatchResult(best=best, score=best_score, threshold=threshold, candidates_scored=count)
