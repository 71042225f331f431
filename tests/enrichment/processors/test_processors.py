"""Every outcome of every processor, through the real worker, real httpx and the sandbox APIs.

Each test enqueues one job (ENRICH_ALBUM through pgjobs.enrichment.api, every other kind as a root
of its own), lets the real Worker run exactly that attempt, and checks the attempt's single
enrichment_log row (status, error code, reason, metadata), the job row (state, attempt, snoozes),
the catalog rows it touched and the children it queued with their root link. The harness checks
the lineage of every log row and, after each test, that no sandbox credential reached the log.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from importlib import resources

import pytest
from enrichment_harness import (COLDPLAY, COLDPLAY_DISCOGS, COLLISION_COURSE, ELLA_AND_LOUIS, ELLA_FITZGERALD,
                                JAY_Z, LINKIN_PARK, LOUIS_ARMSTRONG, MERGED_INTO_COLDPLAY, OVERFLOWING_RELEASE,
                                UNKNOWN_DISCOGS, VARIOUS_ARTISTS_RELEASE, WEAK_MATCH_ARTIST, Attempt, Pipeline)

from pgjobs.enrichment.kinds import Op
from pgjobs.enrichment.sandbox.images import to_sandbox_url

MB_RELEASE = "/musicbrainz/ws/2/release/"
DISCOGS_SEARCH = "/discogs/database/search"


def kinds(children: list[dict]) -> list[str]:
    return sorted(c["kind"] for c in children)


def assert_queued_children(pipeline: Pipeline, attempt: Attempt) -> list[dict]:
    """The attempt's children: linked to this job and to its root, queued, never run; named in metadata."""
    job = attempt.job
    children = pipeline.children(job["id"])
    for child in children:
        assert (child["parent_id"], child["root_id"]) == (job["id"], job["root_id"])
        assert (child["state"], child["attempt"]) == ("queued", 0)
    queued = attempt.metadata.get("childrenQueued", [])
    assert sorted((c["operation"], c["jobId"]) for c in queued) == sorted((c["kind"], c["id"]) for c in children)
    return children


def assert_failed_for_good(attempt: Attempt) -> None:
    assert (attempt.job["state"], attempt.job["attempt"], attempt.job["snoozes"]) == ("failed", 1, 0)
    assert attempt.job["max_attempts"] == 3  # failed with attempts left: not retried


def assert_queued_for_retry(attempt: Attempt) -> None:
    job = attempt.job
    assert (job["state"], job["attempt"], job["snoozes"]) == ("queued", 1, 0)  # one attempt spent
    assert job["run_at"] - job["attempted_at"] >= timedelta(seconds=1.5)  # backoff: 2 s ± 25 %


def discogs_primary_image(pipeline: Pipeline) -> str:
    """Coldplay's primary image on Discogs, as the sandbox serves it."""
    body = (resources.files("pgjobs.enrichment.sandbox") / "fixtures/discogs/artist_29735_coldplay.json").read_text()
    uri = next(i["uri"] for i in json.loads(body)["images"] if i["type"] == "primary")
    return to_sandbox_url(uri, pipeline.sandbox.url)


# -- ENRICH_ALBUM --------------------------------------------------------------------------------


async def test_enrich_album_success_saves_release_and_queues_artists_and_cover(pipeline: Pipeline):
    album_id = pipeline.album_stub(COLLISION_COURSE)
    root = pipeline.enrich_album(album_id)

    attempt = await pipeline.attempt(root)

    log = attempt.log
    assert (log["status"], log["error_code"], log["error_message"]) == ("SUCCESS", None, None)
    assert log["reason"] == "enriched from MusicBrainz; full tracklist"
    assert (log["is_root_job"], log["parent_job_id"], log["attempt"]) == (True, None, 1)
    assert (log["entity_type"], log["entity_id"], log["sources"]) == ("ALBUM", album_id, ["MUSICBRAINZ"])
    assert (log["data_quality_before"], log["data_quality_after"], log["triggered_by"]) == ("LOW", "MEDIUM", "tests")
    assert log["api_call_count"] == 1 and log["duration_ms"] >= 0
    assert {"title", "artists", "tracks", "musicbrainzId"} <= set(log["fields_enriched"])
    assert attempt.metadata | {"childrenQueued": None} == {
        "musicbrainzId": COLLISION_COURSE, "title": "Collision Course", "artistCredit": "JAY\u2010Z / Linkin Park",
        "releaseDate": "2004-11-30", "trackCount": 6, "mediaWithoutTrackData": [],
        "genres": ["hip hop", "alternative rock"], "coverArtFront": True, "childrenQueued": None}
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)

    album = pipeline.album(album_id)
    assert (album["title"], album["release_date"]) == ("Collision Course", "2004-11-30")
    assert album["data_quality"] == "MEDIUM"
    assert album["enriched_at"] is not None
    assert pipeline.album_artists(album_id) == [("JAY\u2010Z", " / "), ("Linkin Park", "")]
    tracks = pipeline.tracks(album_id)
    assert [(t["disc"], t["position"]) for t in tracks] == [(1, p) for p in range(1, 7)]
    assert all(t["duration_ms"] and t["musicbrainz_recording_id"] for t in tracks)

    children = assert_queued_children(pipeline, attempt)
    assert kinds(children) == ["CACHE_ALBUM_COVER", "ENRICH_ARTIST", "ENRICH_ARTIST"]
    artists = {pipeline.artist(uuid.UUID(c["payload"]["artist_id"]))["musicbrainz_id"]: c
               for c in children if c["kind"] == "ENRICH_ARTIST"}
    assert set(map(str, artists)) == {JAY_Z, LINKIN_PARK}
    assert all(c["dedupe_key"] == f"ENRICH_ARTIST:{c['payload']['artist_id']}" for c in artists.values())
    (cover,) = [c for c in children if c["kind"] == "CACHE_ALBUM_COVER"]
    assert cover["payload"]["album_id"] == str(album_id)


