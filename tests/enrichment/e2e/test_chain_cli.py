"""The enrichment chain end to end, through real processes only: `pgjobs sandbox serve` standing in
for the five APIs, `pgjobs enqueue enrich-album` / `pgjobs worker` / `pgjobs timeline` as
subprocesses on a fresh database, and the shared SQL invariant checker
(chain_support.assert_chain_invariants) after every run.

MusicBrainz's 1 request/s (and Discogs' 60/min) global limits set the pace: one run of the three
fixture albums makes 8 MusicBrainz and 8 Discogs calls, about 10 s of wall time.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from chain_support import (
    ALBUMS,
    COLLISION_COURSE,
    ELLA_AND_LOUIS,
    RUSH_OF_BLOOD,
    assert_chain_invariants,
    assert_paced,
    chain_violations,
    reaped,
    record_limiter_slots,
    unfinished_jobs,
)

pytestmark = pytest.mark.slow

# What one clean run of each fixture album produces: the root plus every descendant, by operation.
FAMILIES = {
    # Two credits, both found by a Discogs search; a front cover.
    COLLISION_COURSE: Counter(ENRICH_ALBUM=1, CACHE_ALBUM_COVER=1, ENRICH_ARTIST=2, DISCOGS_SEARCH_ARTIST=2,
                              DISCOGS_GET_ARTIST=2, CACHE_ARTIST_IMAGE=2),
    # A medium without tracks: the Spotify fallback; no front cover. Louis Armstrong's MusicBrainz
    # entry carries a Discogs url-relation, Ella Fitzgerald's does not (one search).
    ELLA_AND_LOUIS: Counter(ENRICH_ALBUM=1, SPOTIFY_TRACK_FALLBACK=1, ENRICH_ARTIST=2, DISCOGS_SEARCH_ARTIST=1,
                            DISCOGS_GET_ARTIST=2, CACHE_ARTIST_IMAGE=2),
    # Coldplay's Discogs id comes from its url-relation: DISCOGS_GET_ARTIST without a search.
    RUSH_OF_BLOOD: Counter(ENRICH_ALBUM=1, CACHE_ALBUM_COVER=1, ENRICH_ARTIST=1, DISCOGS_GET_ARTIST=1,
                           CACHE_ARTIST_IMAGE=1),
}
ROOT_STATUS = {COLLISION_COURSE: "SUCCESS", ELLA_AND_LOUIS: "PARTIAL_SUCCESS", RUSH_OF_BLOOD: "SUCCESS"}
TITLES = {COLLISION_COURSE: "Collision Course", ELLA_AND_LOUIS: "Ella and Louis",
          RUSH_OF_BLOOD: "A Rush of Blood to the Head"}


def _enqueue_albums(cli, env: dict[str, str], albums=ALBUMS) -> dict[str, int]:
    """`pgjobs enqueue enrich-album --mbid …` per album; the root job id of each."""
    roots = {}
    for mbid in albums:
        out = cli.json("enqueue", "enrich-album", "--mbid", mbid, env=env)
        assert out["created"] is True and uuid.UUID(out["album_id"])
        roots[mbid] = out["root_job_id"]
    assert len(set(roots.values())) == len(albums)
    return roots


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _assert_family_shape(rows: list[dict[str, Any]], root: int) -> None:
    """`pgjobs timeline ROOT --json`: the root's rows first, then every descendant by time."""
    roots = [r for r in rows if r["is_root_job"]]
    assert rows[:len(roots)] == roots and roots and all(r["job_id"] == root for r in roots)
    descendants = rows[len(roots):]
    assert all(r["parent_job_id"] == root and r["root_job_id"] == root for r in descendants)
    stamps = [_at(r["created_at"]) for r in descendants]
    assert stamps == sorted(stamps), "descendants are not in time order"


# --- 1. the whole chain through the CLI -----------------------------------------------------------


