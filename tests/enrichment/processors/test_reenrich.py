"""REENRICH_STALE_ALBUMS through the real worker: exactly the due albums, oldest first, bounded,
joined to an unfinished chain rather than duplicated, and all or nothing with the job.

The kind is enqueued on UNDER_TEST (the harness's worker serves only that queue), so the
ENRICH_ALBUM roots it starts on the default queue stay queued, untouched, for the test to read.
The scheduler that fires it is the queue's; here the job is enqueued by hand.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from enrichment_harness import UNDER_TEST, Pipeline

from pgjobs.enrichment.app import make_app
from pgjobs.enrichment.reenrich import REENRICH_STALE_ALBUMS, SCHEDULED_PRIORITY
from pgjobs.enrichment.settings import EnrichmentSettings
from pgjobs.errors import ConfigError
from pgjobs.sqlfiles import load_queries

Q = load_queries("enrichment/queries.sql")


def add_album(pipeline: Pipeline, title: str, *, days_ago: float | None, mbid: bool = True) -> uuid.UUID:
    """An album enriched `days_ago` days ago (None: never), with a MusicBrainz id unless mbid=False."""
    album_id = pipeline.add_album(title, mbid=str(uuid.uuid4()) if mbid else None)
    if days_ago is not None:
        pipeline.db.execute("UPDATE public.album SET enriched_at = now() - make_interval(secs => %s) WHERE id = %s",
                            (days_ago * 86400, album_id))
    return album_id


def enqueue_reenrich(pipeline: Pipeline) -> int:
    task = make_app(pipeline.settings()).tasks[REENRICH_STALE_ALBUMS]
    return task.options(queue=UNDER_TEST).enqueue(pipeline.db).id


def album_roots(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every ENRICH_ALBUM job, in the order they were enqueued."""
    return pipeline.rows("SELECT id, parent_id, root_id, queue, priority, dedupe_key, payload, state::text AS state"
                         " FROM pgjobs.jobs WHERE kind = 'ENRICH_ALBUM' ORDER BY id")