async def test_enrich_album_without_a_tracklist_is_partial_and_queues_spotify_fallback(pipeline: Pipeline):
    album_id = pipeline.album_stub(ELLA_AND_LOUIS)

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("PARTIAL_SUCCESS", None)
    assert "media [1] lack track data: Spotify fallback queued" in attempt.log["reason"]
    assert attempt.metadata["mediaWithoutTrackData"] == [1] and attempt.metadata["trackCount"] == 0
    assert attempt.metadata["coverArtFront"] is False
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    assert pipeline.tracks(album_id) == []
    assert pipeline.album_artists(album_id) == [("Ella Fitzgerald", " & "), ("Louis Armstrong", "")]
    children = assert_queued_children(pipeline, attempt)
    assert kinds(children) == ["ENRICH_ARTIST", "ENRICH_ARTIST", "SPOTIFY_TRACK_FALLBACK"]  # no cover to cache
    (fallback,) = [c for c in children if c["kind"] == "SPOTIFY_TRACK_FALLBACK"]
    assert (fallback["payload"]["album_id"], fallback["payload"]["disc"]) == (str(album_id), 1)


async def test_enrich_album_already_enriched_is_skipped_without_calling_musicbrainz(pipeline: Pipeline):
    album_id = pipeline.add_album("Collision Course", mbid=COLLISION_COURSE, data_quality="MEDIUM",
                                  enriched_at=datetime(2024, 5, 1, tzinfo=timezone.utc))

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("SKIPPED", None)
    assert "already enriched" in attempt.log["reason"]
    assert attempt.metadata == {"title": "Collision Course", "enrichedAt": "2024-05-01T00:00:00+00:00"}
    assert (attempt.log["data_quality_before"], attempt.log["data_quality_after"]) == ("MEDIUM", "MEDIUM")
    assert attempt.log["api_call_count"] == 0 and pipeline.sandbox.requests() == []
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    assert pipeline.children(attempt.job["id"]) == []


async def test_force_re_enriches_an_already_enriched_album(pipeline: Pipeline):
    before = datetime(2024, 5, 1, tzinfo=timezone.utc)
    album_id = pipeline.add_album("Old title", mbid=COLLISION_COURSE, enriched_at=before)

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id, force=True))

    assert (attempt.log["status"], attempt.log["api_call_count"]) == ("SUCCESS", 1)
    album = pipeline.album(album_id)
    assert album["title"] == "Collision Course" and album["enriched_at"] > before
    assert len(pipeline.tracks(album_id)) == 6
    children = assert_queued_children(pipeline, attempt)
    assert kinds(children) == ["CACHE_ALBUM_COVER", "ENRICH_ARTIST", "ENRICH_ARTIST"]
    assert all(c["payload"]["force"] is True for c in children)  # the refresh goes down the chain


async def test_force_re_enrich_of_an_album_with_a_cached_cover_keeps_it_high_quality(pipeline: Pipeline):
    album_id = pipeline.add_album("Collision Course", mbid=COLLISION_COURSE, data_quality="HIGH",
                                  cloudflare_image_id=f"pgjobs/album/{COLLISION_COURSE}",
                                  enriched_at=datetime(2024, 5, 1, tzinfo=timezone.utc))

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id, force=True))

    assert (attempt.log["status"], attempt.log["data_quality_before"]) == ("SUCCESS", "HIGH")
    assert attempt.log["data_quality_after"] == pipeline.album(album_id)["data_quality"] == "HIGH"


async def test_missing_album_fails_album_not_found_at_once(pipeline: Pipeline):
    album_id = pipeline.add_album("About to vanish")
    root = pipeline.enrich_album(album_id)
    pipeline.db.execute("DELETE FROM public.album WHERE id = %s", (album_id,))

    attempt = await pipeline.attempt(root)

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "ALBUM_NOT_FOUND")
    assert "not retried" in attempt.log["reason"] and str(album_id) in attempt.log["error_message"]
    assert attempt.metadata == {"requestedAlbumId": str(album_id)}
    assert attempt.log["entity_id"] == album_id
    assert_failed_for_good(attempt)
    assert pipeline.children(root) == [] and pipeline.sandbox.requests() == []


async def test_musicbrainz_404_for_an_unknown_release_fails_not_found_and_is_discarded(pipeline: Pipeline):
    album_id = pipeline.album_stub("00000000-1111-2222-3333-444444444444")

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "NOT_FOUND")
    assert "not retried" in attempt.log["reason"] and "HTTP 404" in attempt.log["error_message"]
    assert attempt.metadata == {"provider": "musicbrainz", "httpStatus": 404, "upstreamCode": None}
    assert_failed_for_good(attempt)
    assert pipeline.album(album_id)["enriched_at"] is None and pipeline.children(attempt.job["id"]) == []


