"""PRUNE_ENRICHMENT_LOG through the real worker: the audit log's rows older than
PGJOBS_LOG_RETENTION_DAYS go, oldest first in bounded batches, and nothing else; 0 keeps them all.
The job is enqueued by hand on UNDER_TEST (the app declares it periodic; the scheduler is the queue's)."""

from __future__ import annotations

from enrichment_harness import UNDER_TEST, Pipeline

from pgjobs.enrichment.app import make_app
from pgjobs.enrichment.log_retention import PRUNE_ENRICHMENT_LOG


def add_log_rows(pipeline: Pipeline, count: int, days_ago: float) -> None:
    """`count` finished root jobs, each with its one log row, created `days_ago` days ago."""
    pipeline.db.execute(
        "WITH ids AS (SELECT nextval('pgjobs.job_id_seq') AS id FROM generate_series(1, %s)),"
        " j AS (INSERT INTO pgjobs.jobs (id, root_id, kind, queue, state, attempt, finished_at)"
        "       SELECT id, id, 'ENRICH_ALBUM', 'done', 'succeeded', 1, now() FROM ids RETURNING id)"
        " INSERT INTO public.enrichment_log (entity_type, operation, status, job_id, is_root_job, attempt, created_at)"
        " SELECT 'ALBUM', 'ENRICH_ALBUM', 'SUCCESS', j.id, true, 1, now() - make_interval(secs => %s)"
        " FROM j ORDER BY j.id", (count, days_ago * 86400))


async def run_prune(pipeline: Pipeline) -> int:
    task = make_app(pipeline.settings()).tasks[PRUNE_ENRICHMENT_LOG]
    job_id = task.options(queue=UNDER_TEST).enqueue(pipeline.db).id
    await pipeline.run(job_id)
    return job_id


def log_ages(pipeline: Pipeline) -> list[int]:
    return [r["days"] for r in pipeline.rows(
        "SELECT round(extract(epoch FROM now() - created_at) / 86400)::int AS days FROM public.enrichment_log ORDER BY id")]


async def test_it_deletes_rows_older_than_the_setting_in_batches_and_keeps_the_rest(pipeline: Pipeline) -> None:
    add_log_rows(pipeline, 23, days_ago=40)
    add_log_rows(pipeline, 5, days_ago=10)
    add_log_rows(pipeline, 2, days_ago=40)  # old but written after newer rows: the walk stops before them
    pipeline.overrides.update(log_retention_days=30, log_retention_batch=4)
    job_id = await run_prune(pipeline)
    assert log_ages(pipeline) == [10] * 5 + [40] * 2
    assert pipeline.job(job_id)["state"] == "succeeded"
    assert pipeline.logs(job_id) == []  # a maintenance kind writes no audit row


async def test_zero_days_keeps_the_log_forever(pipeline: Pipeline) -> None:
    add_log_rows(pipeline, 3, days_ago=400)
    pipeline.overrides.update(log_retention_days=0)
    await run_prune(pipeline)
    assert log_ages(pipeline) == [400] * 3


def test_the_app_declares_it_periodic_with_the_configured_cron(pipeline: Pipeline) -> None:
    pipeline.overrides.update(log_retention_cron="5 * * * *")
    schedule = make_app(pipeline.settings()).periodics[PRUNE_ENRICHMENT_LOG]
    assert (schedule.kind, schedule.cron) == (PRUNE_ENRICHMENT_LOG, "5 * * * *")
