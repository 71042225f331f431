"""Failed attempts: per-job timeouts, tracebacks in the errors history and the log, on_error hooks."""

import asyncio
import logging
import threading

import psycopg

from pgjobs.queue import Handler, Registry
from workertools import _enqueue, _job, running_worker, take


def _errors(dsn, job_id):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT errors FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()[0]


async def test_an_async_handler_past_its_timeout_is_cancelled_and_retried_per_its_policy(fresh_dsn):
    cancelled = asyncio.Event()
    runs = 0

    async def hangs(ctx):
        nonlocal runs
        runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    registry = Registry()
    registry.add(Handler("hangs", hangs, timeout=0.2))
    job_id = _enqueue(fresh_dsn, "hangs", max_attempts=2, backoff_base_ms=1, backoff_cap_ms=1)
    async with running_worker(fresh_dsn, registry) as (_, finished):
        first, second = await take(finished, 2)
    assert cancelled.is_set() and runs == 2
    assert (first.state, second.state) == ("queued", "failed")  # retried once, then attempts spent
    state, attempt, _, error = _job(fresh_dsn, job_id)
    assert (state, attempt) == ("failed", 2)
    assert error == "timeout: the handler ran past its 0.2s limit"
    entries = _errors(fresh_dsn, job_id)
    assert [e["outcome"] for e in entries] == ["retry", "retry"]
    assert all("in hangs" in e["traceback"] and "CancelledError" in e["traceback"] for e in entries)


async def test_a_sync_handler_past_its_timeout_fails_the_attempt_while_its_thread_runs_on(fresh_dsn):
    release = threading.Event()
    returned = threading.Event()

    def blocks(ctx):  # a thread cannot be cancelled: it runs until it returns by itself
        release.wait(10)
        returned.set()

    registry = Registry()
    registry.add(Handler("blocks", blocks, timeout=0.2))
    job_id = _enqueue(fresh_dsn, "blocks", max_attempts=1)
    async with running_worker(fresh_dsn, registry) as (_, finished):
        (item,) = await take(finished, 1)
        assert item.state == "failed" and not returned.is_set()  # failed at the deadline, thread still busy
        release.set()
        await asyncio.to_thread(returned.wait, 5)
    assert _job(fresh_dsn, job_id)[:2] == ("failed", 1)  # what the thread returned later is ignored


async def test_a_handlers_own_timeout_error_is_an_ordinary_failure(fresh_dsn):
    async def raises(ctx):
        raise TimeoutError("upstream took too long")

    registry = Registry()
    registry.add(Handler("raises", raises, timeout=30))
    job_id = _enqueue(fresh_dsn, "raises")
    async with running_worker(fresh_dsn, registry) as (_, finished):
        await take(finished, 1)
    assert _job(fresh_dsn, job_id)[3] == "TimeoutError: upstream took too long"


async def test_a_failed_attempt_stores_its_traceback_logs_it_and_calls_the_error_hooks(fresh_dsn, caplog):
    def deep_inside(payload):
        raise ValueError(f"bad value {payload['n']}")

    async def fails(ctx):
        deep_inside(ctx.payload)

    async def succeeds(ctx):
        return None

    seen_sync, seen_async = [], []

    def sync_hook(job, error, tb):
        seen_sync.append((job.id, error, tb))

    async def async_hook(job, error, tb):
        await asyncio.sleep(0)
        seen_async.append((job.id, error, tb))

    def broken_hook(job, error, tb):
        raise RuntimeError("the hook itself fails")

    registry = Registry()
    registry.register("fails", fails)
    registry.register("succeeds", succeeds)
    failing = _enqueue(fresh_dsn, "fails", {"n": 7})
    fine = _enqueue(fresh_dsn, "succeeds")
    with caplog.at_level(logging.INFO, logger="pgjobs"):
        async with running_worker(fresh_dsn, registry, on_error=[sync_hook, broken_hook, async_hook]) as (_, done):
            await take(done, 2)
    (entry,) = _errors(fresh_dsn, failing)
    assert entry["error"] == "ValueError: bad value 7"
    assert entry["traceback"].startswith("Traceback (most recent call last)")
    assert "in deep_inside" in entry["traceback"] and entry["traceback"].rstrip().endswith("ValueError: bad value 7")
    assert seen_sync == seen_async == [(failing, "ValueError: bad value 7", entry["traceback"])]
    assert _errors(fresh_dsn, fine) == []
    outcome_lines = {r.job_id: r for r in caplog.records if r.getMessage() == "outcome"}
    assert outcome_lines[failing].traceback == entry["traceback"]
    assert not hasattr(outcome_lines[fine], "traceback")
    (hook_failure,) = [r for r in caplog.records if r.getMessage() == "an on_error hook failed"]
    assert hook_failure.hook == "broken_hook" and "the hook itself fails" in str(hook_failure.exc_info[1])