async def test_musicbrainz_503_with_retry_after_snoozes_without_spending_an_attempt(pipeline: Pipeline):
    album_id = pipeline.album_stub(COLLISION_COURSE)
    pipeline.sandbox.add_fault(MB_RELEASE, status=503, retry_after=30)

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "RATE_LIMITED")
    assert "without spending an attempt" in attempt.log["reason"]
    assert attempt.metadata == {"provider": "musicbrainz", "httpStatus": 503, "upstreamCode": None,
                                "retryAfter": 30.0}
    job = attempt.job
    assert (job["state"], job["attempt"], job["snoozes"]) == ("queued", 1, 1)  # attempt - snoozes = 0 spent
    assert job["run_at"] - job["attempted_at"] >= timedelta(seconds=30)  # Retry-After honoured
    assert pipeline.album(album_id)["enriched_at"] is None and pipeline.children(job["id"]) == []


async def test_musicbrainz_5xx_fails_unavailable_and_is_queued_for_retry(pipeline: Pipeline):
    album_id = pipeline.album_stub(COLLISION_COURSE)
    pipeline.sandbox.add_fault(MB_RELEASE, status=500)

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "UNAVAILABLE")
    assert attempt.log["reason"] == "musicbrainz failed (UNAVAILABLE); will retry with backoff"
    assert attempt.metadata["httpStatus"] == 500
    assert_queued_for_retry(attempt)
    assert attempt.job["last_error"] == attempt.log["error_message"]


@pytest.mark.parametrize("fault", [{"kind": "html"}, {"kind": "truncated"}], ids=["html-error-page", "truncated-json"])
async def test_html_page_or_truncated_json_fails_bad_response(pipeline: Pipeline, fault: dict):
    album_id = pipeline.album_stub(COLLISION_COURSE)
    pipeline.sandbox.add_fault(MB_RELEASE, **fault)

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "BAD_RESPONSE")
    expected = "HTML error page instead of JSON" if fault["kind"] == "html" else "invalid JSON"
    assert expected in attempt.log["error_message"]
    assert_queued_for_retry(attempt)
    assert pipeline.album(album_id)["enriched_at"] is None


async def test_musicbrainz_slower_than_http_timeout_fails_timeout(pipeline: Pipeline):
    pipeline.overrides["http_timeout"] = 0.5
    album_id = pipeline.album_stub(COLLISION_COURSE)
    pipeline.sandbox.add_fault(MB_RELEASE, kind="delay", delay=10)

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "TIMEOUT")
    assert "timed out after 0.5s" in attempt.log["error_message"]
    assert_queued_for_retry(attempt)


async def test_various_artists_credit_queues_no_enrich_artist(pipeline: Pipeline):
    pipeline.serve_test_fixtures()
    album_id = pipeline.album_stub(VARIOUS_ARTISTS_RELEASE)

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert attempt.log["status"] == "SUCCESS"
    assert attempt.metadata["variousArtistsCredit"] is True
    assert attempt.metadata["artistCredit"] == "Various Artists"
    assert pipeline.album_artists(album_id) == [("Various Artists", "")]  # credited, never enriched
    assert len(pipeline.tracks(album_id)) == 2
    assert pipeline.children(attempt.job["id"]) == []  # no ENRICH_ARTIST; no cover; full tracklist


async def test_enrich_album_without_an_mbid_finds_its_release_by_fuzzy_title(pipeline: Pipeline):
    ella = pipeline.add_artist("Ella Fitzgerald", mbid=ELLA_FITZGERALD)
    album_id = pipeline.add_album("Ella and Louis", artists=[(ella, "")])

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert attempt.log["status"] == "PARTIAL_SUCCESS"  # the release found has no tracklist
    meta = attempt.metadata
    assert (meta["searchQuery"], meta["resultsCount"], meta["bestScore"], meta["bestCandidate"]) == (
        "Ella and Louis", 4, 1.0, "Ella and Louis")
    assert (meta["releaseGroupId"], meta["musicbrainzId"]) == ("195d8305-3ee0-4ae9-825f-5fd7d6ce6fb3", ELLA_AND_LOUIS)
    assert attempt.log["api_call_count"] == 2  # the search, then the release
    assert str(pipeline.album(album_id)["musicbrainz_id"]) == ELLA_AND_LOUIS


async def test_enrich_album_title_without_a_confident_match_is_no_data_available(pipeline: Pipeline):
    ella = pipeline.add_artist("Ella Fitzgerald", mbid=ELLA_FITZGERALD)
    album_id = pipeline.add_album("Ella and Louis Forever", artists=[(ella, "")])

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("NO_DATA_AVAILABLE", None)
    assert "confidence < 0.85" in attempt.log["reason"]
    assert attempt.metadata == {"searchQuery": "Ella and Louis Forever", "resultsCount": 4, "bestScore": 0.829,
                                "bestCandidate": "Ella & Louis Live"}
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    assert pipeline.album(album_id)["enriched_at"] is None and pipeline.children(attempt.job["id"]) == []


