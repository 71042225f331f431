"""The worker in-process: outcomes, group commit, wake-ups, leases, shutdown (events, not sleeps)."""

import asyncio
import logging
import time

import psycopg
import pytest

from pgjobs.database import open_pool
from pgjobs.queue import (Complete, Discard, JobSpec, RateLimits, Registry, RescuedJob, Retry, Snooze, Worker,
                          WorkerHooks, default_registry, enqueue, enqueue_many)
from workertools import _enqueue, _job, _worker_of, drain, running_worker, take


async def test_burst_drains_every_job_once_and_logs_each_outcome(fresh_dsn, caplog):
    with psycopg.connect(fresh_dsn) as conn:
        enqueue_many(conn, [JobSpec(kind="noop", payload={"sleep_ms": i % 3}) for i in range(250)])
    pool = await open_pool(fresh_dsn)
    worker = Worker(pool, default_registry(), conninfo=fresh_dsn, limits=RateLimits(pool, {}),
                    concurrency=40, burst=True)
    with caplog.at_level(logging.INFO, logger="pgjobs"):
        await asyncio.wait_for(worker.run(), 30)
    await pool.close()
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT state::text, attempt, count(*) FROM pgjobs.jobs GROUP BY 1, 2").fetchall() == [
            ("succeeded", 1, 250)]
    lines = [r for r in caplog.records if r.getMessage() == "outcome"]
    assert len(lines) == 250
    assert {(r.kind, r.outcome, r.state, r.attempt) for r in lines} == {("noop", "complete", "succeeded", 1)}
    assert all(r.job_id == r.root_id and r.duration_ms >= 0 for r in lines)


async def test_a_kind_the_registry_lacks_stays_queued_and_a_bad_payload_fails_terminally(fresh_dsn):
    unknown = _enqueue(fresh_dsn, "no_such_kind", max_attempts=5)
    bad = _enqueue(fresh_dsn, "noop", {"sleep_ms": "soon"}, max_attempts=5)
    good = _enqueue(fresh_dsn, "noop")
    async with running_worker(fresh_dsn, default_registry(), poll_interval=60) as (worker, finished):
        await take(finished, 2)
        await take(worker.idle_queue, 1)  # it looked, found nothing it can run, and offers hand-offs
        drain(worker.idle_queue)
        late = _enqueue(fresh_dsn, "no_such_kind")  # its NOTIFY wakes the worker: still nothing for it
        await take(worker.idle_queue, 1)
    for job_id in (unknown, late):  # never claimed nor handed over, never failed
        assert _job(fresh_dsn, job_id) == ("queued", 0, 0, None)
        assert _worker_of(fresh_dsn, job_id) is None
    state, attempt, _, error = _job(fresh_dsn, bad)
    assert (state, attempt) == ("failed", 1) and "invalid payload for noop: sleep_ms" in error
    assert _job(fresh_dsn, good)[:2] == ("succeeded", 1)


async def test_exceptions_retry_and_outcomes_steer_the_job(fresh_dsn):
    registry = Registry()
    runs: dict[str, int] = {}

    async def flaky(ctx):
        runs[ctx.payload["name"]] = runs.get(ctx.payload["name"], 0) + 1
        name = ctx.payload["name"]
        if name == "raise":
            raise ValueError("upstream exploded")
        if name == "snooze":
            raise Snooze(3600, "429 Retry-After 3600")
        if name == "discard":
            return Discard("entity missing")
        return Retry("try later", delay=3600)

    registry.register("flaky", flaky)
    ids = {n: _enqueue(fresh_dsn, "flaky", {"name": n}, max_attempts=3) for n in ("raise", "snooze", "discard", "retry")}
    async with running_worker(fresh_dsn, registry) as (_, finished):
        await take(finished, 4)
    assert _job(fresh_dsn, ids["raise"]) == ("queued", 1, 0, "ValueError: upstream exploded")
    assert _job(fresh_dsn, ids["snooze"]) == ("queued", 1, 1, "429 Retry-After 3600")
    assert _job(fresh_dsn, ids["discard"]) == ("failed", 1, 0, "entity missing")
    assert _job(fresh_dsn, ids["retry"]) == ("queued", 1, 0, "try later")


