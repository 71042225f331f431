"""Name normalisation and best-match selection, with the scores the fixture README quotes."""

from __future__ import annotations

import pytest

from pgjobs.enrichment.matching import MatchResult, best_match, normalize_name, similarity

COLDPLAY_HITS = ["Coldplay", "Cold Play (2)", "Goldplay", "Coldplayers", "Coldcut"]  # Discogs' order


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("JAY\u2010Z", "jay-z"),  # MusicBrainz's U+2010 hyphen
        ("Wu\u2011Tang\u2012Clan", "wu-tang-clan"),
        ("A\u2013B\u2014C\u2212D", "a-b-c-d"),
        ("Ella & Louis", "ella and louis"),
        ("Ella&Louis", "ella and louis"),
        ("Cold Play (2)", "cold play"),
        ("Nihil (5)  ", "nihil"),
        ("Beyonc\u00e9", "beyonce"),
        ("Mot\u00f6rhead", "motorhead"),
        ("  Big   Pimpin\u2019 ", "big pimpin'"),
        ("STRASSE", "strasse"),
        ("Stra\u00dfe", "strasse"),  # casefold, not lower
    ],
)
def test_normalize_name(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


def test_disambiguation_suffix_is_only_stripped_at_the_end() -> None:
    assert normalize_name("(2) Cool") == "(2) cool"
    assert normalize_name("Area 51 (1999) Band") == "area 51 (1999) band"


@pytest.mark.parametrize(
    ("a", "b", "raw", "normalised"),
    [
        ("Coldplay", "Coldplay", 1.0, 1.0),
        ("Coldplay", "Goldplay", 0.875, 0.875),  # a wrong artist above the 0.85 threshold
        ("Coldplay", "Cold Play (2)", 0.762, 0.941),
        ("Coldplay", "Coldplayers", 0.842, 0.842),
        ("Coldplay", "Coldcut", 0.533, 0.533),
        ("Ella and Louis", "Ella & Louis", 0.846, 1.0),
        ("Ella and Louis", "Ella and Louis Again", 0.824, 0.824),
        ("Ella and Louis", "Ella & Louis Live", 0.710, 0.848),
        ("JAY\u2010Z", "Jay-Z", 0.8, 1.0),
    ],
)
def test_scores_match_the_fixture_readme(a: str, b: str, raw: float, normalised: float) -> None:
    assert similarity(a, b, normalize=False) == pytest.approx(raw, abs=5e-4)
    assert similarity(a, b) == pytest.approx(normalised, abs=5e-4)


def test_best_match_takes_the_best_score_not_the_first_above_threshold() -> None:
    # Goldplay clears 0.85, and so does 'Cold Play (2)' once normalised; Coldplay must still win.
    result = best_match("Coldplay", list(reversed(COLDPLAY_HITS)))
    assert result.best == "Coldplay"
    assert result.score == 1.0
    assert result.matched and result.match == "Coldplay"
    assert result.candidates_scored == 5


def test_best_match_when_the_wrong_artist_comes_first() -> None:
    hits = [{"id": 3362051, "title": "Goldplay"}, {"id": 5719404, "title": "Cold Play (2)"}, {"id": 29735, "title": "Coldplay"}]
    result = best_match("Coldplay", hits, key=lambda h: h["title"])
    assert result.best == {"id": 29735, "title": "Coldplay"}


def test_normalised_suffix_candidate_wins_when_exact_is_absent() -> None:
    result = best_match("Coldplay", ["Goldplay", "Cold Play (2)", "Coldcut"])
    assert result.best == "Cold Play (2)"
    assert result.score == pytest.approx(0.941, abs=5e-4)


def test_below_threshold_reports_the_best_score_and_no_match() -> None:
    result = best_match("Coldplay", ["Coldplayers", "Coldcut"])
    assert not result.matched
    assert result.match is None
    assert result.best == "Coldplayers"  # still reported, for the NO_DATA_AVAILABLE metadata
    assert result.score == pytest.approx(0.842, abs=5e-4)


def test_threshold_is_inclusive_and_configurable() -> None:
    assert best_match("Coldplay", ["Goldplay"], threshold=0.875).matched
    assert not best_match("Coldplay", ["Goldplay"], threshold=0.9).matched


def test_album_title_ampersand() -> None:
    titles = ["Ella and Louis Again", "Ella & Louis Live", "Ella & Louis"]
    result = best_match("Ella and Louis", titles)
    assert (result.best, result.score) == ("Ella & Louis", 1.0)


def test_key_may_return_several_names() -> None:
    artists = [("Coldplay", ["Cold Play", "Goldplay"]), ("Coldcut", [])]
    result = best_match("The Coldplay", artists, key=lambda a: [a[0], *a[1]])
    assert result.best[0] == "Coldplay"
    by_variation = best_match("Goldplay", artists, key=lambda a: [a[0], *a[1]])
    assert by_variation.best[0] == "Coldplay" and by_variation.score == 1.0


def test_ties_keep_the_earlier_candidate() -> None:
    result = best_match("Louis Armstrong", ["Louis Armstrong", "Louis Armstrong (2)"])
    assert result.best == "Louis Armstrong"
    reordered = best_match("Louis Armstrong", ["Louis Armstrong (2)", "Louis Armstrong"])
    assert reordered.best == "Louis Armstrong (2)"


def test_no_candidates() -> None:
    result = best_match("Coldplay", [])
    assert result == MatchResult(best=None, score=0.0, threshold=0.85, candidates_scored=0)
    assert not result.matched