async def test_failed_database_write_logs_write_failed_and_keeps_none_of_the_attempts_effects(pipeline: Pipeline):
    pipeline.serve_test_fixtures()
    album_id = pipeline.album_stub(OVERFLOWING_RELEASE)  # a track length that overflows track.duration_ms

    attempt = await pipeline.attempt(pipeline.enrich_album(album_id))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "WRITE_FAILED")
    assert attempt.metadata == {"intendedStatus": "SUCCESS"}
    assert "NumericValueOutOfRange" in attempt.log["error_message"]
    assert_queued_for_retry(attempt)
    assert attempt.job["last_error"].startswith("completion write failed: NumericValueOutOfRange")
    album = pipeline.album(album_id)  # the attempt's writes rolled back whole: one transaction
    assert album["enriched_at"] is None and album["title"].startswith("MusicBrainz release ")
    assert pipeline.tracks(album_id) == [] and pipeline.album_artists(album_id) == []
    assert pipeline.rows("SELECT * FROM public.artist") == [] and pipeline.children(attempt.job["id"]) == []


async def test_retryable_failure_on_the_last_attempt_fails_the_job(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay", mbid=COLDPLAY)
    pipeline.sandbox.add_fault("/musicbrainz/ws/2/artist/", status=502)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)},
                                                      max_attempts=1))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "UNAVAILABLE")
    assert attempt.log["reason"] == "musicbrainz failed (UNAVAILABLE); no attempts left"
    assert (attempt.job["state"], attempt.job["attempt"]) == ("failed", 1)


# -- ENRICH_ARTIST -------------------------------------------------------------------------------


async def test_enrich_artist_with_a_discogs_url_relation_queues_discogs_get_artist(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay", mbid=COLDPLAY)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("SUCCESS", None)
    assert "no search needed" in attempt.log["reason"]
    assert attempt.metadata["discogsIdFromUrlRelation"] == COLDPLAY_DISCOGS
    assert attempt.metadata["relationsFound"] == 2
    assert "discogsId" in attempt.log["fields_enriched"]
    assert (attempt.log["entity_type"], attempt.log["entity_id"]) == ("ARTIST", artist_id)
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    artist = pipeline.artist(artist_id)
    assert (artist["discogs_id"], artist["data_quality"]) == (str(COLDPLAY_DISCOGS), "MEDIUM")
    assert artist["enriched_at"] is not None and "britpop" in artist["genres"]
    (child,) = assert_queued_children(pipeline, attempt)
    assert child["kind"] == "DISCOGS_GET_ARTIST"
    assert (child["payload"]["artist_id"], child["payload"]["discogs_id"]) == (str(artist_id), COLDPLAY_DISCOGS)


async def test_enrich_artist_without_a_discogs_relation_queues_discogs_search(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Linkin Park", mbid=LINKIN_PARK)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["reason"]) == ("SUCCESS", "enriched from MusicBrainz; searching Discogs")
    assert attempt.metadata["discogsIdFromUrlRelation"] is None
    assert pipeline.artist(artist_id)["discogs_id"] is None
    (child,) = assert_queued_children(pipeline, attempt)
    assert child["kind"] == "DISCOGS_SEARCH_ARTIST"
    assert (child["payload"]["artist_id"], child["payload"]["artist_name"]) == (str(artist_id), "Linkin Park")


async def test_enrich_artist_without_an_mbid_is_no_data_and_searches_discogs_by_name(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["api_call_count"]) == ("NO_DATA_AVAILABLE", 0)
    assert attempt.log["reason"] == "artist has no MusicBrainz id; searching Discogs by name"
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    (child,) = assert_queued_children(pipeline, attempt)
    assert (child["kind"], child["payload"]["artist_name"]) == ("DISCOGS_SEARCH_ARTIST", "Coldplay")


async def test_enrich_artist_with_a_known_uncached_image_also_queues_the_image_cache(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Linkin Park", mbid=LINKIN_PARK, image_url="https://example.org/lp.jpg")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)}))

    assert attempt.log["status"] == "SUCCESS"
    assert kinds(assert_queued_children(pipeline, attempt)) == ["CACHE_ARTIST_IMAGE", "DISCOGS_SEARCH_ARTIST"]


async def test_enrich_artist_of_a_merged_mbid_stores_the_surviving_mbid(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay", mbid=MERGED_INTO_COLDPLAY)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)}))

    assert attempt.log["status"] == "SUCCESS" and attempt.metadata["musicbrainzId"] == COLDPLAY
    assert str(pipeline.artist(artist_id)["musicbrainz_id"]) == COLDPLAY


async def test_enrich_artist_already_enriched_is_skipped(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay", mbid=COLDPLAY, enriched_at=datetime(2024, 1, 2, tzinfo=timezone.utc))

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["reason"]) == ("SKIPPED", "artist already enriched")
    assert attempt.metadata == {"artistName": "Coldplay", "enrichedAt": "2024-01-02T00:00:00+00:00"}
    assert attempt.log["api_call_count"] == 0 and pipeline.sandbox.requests() == []
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    assert pipeline.children(attempt.job["id"]) == []


async def test_artist_already_in_hand_under_another_root_is_skipped_naming_that_root(pipeline: Pipeline):
    album_id = pipeline.album_stub(COLLISION_COURSE)
    first = pipeline.enrich_album(album_id)
    await pipeline.run(first)  # its ENRICH_ARTIST children stay queued: the artists are in hand
    second = pipeline.enrich_album(album_id, force=True)
    await pipeline.run(second)
    first_artists = {c["payload"]["artist_id"]: c["id"] for c in pipeline.children(first)
                     if c["kind"] == "ENRICH_ARTIST"}

    await pipeline.run(burst=True, concurrency=10)  # both families, to the end

    rows = pipeline.rows("SELECT * FROM public.enrichment_timeline WHERE root_job_id = %s AND operation = %s"
                         " ORDER BY id", (second, "ENRICH_ARTIST"))
    assert len(rows) == 2
    for row in rows:
        assert (row["status"], row["parent_job_id"], row["is_root_job"]) == ("SKIPPED", second, False)
        assert row["reason"] == f"artist is already being enriched under root job {first}"
        assert row["metadata"]["otherRootJobId"] == first
        assert row["metadata"]["otherJobId"] == first_artists[str(row["entity_id"])]
    done = pipeline.rows("SELECT status FROM public.enrichment_timeline WHERE root_job_id = %s AND operation = %s",
                         (first, "ENRICH_ARTIST"))
    assert [r["status"] for r in done] == ["SUCCESS", "SUCCESS"]  # the first root did the work, once


async def test_missing_artist_fails_artist_not_found(pipeline: Pipeline):
    missing = uuid.uuid4()

    attempt = await pipeline.attempt(pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(missing)}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "ARTIST_NOT_FOUND")
    assert attempt.metadata == {"requestedArtistId": str(missing)}
    assert_failed_for_good(attempt)


# -- DISCOGS_SEARCH_ARTIST -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "discogs_id", "results"), [
    ("Coldplay", COLDPLAY_DISCOGS, 5),  # Goldplay (0.875) clears the threshold too and must not win
    ("Linkin Park", 8100202, 5),  # 'Linkin Parks' (0.957) comes FIRST and clears the threshold
], ids=["coldplay-not-goldplay", "linkin-park-not-the-first-hit"])
async def test_discogs_search_takes_the_best_match_not_the_first_above_threshold(pipeline: Pipeline, name: str,
                                                                                 discogs_id: int, results: int):
    artist_id = pipeline.add_artist(name)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_SEARCH_ARTIST,
                                                      {"artist_id": str(artist_id), "artist_name": name}))

    assert (attempt.log["status"], attempt.log["sources"]) == ("SUCCESS", ["DISCOGS"])
    assert attempt.metadata | {"childrenQueued": None} == {
        "searchQuery": name, "resultsCount": results, "bestScore": 1.0, "bestCandidate": name, "threshold": 0.85,
        "discogsId": str(discogs_id), "discogsTitle": name, "matchConfidence": 1.0, "childrenQueued": None}
    assert pipeline.artist(artist_id)["discogs_id"] == str(discogs_id)
    (child,) = assert_queued_children(pipeline, attempt)
    assert (child["kind"], child["payload"]["discogs_id"]) == ("DISCOGS_GET_ARTIST", discogs_id)