def album_ids(roots: list[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(r["payload"]["album_id"]) for r in roots]


async def test_it_starts_a_chain_for_exactly_the_due_albums_oldest_first(pipeline: Pipeline) -> None:
    add_album(pipeline, "Fresh", days_ago=1)
    stale_40 = add_album(pipeline, "Stale 40 days", days_ago=40)
    stale_31 = add_album(pipeline, "Stale 31 days", days_ago=31)
    never = add_album(pipeline, "Never enriched", days_ago=None)
    add_album(pipeline, "Never enriched, no MusicBrainz id", days_ago=None, mbid=False)

    job_id = enqueue_reenrich(pipeline)
    await pipeline.run(job_id)

    assert pipeline.job(job_id)["state"] == "succeeded"
    roots = album_roots(pipeline)
    assert album_ids(roots) == [never, stale_40, stale_31]
    for root, album_id in zip(roots, album_ids(roots)):
        assert (root["parent_id"], root["root_id"]) == (None, root["id"])  # each a root of its own
        assert root["dedupe_key"] == f"ENRICH_ALBUM:{album_id}"  # as `enqueue enrich-album` keys it
        assert (root["queue"], root["priority"], root["state"]) == ("default", SCHEDULED_PRIORITY, "queued")
        assert root["payload"]["triggered_by"] == "schedule"
    # An album enriched before is refreshed (force); one never enriched needs no force.
    assert [r["payload"]["force"] for r in roots] == [False, True, True]
    queued = {r["id"] for r in pipeline.rows("SELECT id FROM public.album WHERE reenrich_queued_at IS NOT NULL")}
    assert queued == {never, stale_40, stale_31}
    # A maintenance kind: no log row of its own, so it is no root of the timeline.
    assert pipeline.rows("SELECT * FROM public.enrichment_log") == []
    assert pipeline.rows("SELECT * FROM public.enrichment_roots") == []


async def test_a_run_is_bounded_and_the_next_run_takes_the_next_albums(pipeline: Pipeline) -> None:
    pipeline.overrides["reenrich_batch"] = 2
    albums = [add_album(pipeline, f"Stale {days} days", days_ago=days) for days in (35, 50, 45, 60, 40)]
    by_age = [albums[3], albums[1], albums[2], albums[4], albums[0]]  # 60, 50, 45, 40, 35 days

    for run in range(3):
        await pipeline.run(enqueue_reenrich(pipeline))
        assert album_ids(album_roots(pipeline)) == by_age[:2 * (run + 1)]

    await pipeline.run(enqueue_reenrich(pipeline))  # nothing left due: a run that starts nothing
    assert album_ids(album_roots(pipeline)) == by_age


async def test_an_unfinished_chain_is_joined_and_the_album_stays_due(pipeline: Pipeline) -> None:
    running = add_album(pipeline, "Has a chain in hand", days_ago=40)
    other = add_album(pipeline, "Stale too", days_ago=35)
    user_root = pipeline.enrich_album(running)  # queued on the default queue: nobody runs it here

    await pipeline.run(enqueue_reenrich(pipeline))

    roots = album_roots(pipeline)
    assert [r["id"] for r in roots if r["payload"]["album_id"] == str(running)] == [user_root]  # no second chain
    assert album_ids(roots) == [running, other]
    assert pipeline.album(running)["reenrich_queued_at"] is None  # joined, not started: due again next run
    assert pipeline.album(other)["reenrich_queued_at"] is not None


async def test_the_batch_commits_with_the_job_or_not_at_all(pipeline: Pipeline) -> None:
    add_album(pipeline, "Stale A", days_ago=40)
    add_album(pipeline, "Stale B", days_ago=50)
    # The batch's last statement (marking the albums queued) fails, after both roots were enqueued.
    pipeline.db.execute("""
        CREATE FUNCTION public.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
        CREATE TRIGGER test_refuse BEFORE UPDATE OF reenrich_queued_at ON public.album
        FOR EACH ROW EXECUTE FUNCTION public.test_refuse()""")
    job_id = enqueue_reenrich(pipeline)

    await pipeline.run(job_id)

    job = pipeline.job(job_id)
    assert job["state"] == "queued" and job["attempt"] == 1 and "refused by the test" in job["last_error"]
    assert album_roots(pipeline) == []  # the roots went with the failed write
    pipeline.db.execute("DROP TRIGGER test_refuse ON public.album")
    pipeline.db.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))  # skip the backoff

    await pipeline.run(job_id)

    assert pipeline.job(job_id)["state"] == "succeeded"
    assert len(album_roots(pipeline)) == 2


def test_the_schedule_comes_from_the_settings() -> None:
    assert make_app(EnrichmentSettings()).periodics[REENRICH_STALE_ALBUMS].cron == "0 3 * * *"  # daily by default
    app = make_app(EnrichmentSettings(reenrich_cron="*/10 * * * *"))
    schedule = app.periodics[REENRICH_STALE_ALBUMS]
    assert (schedule.cron, schedule.kind) == ("*/10 * * * *", REENRICH_STALE_ALBUMS)


def test_the_due_albums_query_reads_its_index(fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("""
            INSERT INTO public.album (title, musicbrainz_id, enriched_at)
            SELECT 'album ' || g, gen_random_uuid(),
                   CASE WHEN g % 10 = 0 THEN NULL ELSE now() - (g % 45) * interval '1 day' END
            FROM generate_series(1, 20000) g""")
        conn.execute("ANALYZE public.album")
        params = {"older_than": "30 days", "limit": 100}
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q["stale_albums"], params))
        due = conn.execute(Q["stale_albums"], params).fetchall()
    assert "album_stale_idx" in plan and "Sort" not in plan, plan
    assert len(due) == 100 and all(enriched_at is None for _, enriched_at in due)  # never enriched come first


def test_a_bad_setting_is_one_line_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("PGJOBS_REENRICH_BATCH", "0")
    with pytest.raises(ConfigError, match=r"^bad setting PGJOBS_REENRICH_BATCH: Input should be greater"):
        make_app()