def test_three_albums_run_the_whole_chain_through_the_cli(cli, fresh_dsn, sandbox, sql):
    env = cli.env(**sandbox.env())
    roots = _enqueue_albums(cli, env)
    record_limiter_slots(fresh_dsn)

    worker = cli("worker", "--burst", env=env, timeout=60)  # default limits: musicbrainz 1/s, discogs 60/min
    assert worker.returncode == 0

    # Every job ran once and succeeded; the worker logged one JSON outcome line per job.
    jobs = sql(fresh_dsn, "SELECT id, root_id, state::text, attempt FROM pgjobs.jobs")
    assert {(state, attempt) for _, _, state, attempt in jobs} == {("succeeded", 1)}
    assert sorted(e["job_id"] for e in worker.outcomes()) == sorted(job_id for job_id, *_ in jobs)

    # The roots timeline: exactly the three roots, newest first, with their latest statuses.
    listed = cli.json("timeline", env=env)
    assert sorted(r["root_job_id"] for r in listed) == sorted(roots.values())
    assert [_at(r["first_activity_at"]) for r in listed] == sorted(
        (_at(r["first_activity_at"]) for r in listed), reverse=True)
    by_root = {r["root_job_id"]: r for r in listed}
    for mbid, root in roots.items():
        row = by_root[root]
        family = FAMILIES[mbid]
        assert (row["operation"], row["entity_name"], row["latest_status"], row["root_attempts"]) == (
            "ENRICH_ALBUM", TITLES[mbid], ROOT_STATUS[mbid], 1)
        assert row["descendants"] == row["descendants_success"] == sum(family.values()) - 1
        assert row["descendants_failed"] == row["descendants_no_data"] == row["descendants_skipped"] == 0
    # --status filters on the latest status.
    partial = cli.json("timeline", "--status", "PARTIAL_SUCCESS", env=env)
    assert [r["root_job_id"] for r in partial] == [roots[ELLA_AND_LOUIS]]

    # Each root's family: root first, then descendants by time, exactly the expected operations.
    for mbid, root in roots.items():
        rows = cli.json("timeline", str(root), env=env)
        _assert_family_shape(rows, root)
        assert Counter(r["operation"] for r in rows) == FAMILIES[mbid], mbid
        assert (rows[0]["status"], rows[0]["attempt"]) == (ROOT_STATUS[mbid], 1)
        assert {(r["status"], r["attempt"], r["error_code"]) for r in rows[1:]} == {("SUCCESS", 1, None)}
        # The timeline lists every job of the family (one attempt each), and only those.
        assert sorted(r["job_id"] for r in rows) == sorted(j for j, root_id, *_ in jobs if root_id == root)
    # A descendant's id is not a root: no timeline for it.
    child = next(j for j, root_id, *_ in jobs if root_id != j)
    refused = cli("timeline", str(child), env=env, check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == f"pgjobs: error: no log rows for root job {child}"

    # The catalog got filled.
    albums = dict((str(mbid), rest) for mbid, *rest in sql(fresh_dsn, """
        SELECT musicbrainz_id, title, enriched_at IS NOT NULL, cloudflare_image_id,
               (SELECT count(*) FROM album_artist aa WHERE aa.album_id = a.id),
               (SELECT count(*) FROM track t WHERE t.album_id = a.id),
               (SELECT count(*) FROM track t WHERE t.album_id = a.id AND t.duration_ms IS NOT NULL),
               (SELECT count(*) FROM track t WHERE t.album_id = a.id AND t.spotify_id IS NOT NULL)
        FROM album a"""))
    assert albums == {
        COLLISION_COURSE: ["Collision Course", True, f"pgjobs/album/{COLLISION_COURSE}", 2, 6, 6, 0],
        ELLA_AND_LOUIS: ["Ella and Louis", True, None, 2, 11, 11, 11],  # tracks from the Spotify fallback
        RUSH_OF_BLOOD: ["A Rush of Blood to the Head", True, f"pgjobs/album/{RUSH_OF_BLOOD}", 1, 11, 11, 0],
    }
    artists = sql(fresh_dsn, "SELECT name, discogs_id, cloudflare_image_id, enriched_at IS NOT NULL, data_quality "
                             "FROM artist ORDER BY name")
    assert [a[0] for a in artists] == ["Coldplay", "Ella Fitzgerald", "JAY‐Z", "Linkin Park", "Louis Armstrong"]
    for name, discogs_id, image_id, enriched, quality in artists:
        assert discogs_id and discogs_id.isdigit(), name
        assert (image_id, enriched, quality) == (f"pgjobs/artist/discogs-{discogs_id}", True, "HIGH"), name
    assert dict((a[0], a[1]) for a in artists)["Coldplay"] == "29735"  # from the url-relation

    # The worker honoured the default limits: 8 MusicBrainz calls (3 releases, 5 artists) at 1/s,
    # 8 Discogs calls (3 searches, 5 artists) at 60/min.
    musicbrainz, discogs = sandbox.requests("musicbrainz"), sandbox.requests("discogs")
    assert (len(musicbrainz), len(discogs)) == (8, 8)
    assert_paced(fresh_dsn, "musicbrainz", musicbrainz, 1.0)
    assert_paced(fresh_dsn, "discogs", discogs, 1.0)

    assert_chain_invariants(fresh_dsn)


# --- 3. kill -9 in the middle of the chain --------------------------------------------------------


def test_kill_9_mid_chain_a_second_worker_rescues_and_finishes_without_duplicates(cli, fresh_dsn, sandbox, sql,
                                                                                  wait_for):
    # Short leases: the killed worker's jobs become rescuable 2 s after its last heartbeat, and the
    # rescuer runs every lease/2. MusicBrainz stays at 1/s (it keeps jobs in flight); Discogs need not.
    env = cli.env(**sandbox.env(), PGJOBS_LEASE_SECONDS="2", PGJOBS_RATE_LIMITS="musicbrainz=1/s,discogs=50/s")
    roots = _enqueue_albums(cli, env)

    first = cli.start("worker", env=env)
    with reaped(first):
        # Mid-chain: some descendants done, others still in hand (ENRICH_ARTIST jobs wait their turn
        # at the MusicBrainz limiter while running, so there is always one to lose).
        def mid_chain() -> bool:
            ((done, running, waiting),) = sql(fresh_dsn, """
                SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'running'),
                       count(*) FILTER (WHERE state = 'queued')
                FROM pgjobs.jobs WHERE parent_id IS NOT NULL""")
            return done >= 1 and running >= 1 and running + waiting >= 2
        wait_for(mid_chain, 30, "some descendants succeeded while others are running")
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    # A COMMIT the worker sent just before dying may still be landing: read the jobs it lost once
    # its server connections are gone.
    wait_for(lambda: sql(fresh_dsn, """
        SELECT count(*) = 0 FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()""")[0][0],
        10, "the killed worker's connections to close")
    lost = {job_id: attempt for job_id, attempt in sql(
        fresh_dsn, "SELECT id, attempt FROM pgjobs.jobs WHERE state = 'running'")}
    assert lost, "nothing was running when the worker died"

    second = cli.start("worker", "--burst", env=env)
    with reaped(second):
        assert second.wait(timeout=60) == 0, second.stderr[-3000:]

    # The chain finished as if nothing had happened…
    assert sql(fresh_dsn, "SELECT DISTINCT state::text FROM pgjobs.jobs") == [("succeeded",)]
    for mbid, root in roots.items():
        operations = sql(fresh_dsn, "SELECT operation FROM enrichment_timeline WHERE root_job_id = %s "
                                    "AND error_code IS DISTINCT FROM 'LEASE_EXPIRED'", (root,))
        assert Counter(op for (op,) in operations) == FAMILIES[mbid], mbid
    assert sql(fresh_dsn, "SELECT count(*) FROM artist WHERE cloudflare_image_id LIKE 'pgjobs/artist/discogs-%'"
               ) == [(5,)]

    # …and each attempt the dead worker lost got exactly one FAILED LEASE_EXPIRED row, written by the
    # rescuer for that attempt, then the job's next attempt succeeded.
    expired = sql(fresh_dsn, """
        SELECT job_id, attempt, status FROM enrichment_log WHERE error_code = 'LEASE_EXPIRED' ORDER BY job_id""")
    assert {job_id: attempt for job_id, attempt, _ in expired} == lost
    assert {status for *_, status in expired} == {"FAILED"}
    assert sorted(sql(fresh_dsn, """
        SELECT j.id, j.attempt, e.value ->> 'outcome', (e.value ->> 'attempt')::int
        FROM pgjobs.jobs j, jsonb_array_elements(j.errors) e ORDER BY j.id""")) == sorted(
        (job_id, attempt + 1, "lease_expired", attempt) for job_id, attempt in lost.items())
    rescued = [(e["job_id"], e["attempt"], e["state"]) for e in second.logs() if e["msg"] == "rescued job"]
    assert sorted(rescued) == sorted((job_id, attempt, "queued") for job_id, attempt in lost.items())
    assert {(job_id, attempt + 1) for job_id, attempt in lost.items()} <= {
        (job_id, attempt) for job_id, attempt in sql(fresh_dsn, "SELECT job_id, attempt FROM enrichment_log "
                                                                "WHERE status IN ('SUCCESS', 'PARTIAL_SUCCESS')")}

    assert_chain_invariants(fresh_dsn)


# --- 4. four workers share the MusicBrainz limit -------------------------------------------------

UNKNOWN_RELEASES = 32  # each costs one MusicBrainz call (a 404: the root fails, not retried)


def test_four_workers_never_send_musicbrainz_calls_less_than_a_second_apart(cli, fresh_dsn, sandbox, sql,
                                                                            tmp_path):
    # MusicBrainz at its default 1/s; Discogs unthrottled so MusicBrainz is the bottleneck. Beside the
    # three fixture albums (8 calls), albums of releases the sandbox does not know (catalog stubs,
    # enqueued in bulk) make a backlog of 40 calls: the workers' first, cold calls weigh little.
    env = cli.env(**sandbox.env(), PGJOBS_RATE_LIMITS="musicbrainz=1/s,discogs=50/s")
    roots = _enqueue_albums(cli, env)
    stubs = sql(fresh_dsn, "INSERT INTO public.album (title, musicbrainz_id) SELECT 'unknown ' || n, "
                           "('e2e00000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid "
                           "FROM generate_series(1, %s) n RETURNING id", (UNKNOWN_RELEASES,))
    bulk = tmp_path / "albums.jsonl"
    bulk.write_text("".join(json.dumps({"album_id": str(album_id)}) + "\n" for (album_id,) in stubs))
    assert cli.json("enqueue", "ENRICH_ALBUM", "--from", str(bulk), env=env) == {"enqueued": UNKNOWN_RELEASES}
    record_limiter_slots(fresh_dsn)

    workers = [cli.start("worker", "--burst", "--concurrency", "4", env=env) for _ in range(4)]
    with reaped(*workers):
        codes = [w.wait(timeout=120) for w in workers]
    assert codes == [0, 0, 0, 0], [w.stderr[-2000:] for w in workers]

    families = sql(fresh_dsn, "SELECT DISTINCT state::text FROM pgjobs.jobs WHERE root_id = ANY(%s)",
                   (list(roots.values()),))
    assert families == [("succeeded",)]
    assert sql(fresh_dsn, "SELECT DISTINCT state::text, attempt FROM pgjobs.jobs WHERE root_id <> ALL(%s)",
               (list(roots.values()),)) == [("failed", 1)]
    assert sql(fresh_dsn, "SELECT count(*) FROM pgjobs.jobs") == [
        (sum(sum(f.values()) for f in FAMILIES.values()) + UNKNOWN_RELEASES,)]

    # The limiter is global (a row in PostgreSQL), not per process: four processes' 40 MusicBrainz
    # calls reached the API never less than a second apart, and it stayed busy (>= 0.97 calls/s).
    musicbrainz = sandbox.requests("musicbrainz")
    assert len(musicbrainz) == 8 + UNKNOWN_RELEASES
    assert_paced(fresh_dsn, "musicbrainz", musicbrainz, 1.0, min_rate=0.97, cold=4)  # 4 workers' first calls

    # The work was shared: worker_id is host:pid:random, and each process logged the jobs it ran.
    ran_by = Counter(int(worker_id.split(":")[1]) for (worker_id,) in sql(fresh_dsn,
                                                                          "SELECT worker_id FROM pgjobs.jobs"))
    assert set(ran_by) <= {w.pid for w in workers}
    for w in workers:
        assert len(w.outcomes()) == ran_by[w.pid]
    # On a loaded machine one process may start only after the others drained the queue (it then
    # exits 0 having run nothing), so ask for two of the four.
    assert len(ran_by) >= 2, ran_by

    assert_chain_invariants(fresh_dsn)


# --- 5. a provider fault, end to end --------------------------------------------------------------


def test_a_503_with_retry_after_snoozes_the_root_and_the_timeline_shows_both_attempts(cli, fresh_dsn, sandbox,
                                                                                     sql, wait_for):
    # MusicBrainz's own 503 body with Retry-After on the first request for the album's release: the
    # root snoozes (no attempt spent) and the global limiter holds every caller back. One album is
    # enough here, and Discogs runs unthrottled: the limits are not what this test is about.
    retry_after = 1
    sandbox.add_fault(match=f"/musicbrainz/ws/2/release/{COLLISION_COURSE}", status=503, retry_after=retry_after,
                      times=1)
    env = cli.env(**sandbox.env(), PGJOBS_RATE_LIMITS="musicbrainz=1/s,discogs=50/s")
    (root,) = _enqueue_albums(cli, env, [COLLISION_COURSE]).values()

    # A daemon worker, stopped once nothing is queued or running: `--burst` does not wait for jobs
    # scheduled later (the snoozed root), so it may exit with the chain unfinished.
    worker = cli.start("worker", env=env)
    with reaped(worker):
        wait_for(lambda: unfinished_jobs(fresh_dsn) == 0, 60, "every job to finish")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, worker.stderr[-3000:]
    assert sandbox.faults() == []  # spent

    # The sandbox saw the faulted request, then the retry no sooner than Retry-After allowed (both
    # the snooze and the limiter's penalty start after the 503 arrived, so no slack is needed).
    releases = sandbox.requests("musicbrainz")[:2]
    assert [(COLLISION_COURSE in r["path"], r["status"], r["outcome"]) for r in releases] == [
        (True, 503, "fault:status"), (True, 200, None)]
    assert releases[1]["monotonic"] - releases[0]["monotonic"] >= retry_after

    # The root's own rows: FAILED RATE_LIMITED (attempt 1), then SUCCESS (attempt 2); same job.
    rows = cli.json("timeline", str(root), env=env)
    _assert_family_shape(rows, root)
    assert [(r["job_id"], r["attempt"], r["status"], r["error_code"]) for r in rows if r["is_root_job"]] == [
        (root, 1, "FAILED", "RATE_LIMITED"), (root, 2, "SUCCESS", None)]
    assert rows[0]["metadata"]["retryAfter"] == retry_after
    assert Counter(r["operation"] for r in rows) == FAMILIES[COLLISION_COURSE] + Counter(ENRICH_ALBUM=1)
    assert {r["status"] for r in rows[2:]} == {"SUCCESS"}
    assert sql(fresh_dsn, "SELECT state::text, attempt, snoozes FROM pgjobs.jobs WHERE id = %s",
               (root,)) == [("succeeded", 2, 1)]

    # Still one root row: two attempts, latest SUCCESS.
    (row,) = cli.json("timeline", env=env)
    assert (row["root_job_id"], row["latest_status"], row["root_attempts"]) == (root, "SUCCESS", 2)
    assert (row["descendants"], row["descendants_failed"]) == (sum(FAMILIES[COLLISION_COURSE].values()) - 1, 0)

    assert_chain_invariants(fresh_dsn)


# --- 6. bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["timeline", "--status", "DONE"], "unknown status 'DONE'"),
    (["timeline", "424242"], "no log rows for root job 424242"),
    (["enqueue", "enrich-album"], "give exactly one of ALBUM_ID or --mbid"),
    (["enqueue", "enrich-album", str(uuid.UUID(int=1)), "--mbid", COLLISION_COURSE],
     "give exactly one of ALBUM_ID or --mbid"),
])
def test_bad_input_is_one_line_and_exit_2(cli, fresh_dsn, sql, args, message):
    ran = cli(*args, "--json", check=False)
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert ran.stdout == ""
    (line,) = ran.stderr.strip().splitlines()
    assert line.startswith("pgjobs: error: ") and message in line, line
    # Nothing was written: no album stub, no job.
    assert sql(fresh_dsn, "SELECT (SELECT count(*) FROM pgjobs.jobs), (SELECT count(*) FROM album)") == [(0, 0)]