async def test_discogs_search_without_results_is_no_data_available(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Zzyzx Quartet Nonexistent")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_SEARCH_ARTIST, {
        "artist_id": str(artist_id), "artist_name": "Zzyzx Quartet Nonexistent"}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("NO_DATA_AVAILABLE", None)
    assert attempt.metadata == {"searchQuery": "Zzyzx Quartet Nonexistent", "resultsCount": 0}
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    assert pipeline.children(attempt.job["id"]) == []


async def test_discogs_search_with_only_weak_matches_is_no_data_with_the_best_score(pipeline: Pipeline):
    pipeline.serve_test_fixtures()
    artist_id = pipeline.add_artist(WEAK_MATCH_ARTIST)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_SEARCH_ARTIST, {
        "artist_id": str(artist_id), "artist_name": WEAK_MATCH_ARTIST}))

    assert attempt.log["status"] == "NO_DATA_AVAILABLE"
    assert attempt.log["reason"] == "no confident Discogs match (best 0.83 < 0.85)"
    assert attempt.metadata == {"searchQuery": WEAK_MATCH_ARTIST, "resultsCount": 4, "bestScore": 0.829,
                                "bestCandidate": "Lantern Orchestra (2)", "threshold": 0.85}
    assert pipeline.artist(artist_id)["discogs_id"] is None
    assert pipeline.children(attempt.job["id"]) == []


async def test_discogs_429_snoozes_the_search(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay")
    pipeline.sandbox.add_fault(DISCOGS_SEARCH, status=429)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_SEARCH_ARTIST,
                                                      {"artist_id": str(artist_id), "artist_name": "Coldplay"}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "RATE_LIMITED")
    assert attempt.metadata["retryAfter"] == 60.0 and attempt.metadata["httpStatus"] == 429
    assert (attempt.job["state"], attempt.job["attempt"], attempt.job["snoozes"]) == ("queued", 1, 1)
    assert pipeline.children(attempt.job["id"]) == []


async def test_discogs_search_without_a_token_fails_auth_failed_and_is_not_retried(pipeline: Pipeline):
    pipeline.overrides["discogs_token"] = None
    artist_id = pipeline.add_artist("Coldplay")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_SEARCH_ARTIST,
                                                      {"artist_id": str(artist_id), "artist_name": "Coldplay"}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "AUTH_FAILED")
    assert attempt.metadata["httpStatus"] == 401 and "not retried" in attempt.log["reason"]
    assert_failed_for_good(attempt)


# -- DISCOGS_GET_ARTIST --------------------------------------------------------------------------