async def test_one_failing_write_does_not_sink_the_other_jobs_of_its_group(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (job_id bigint PRIMARY KEY)")
    registry = Registry()
    release = asyncio.Event()

    async def writer(ctx):
        await release.wait()  # finish together so the completer writes them as one group

        async def write(tx):
            if ctx.payload.get("bad"):
                await tx.execute("INSERT INTO no_such_table VALUES (1)")
            await tx.execute("INSERT INTO effects VALUES (%s)", (tx.job.id,))
        return Complete(write)

    registry.register("writer", writer)
    ids = [_enqueue(fresh_dsn, "writer", {"bad": i == 2}) for i in range(5)]
    async with running_worker(fresh_dsn, registry, concurrency=10) as (worker, finished):
        await take(worker.claimed_queue, 5)
        release.set()
        await take(finished, 5)
    with psycopg.connect(fresh_dsn) as conn:
        effects = {r[0] for r in conn.execute("SELECT job_id FROM effects").fetchall()}
    assert effects == set(ids) - {ids[2]}
    state, attempt, _, error = _job(fresh_dsn, ids[2])
    assert (state, attempt) == ("queued", 1) and "completion write failed: UndefinedTable" in error
    assert all(_job(fresh_dsn, i)[0] == "succeeded" for i in ids if i != ids[2])


async def test_notify_wakes_an_idle_worker_fast_even_after_its_listener_is_killed(fresh_dsn):
    async with running_worker(fresh_dsn, default_registry(), poll_interval=30.0) as (worker, finished):
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        for round_ in range(2):
            if round_ == 1:  # kill the listener's backend; it must notice, reconnect and re-LISTEN
                old_pid = worker.listener.backend_pid
                worker.listener.connected.clear()
                with psycopg.connect(fresh_dsn, autocommit=True) as conn:
                    conn.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
                await asyncio.wait_for(worker.listener.connected.wait(), 15)
                assert worker.listener.backend_pid != old_pid and worker.listener.reconnects >= 1
            await asyncio.sleep(0)  # let the producer settle back into its 30 s wait
            started = time.perf_counter()
            _enqueue(fresh_dsn, "noop")
            await take(finished, 1, timeout=5)
            assert time.perf_counter() - started < 1.0


async def test_heartbeat_keeps_a_long_job_leased_past_its_lease_length(fresh_dsn):
    job_id = _enqueue(fresh_dsn, "noop", {"sleep_ms": 2500})
    async with running_worker(fresh_dsn, default_registry(), lease_seconds=0.9) as (_, finished):
        (item,) = await take(finished, 1)
    assert item.state == "succeeded"
    assert _job(fresh_dsn, job_id)[:2] == ("succeeded", 1)  # never rescued, never re-run


async def test_rescuer_requeues_an_expired_lease_and_runs_the_kinds_hook_in_its_transaction(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE lost (job_id bigint, attempt int)")
        job_id = enqueue(conn, "noop", {}).id
        # A worker that claimed it and died: running, lease already expired.
        conn.execute("UPDATE pgjobs.jobs SET state = 'running', attempt = 1, lease_token = gen_random_uuid(),"
                     " lease_expires_at = now() - interval '1 second', worker_id = 'dead' WHERE id = %s", (job_id,))

    async def record_lost(tx, job: RescuedJob):
        assert (job.kind, job.state, job.payload, tx.job) == ("noop", "queued", {}, job)
        assert job.last_error == "lease expired: worker dead stopped heartbeating"
        await tx.execute("INSERT INTO lost VALUES (%s, %s)", (job.id, job.attempt))

    registry = Registry()
    registry.register("noop", lambda ctx: None, on_lease_expired=record_lost)
    async with running_worker(fresh_dsn, registry) as (_, finished):
        (item,) = await take(finished, 1)
    assert item.job.attempt == 2 and item.state == "succeeded"
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT * FROM lost").fetchall() == [(job_id, 1)]
        (errors,) = conn.execute("SELECT errors FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert errors[0]["outcome"] == "lease_expired" and errors[0]["worker"] == "dead"


async def test_a_rescued_job_keeps_its_place_at_the_front_of_the_queue(fresh_dsn):
    order: list[int] = []
    rescued = asyncio.Event()

    async def record(ctx):
        if not order and ctx.job.attempt == 1:
            await rescued.wait()  # the only slot stays taken until the rescue happened
        order.append(ctx.job.id)

    registry = Registry()
    registry.register("rec", record)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        lost = enqueue(conn, "rec").id  # first in line; its worker claimed it and died
        conn.execute("UPDATE pgjobs.jobs SET state = 'running', attempt = 1, lease_token = gen_random_uuid(),"
                     " lease_expires_at = now() + interval '0.5 second', worker_id = 'dead',"
                     " run_at = now() - interval '10 seconds' WHERE id = %s", (lost,))
        (run_at,) = conn.execute("SELECT run_at FROM pgjobs.jobs WHERE id = %s", (lost,)).fetchone()
        later = [enqueue(conn, "rec").id for _ in range(3)]
    pool = await open_pool(fresh_dsn, max_size=4)
    finished: asyncio.Queue = asyncio.Queue()
    # Its lease expires after the worker's first claim (later[0], which holds the only slot until
    # the rescue); the rescuer runs every second with a 2 s lease.
    worker = Worker(pool, registry, conninfo=fresh_dsn, limits=RateLimits(pool, {}), concurrency=1,
                    poll_interval=60, lease_seconds=2, hooks=WorkerHooks(finished=finished.put_nowait, rescued=lambda n: rescued.set()))
    task = asyncio.create_task(worker.run())
    try:
        await take(finished, 4)
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await pool.close()
    # Next, not behind the jobs enqueued after it (the worker's claims start at its floor, past the
    # rescued job's run_at: the rescue makes its next claim scan whole ranges).
    assert order == [later[0], lost, *later[1:]]
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT run_at, attempt FROM pgjobs.jobs WHERE id = %s", (lost,)).fetchone() == (run_at, 2)


async def test_a_job_cancelled_while_running_cannot_commit(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (job_id bigint)")
    registry = Registry()
    release = asyncio.Event()

    async def slow(ctx):
        await release.wait()
        return Complete(lambda tx: tx.execute("INSERT INTO effects VALUES (%s)", (tx.job.id,)))

    registry.register("slow", slow)
    job_id = _enqueue(fresh_dsn, "slow")
    async with running_worker(fresh_dsn, registry) as (worker, finished):
        await take(worker.claimed_queue, 1)
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            from pgjobs.queue import admin
            assert admin.cancel(conn, job_id) == [job_id]
        release.set()
        (item,) = await take(finished, 1)
    assert item.state is None  # lease lost: nothing committed
    assert _job(fresh_dsn, job_id)[0] == "cancelled"
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM effects").fetchone()[0] == 0


async def test_stop_finishes_in_flight_jobs_within_grace_and_hands_back_the_rest(fresh_dsn):
    registry = Registry()
    quick_release = asyncio.Event()

    async def job(ctx):
        if ctx.payload["quick"]:
            await quick_release.wait()
        else:
            await asyncio.Event().wait()  # never finishes by itself

    registry.register("job", job)
    quick = _enqueue(fresh_dsn, "job", {"quick": True})
    stuck = _enqueue(fresh_dsn, "job", {"quick": False})
    pool = await open_pool(fresh_dsn)
    claimed = asyncio.Queue()
    worker = Worker(pool, registry, conninfo=fresh_dsn, limits=RateLimits(pool, {}), shutdown_grace=0.5,
                    hooks=WorkerHooks(claimed=lambda jobs: [claimed.put_nowait(j) for j in jobs]))
    task = asyncio.create_task(worker.run())
    await take(claimed, 2)
    worker.stop()
    quick_release.set()
    await asyncio.wait_for(task, 10)
    await pool.close()
    assert _job(fresh_dsn, quick)[:2] == ("succeeded", 1)
    state, attempt, snoozes, error = _job(fresh_dsn, stuck)
    assert (state, attempt - snoozes) == ("queued", 0) and "handed back" in error


@pytest.mark.parametrize("wait_scheduled", [False, True])
async def test_burst_exits_when_idle_or_waits_for_scheduled_retries(fresh_dsn, wait_scheduled):
    registry = Registry()

    async def once_later(ctx):
        if ctx.job.attempt == 1:
            return Snooze(0.3, "come back shortly")

    registry.register("later", once_later)
    job_id = _enqueue(fresh_dsn, "later")
    pool = await open_pool(fresh_dsn)
    worker = Worker(pool, registry, conninfo=fresh_dsn, limits=RateLimits(pool, {}), burst=True,
                    burst_waits_for_scheduled=wait_scheduled)
    await asyncio.wait_for(worker.run(), 15)
    await pool.close()
    expected = ("succeeded", 2) if wait_scheduled else ("queued", 1)
    assert _job(fresh_dsn, job_id)[:2] == expected


async def test_the_worker_survives_its_database_connections_being_killed(fresh_dsn):
    """Every backend of the worker (pool and listener) is terminated; it reconnects and goes on."""
    async with running_worker(fresh_dsn, default_registry(), poll_interval=0.5) as (worker, finished):
        _enqueue(fresh_dsn, "noop")
        await take(finished, 1)
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        worker.listener.connected.clear()
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()) t").fetchone()[0]
        assert killed >= 2  # the listener and at least one pooled connection
        job_id = _enqueue(fresh_dsn, "noop")
        (item,) = await take(finished, 1, timeout=20)
        assert item.job.id == job_id and item.state == "succeeded"
        await asyncio.wait_for(worker.listener.connected.wait(), 10)  # and it listens again


TRICKY = ["plain", 'say "hi"', "back\\slash", "a,b", "{braces}", "NULL", "", "tab\there", "ünï"]


async def test_deferred_children_and_copied_rows_keep_lineage_and_values(fresh_dsn):
    """enqueue_child_later (COPY for plain children, a set-based insert for deduped ones) and
    copy_later with text[] columns, all committed in the parents' completion transactions."""
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (job_id bigint, tags text[], maybe text[])")
    copy = "COPY notes (job_id, tags, maybe) FROM STDIN"
    registry = Registry()

    def noted(ctx, *children):
        async def write(tx):
            # None, an empty array, and one with a NULL element (psycopg's own dumper takes that one)
            row = (tx.job.id, TRICKY, None if ctx.job.is_root else [] if ctx.job.kind == "mid" else ["x", None])
            tx.copy_later(copy, row, types=("int8", "text[]", "text[]"))
            for kind, options in children:
                tx.enqueue_child_later(kind, {"from": tx.job.id}, **options)
        return Complete(write)

    registry.register("root", lambda ctx: noted(ctx, ("mid", {}), ("mid", {"dedupe_key": f"k{ctx.job.id}"})))
    registry.register("mid", lambda ctx: noted(ctx, ("leaf", {})))
    registry.register("leaf", lambda ctx: noted(ctx))
    root = _enqueue(fresh_dsn, "root")
    async with running_worker(fresh_dsn, registry) as (_, finished):
        await take(finished, 5)  # root, two mids, two leaves
    with psycopg.connect(fresh_dsn) as conn:
        jobs = conn.execute("SELECT id, kind, root_id, parent_id, (payload->>'from')::bigint, state::text"
                            " FROM pgjobs.jobs ORDER BY id").fetchall()
        notes = conn.execute("SELECT job_id, tags, maybe FROM notes ORDER BY job_id").fetchall()
    by_id = {j[0]: j for j in jobs}
    assert [j[1] for j in jobs] == ["root", "mid", "mid", "leaf", "leaf"]
    for job_id, kind, root_id, parent_id, sender, state in jobs:
        assert root_id == root and state == "succeeded"  # every descendant links to the root
        assert parent_id == sender and (kind == "root") == (parent_id is None)
        if kind == "leaf":
            assert by_id[parent_id][1] == "mid"
    assert [n[0] for n in notes] == [j[0] for j in jobs]
    assert all(n[1] == TRICKY for n in notes)
    assert [n[2] for n in notes] == [None, [], [], ["x", None], ["x", None]]