# --- 2. the invariant checker itself -------------------------------------------------------------


def test_the_invariant_checker_catches_each_breach(fresh_dsn, sql):
    """A checker that never fires proves nothing: break each invariant once on a hand-made family."""
    sql(fresh_dsn, """
        INSERT INTO pgjobs.jobs (id, root_id, parent_id, kind, payload, state, attempt) VALUES
            (1, 1, NULL, 'ENRICH_ALBUM', '{"album_id": "a"}', 'succeeded', 1),
            (2, 1, 1, 'ENRICH_ARTIST', '{"artist_id": "b"}', 'succeeded', 2),
            (3, 3, NULL, 'ENRICH_ALBUM', '{"album_id": "c"}', 'succeeded', 1),
            (4, 1, 1, 'CACHE_ALBUM_COVER', '{"album_id": "a"}', 'queued', 0)""")
    sql(fresh_dsn, """
        INSERT INTO enrichment_log (entity_type, operation, status, job_id, parent_job_id, is_root_job, attempt)
        VALUES ('ALBUM', 'ENRICH_ALBUM', 'SUCCESS', 1, NULL, true, 1),
               ('ARTIST', 'ENRICH_ARTIST', 'FAILED', 2, 1, false, 1),
               ('ARTIST', 'ENRICH_ARTIST', 'SUCCESS', 2, 1, false, 2),
               ('ALBUM', 'ENRICH_ALBUM', 'SUCCESS', 3, NULL, true, 1)""")
    assert chain_violations(fresh_dsn) == {}

    breaches = {  # invariant -> (break it, repair it)
        "no job still running": (
            "UPDATE pgjobs.jobs SET state = 'running', lease_token = gen_random_uuid(), "
            "lease_expires_at = now() WHERE id = 4",
            "UPDATE pgjobs.jobs SET state = 'queued', lease_token = NULL, lease_expires_at = NULL WHERE id = 4"),
        "(a) log row is a root xor names a root": (
            "UPDATE enrichment_log SET parent_job_id = 2 WHERE job_id = 2 AND attempt = 2",
            "UPDATE enrichment_log SET parent_job_id = 1 WHERE job_id = 2 AND attempt = 2"),
        "(b) one log row per attempt": (  # (a unique index already stops a second row for an attempt)
            "UPDATE enrichment_log SET attempt = 3 WHERE job_id = 2 AND attempt = 1",
            "UPDATE enrichment_log SET attempt = 1 WHERE job_id = 2 AND attempt = 3"),
        "(c) job root_id = log coalesce(parent_job_id, job_id)": (
            "UPDATE enrichment_log SET parent_job_id = 3 WHERE job_id = 2 AND attempt = 1",
            "UPDATE enrichment_log SET parent_job_id = 1 WHERE job_id = 2 AND attempt = 1"),
        "(d) no duplicate children": (
            "INSERT INTO pgjobs.jobs (id, root_id, parent_id, kind, payload) "
            "VALUES (5, 1, 1, 'ENRICH_ARTIST', '{\"artist_id\": \"b\"}')",
            "DELETE FROM pgjobs.jobs WHERE id = 5"),
        "(e) enrichment_roots has one row per root": (
            "UPDATE enrichment_log SET is_root_job = false, parent_job_id = 1 WHERE job_id = 3",
            "UPDATE enrichment_log SET is_root_job = true, parent_job_id = NULL WHERE job_id = 3"),
    }
    for name, (breach, repair) in breaches.items():
        sql(fresh_dsn, breach)
        assert name in chain_violations(fresh_dsn), name
        sql(fresh_dsn, repair)
        assert chain_violations(fresh_dsn) == {}, name