async def test_discogs_get_artist_saves_profile_and_image_and_queues_the_image_cache(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay", mbid=COLDPLAY, discogs_id=str(COLDPLAY_DISCOGS))

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_GET_ARTIST, {
        "artist_id": str(artist_id), "discogs_id": COLDPLAY_DISCOGS}))

    assert (attempt.log["status"], attempt.log["reason"]) == ("SUCCESS", "fetched the Discogs artist")
    meta = attempt.metadata
    assert {"discogsId", "discogsTitle", "matchedProfile", "imagesFound", "genres"} <= meta.keys()
    assert (meta["discogsId"], meta["discogsTitle"], meta["imagesFound"]) == ("29735", "Coldplay", 2)
    assert meta["matchedProfile"].startswith("British rock band") and meta["genres"] == []
    assert meta["primaryImageUrl"] == discogs_primary_image(pipeline)
    assert attempt.log["fields_enriched"] == ["profile", "imageUrl"]
    assert (attempt.log["data_quality_before"], attempt.log["data_quality_after"]) == ("LOW", "HIGH")
    artist = pipeline.artist(artist_id)
    assert artist["image_url"] == discogs_primary_image(pipeline) and artist["profile"].startswith("British rock")
    (child,) = assert_queued_children(pipeline, attempt)
    assert child["kind"] == "CACHE_ARTIST_IMAGE"
    assert (child["payload"]["artist_id"], child["payload"]["source_provider"]) == (str(artist_id), "discogs")


async def test_discogs_get_artist_without_image_or_profile_is_partial_success(pipeline: Pipeline):
    pipeline.serve_test_fixtures()
    artist_id = pipeline.add_artist(WEAK_MATCH_ARTIST)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_GET_ARTIST, {
        "artist_id": str(artist_id), "discogs_id": 9100002}))

    assert attempt.log["status"] == "PARTIAL_SUCCESS"
    assert attempt.log["reason"] == "fetched the Discogs artist; it has no image; no profile"
    assert (attempt.metadata["imagesFound"], attempt.metadata["matchedProfile"]) == (0, None)
    assert (attempt.log["fields_enriched"], attempt.log["data_quality_after"]) == ([], "MEDIUM")
    assert pipeline.artist(artist_id)["discogs_id"] == "9100002"
    assert pipeline.children(attempt.job["id"]) == []  # no image: nothing to cache


async def test_discogs_get_artist_404_fails_not_found(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Nobody")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.DISCOGS_GET_ARTIST, {
        "artist_id": str(artist_id), "discogs_id": UNKNOWN_DISCOGS}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "NOT_FOUND")
    assert attempt.metadata["provider"] == "discogs" and attempt.metadata["httpStatus"] == 404
    assert_failed_for_good(attempt)
    assert pipeline.artist(artist_id)["image_url"] is None


# -- CACHE_ARTIST_IMAGE --------------------------------------------------------------------------


def add_coldplay_with_image(pipeline: Pipeline, **columns) -> uuid.UUID:
    return pipeline.add_artist("Coldplay", mbid=COLDPLAY, discogs_id=str(COLDPLAY_DISCOGS), profile="British band",
                               image_url=discogs_primary_image(pipeline), **columns)


async def test_cache_artist_image_uploads_to_cloudflare_under_a_deterministic_id(pipeline: Pipeline):
    artist_id = add_coldplay_with_image(pipeline)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ARTIST_IMAGE, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["sources"]) == ("SUCCESS", ["CLOUDFLARE"])
    meta = attempt.metadata
    assert meta["beforeUrl"] == discogs_primary_image(pipeline)
    assert meta["afterUrl"].endswith("/pgjobs/artist/discogs-29735/public")
    assert (meta["cacheLocation"], meta["cloudflareImageId"]) == ("cloudflare_images", "pgjobs/artist/discogs-29735")
    assert meta["imageSize"] > 0 and meta["imageFormat"] == "jpeg"
    assert (meta["sourceProvider"], meta["alreadyCached"]) == ("discogs", False)
    assert attempt.log["api_call_count"] == 2  # fetch the source, upload it
    assert pipeline.artist(artist_id)["cloudflare_image_id"] == "pgjobs/artist/discogs-29735"
    assert pipeline.sandbox.uploads() == ["pgjobs/artist/discogs-29735"]
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)


async def test_forced_cache_of_an_image_cloudflare_already_holds_is_success_already_cached(pipeline: Pipeline):
    artist_id = add_coldplay_with_image(pipeline)
    await pipeline.run(pipeline.enqueue(Op.CACHE_ARTIST_IMAGE, {"artist_id": str(artist_id)}))
    pipeline.sandbox.clear_requests()

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ARTIST_IMAGE,
                                                      {"artist_id": str(artist_id), "force": True}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("SUCCESS", None)
    assert attempt.metadata["alreadyCached"] is True
    assert attempt.metadata["cloudflareImageId"] == "pgjobs/artist/discogs-29735"
    assert "already in Cloudflare" in attempt.log["reason"]
    uploads = [r["status"] for r in pipeline.sandbox.requests() if r["api"] == "cloudflare" and r["method"] == "POST"]
    assert uploads == [409]  # Cloudflare's 5409 "already exists" counted as success
    assert pipeline.artist(artist_id)["cloudflare_image_id"] == "pgjobs/artist/discogs-29735"


async def test_cache_artist_image_already_cached_is_skipped(pipeline: Pipeline):
    artist_id = add_coldplay_with_image(pipeline, cloudflare_image_id="pgjobs/artist/discogs-29735")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ARTIST_IMAGE, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("SKIPPED", None)
    assert attempt.metadata["existingCloudflareImageId"] == "pgjobs/artist/discogs-29735"
    assert pipeline.sandbox.requests() == [] and pipeline.sandbox.uploads() == []


async def test_cache_artist_image_that_404s_fails_image_fetch_failed_and_marks_none(pipeline: Pipeline):
    missing = f"{pipeline.sandbox.url}/_img/i.discogs.com/no-such-image.jpeg"
    artist_id = pipeline.add_artist("Coldplay", discogs_id=str(COLDPLAY_DISCOGS), image_url=missing)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ARTIST_IMAGE, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "IMAGE_FETCH_FAILED")
    assert attempt.metadata["beforeUrl"] == missing and attempt.metadata["cacheLocation"] == "cloudflare_images"
    assert_failed_for_good(attempt)
    assert pipeline.artist(artist_id)["cloudflare_image_id"] == "none"  # the chain stops trying
    assert pipeline.sandbox.uploads() == []


async def test_cache_artist_image_whose_url_is_not_an_image_fails_rejected_and_marks_none(pipeline: Pipeline):
    not_an_image = f"{pipeline.sandbox.url}/discogs/artists/{COLDPLAY_DISCOGS}"  # JSON, not image/*
    artist_id = pipeline.add_artist("Coldplay", discogs_id=str(COLDPLAY_DISCOGS), image_url=not_an_image)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ARTIST_IMAGE, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("FAILED", "IMAGE_REJECTED")
    assert "not an image" in attempt.log["error_message"]
    assert_failed_for_good(attempt)
    assert pipeline.artist(artist_id)["cloudflare_image_id"] == "none" and pipeline.sandbox.uploads() == []


async def test_cache_artist_image_without_an_image_url_is_no_data_available(pipeline: Pipeline):
    artist_id = pipeline.add_artist("Coldplay", discogs_id=str(COLDPLAY_DISCOGS))

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ARTIST_IMAGE, {"artist_id": str(artist_id)}))

    assert (attempt.log["status"], attempt.log["reason"]) == ("NO_DATA_AVAILABLE", "no image URL known for the artist")
    assert pipeline.artist(artist_id)["cloudflare_image_id"] is None and pipeline.sandbox.requests() == []


# -- CACHE_ALBUM_COVER ---------------------------------------------------------------------------


async def test_cache_album_cover_uploads_the_front_cover(pipeline: Pipeline):
    album_id = pipeline.album_stub(COLLISION_COURSE)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ALBUM_COVER, {"album_id": str(album_id)}))

    assert (attempt.log["status"], attempt.log["sources"]) == ("SUCCESS", ["COVERARTARCHIVE", "CLOUDFLARE"])
    meta = attempt.metadata
    image_id = f"pgjobs/album/{COLLISION_COURSE}"
    assert (meta["cloudflareImageId"], meta["sourceProvider"]) == (image_id, "coverartarchive")
    assert meta["beforeUrl"].endswith(f"/release/{COLLISION_COURSE}/9473182611-500.jpg")
    assert meta["afterUrl"].endswith(f"/{image_id}/public") and meta["cacheLocation"] == "cloudflare_images"
    assert meta["imageSize"] > 0 and meta["imageFormat"] == "jpeg" and meta["alreadyCached"] is False
    album = pipeline.album(album_id)
    assert (album["cloudflare_image_id"], album["data_quality"]) == (image_id, "HIGH")
    assert album["cover_art_url"].endswith(f"/release/{COLLISION_COURSE}/9473182611.jpg")
    assert pipeline.sandbox.uploads() == [image_id]


async def test_cache_album_cover_without_cover_art_is_no_data_and_marks_none(pipeline: Pipeline):
    album_id = pipeline.album_stub(ELLA_AND_LOUIS)

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ALBUM_COVER, {"album_id": str(album_id)}))

    assert (attempt.log["status"], attempt.log["error_code"]) == ("NO_DATA_AVAILABLE", None)
    assert attempt.log["reason"] == "the Cover Art Archive has no art for this release"
    assert (attempt.job["state"], attempt.job["attempt"]) == ("succeeded", 1)
    assert pipeline.album(album_id)["cloudflare_image_id"] == "none"
    assert pipeline.sandbox.uploads() == []


async def test_cache_album_cover_already_cached_is_skipped(pipeline: Pipeline):
    album_id = pipeline.add_album("Collision Course", mbid=COLLISION_COURSE, cloudflare_image_id="pgjobs/album/x")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ALBUM_COVER, {"album_id": str(album_id)}))

    assert attempt.log["status"] == "SKIPPED"
    assert attempt.metadata == {"albumTitle": "Collision Course", "existingCloudflareImageId": "pgjobs/album/x"}
    assert pipeline.sandbox.requests() == []


async def test_cache_album_cover_of_an_album_without_an_mbid_is_no_data_available(pipeline: Pipeline):
    album_id = pipeline.add_album("Untraceable")

    attempt = await pipeline.attempt(pipeline.enqueue(Op.CACHE_ALBUM_COVER, {"album_id": str(album_id)}))

    assert (attempt.log["status"], attempt.log["reason"]) == ("NO_DATA_AVAILABLE",
                                                             "album has no MusicBrainz release id")
    assert pipeline.album(album_id)["cloudflare_image_id"] is None and pipeline.sandbox.requests() == []


# -- SPOTIFY_TRACK_FALLBACK ----------------------------------------------------------------------


async def test_spotify_fallback_fills_durations_and_spotify_ids(pipeline: Pipeline):
    ella = pipeline.add_artist("Ella Fitzgerald", mbid=ELLA_FITZGERALD)
    louis = pipeline.add_artist("Louis Armstrong", mbid=LOUIS_ARMSTRONG)
    album_id = pipeline.add_album("Ella and Louis", mbid=ELLA_AND_LOUIS, artists=[(ella, " & "), (louis, "")])

    attempt = await pipeline.attempt(pipeline.enqueue(Op.SPOTIFY_TRACK_FALLBACK,
                                                      {"album_id": str(album_id), "disc": 1}))

    assert (attempt.log["status"], attempt.log["reason"]) == ("SUCCESS", "filled 11 tracks from Spotify")
    assert attempt.metadata == {
        "searchQuery": "Ella and Louis", "searchArtist": "Ella Fitzgerald", "resultsCount": 3, "bestScore": 1.0,
        "disc": 1, "spotifyAlbumId": "176VGwd7ODjJVxT0DkQA7A", "spotifyAlbumName": "Ella and Louis",
        "matchConfidence": 1.0, "tracksFound": 11}
    tracks = pipeline.tracks(album_id)
    assert len(tracks) == 11 and all(t["duration_ms"] and t["spotify_id"] for t in tracks)
    first = tracks[0]
    assert (first["position"], first["title"], first["duration_ms"], first["spotify_id"]) == (
        1, "Can't We Be Friends?", 273000, "xrCQh2Y0Z2DsFFvcTkk12z")


async def test_spotify_fallback_without_a_match_is_no_data_available(pipeline: Pipeline):
    nobody = pipeline.add_artist("Nobody")
    album_id = pipeline.add_album("No Such Album Zz9", artists=[(nobody, "")])

    attempt = await pipeline.attempt(pipeline.enqueue(Op.SPOTIFY_TRACK_FALLBACK, {"album_id": str(album_id)}))

    assert (attempt.log["status"], attempt.log["sources"]) == ("NO_DATA_AVAILABLE", ["SPOTIFY"])
    assert attempt.metadata == {"searchQuery": "No Such Album Zz9", "searchArtist": "Nobody", "resultsCount": 0,
                                "bestScore": 0.0, "disc": None}
    assert pipeline.tracks(album_id) == []


# -- payloads and secrets ------------------------------------------------------------------------


async def test_invalid_payload_fails_the_job_with_a_row_and_the_worker_goes_on(pipeline: Pipeline):
    bad = pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": "nope"})
    artist_id = pipeline.add_artist("Coldplay", enriched_at=datetime(2024, 1, 2, tzinfo=timezone.utc))
    good = pipeline.enqueue(Op.ENRICH_ARTIST, {"artist_id": str(artist_id)})

    await pipeline.run(bad, good)

    failed = pipeline.written(bad)
    assert (failed.log["status"], failed.log["error_code"]) == ("FAILED", "INVALID_PAYLOAD")
    assert failed.log["reason"] == "invalid payload; not retried"
    assert failed.log["error_message"].startswith("artist_id:")
    assert (failed.log["entity_type"], failed.log["entity_id"]) == ("ARTIST", None)
    assert_failed_for_good(failed)
    after = pipeline.written(good)  # the same worker ran the next job
    assert (after.log["status"], after.job["state"]) == ("SKIPPED", "succeeded")


async def test_credentials_never_reach_the_log_or_the_job_errors_after_failures(pipeline: Pipeline):
    sandbox = pipeline.sandbox
    sandbox.add_fault(DISCOGS_SEARCH, status=401)  # the token WAS sent: Discogs refuses it
    sandbox.add_fault("/cloudflare/client/v4/", status=403)  # code 10000 authentication error
    sandbox.add_fault("/spotify-accounts/", status=400)  # invalid_client for the client secret
    coldplay = add_coldplay_with_image(pipeline)
    album_id = pipeline.add_album("Ella and Louis")
    jobs = [pipeline.enqueue(Op.DISCOGS_SEARCH_ARTIST, {"artist_id": str(coldplay), "artist_name": "Coldplay"}),
            pipeline.enqueue(Op.CACHE_ARTIST_IMAGE, {"artist_id": str(coldplay)}),
            pipeline.enqueue(Op.SPOTIFY_TRACK_FALLBACK, {"album_id": str(album_id)})]

    await pipeline.run(*jobs)

    attempts = [pipeline.written(j) for j in jobs]
    assert [a.log["status"] for a in attempts] == ["FAILED"] * 3
    assert all(a.log["error_message"] for a in attempts)
    sent = {r["api"]: r["headers"].get("authorization") for r in sandbox.requests() if r["method"] in ("GET", "POST")
            and r["api"] in ("discogs", "cloudflare")}
    assert sent == {"discogs": "Discogs REDACTED", "cloudflare": "Bearer REDACTED"}  # secrets were in play
    assert pipeline.leaked_secrets() == []
