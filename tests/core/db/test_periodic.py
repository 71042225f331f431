"""The periodic-job scheduler on a real database: one job per slot under races, the catch-up rule,
changed crons, two apps, one transaction per slot, and a loop that sleeps until the next slot."""

import asyncio
from datetime import timedelta

import psycopg
import pytest

from pgjobs.database import open_pool
from pgjobs.queue import JobSpec
from pgjobs.queue.periodic import Cron, Schedule, Scheduler


def _schedule(cron: str, *, app: str = "shop", name: str = "sweep", payload=None) -> Schedule:
    return Schedule(app, name, Cron.parse(cron, what="test"), JobSpec(kind="noop", payload=payload or {},
                                                                       queue="periodic", max_attempts=7))


def _jobs(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, kind, queue, payload, max_attempts, dedupe_key FROM pgjobs.jobs"
                            " ORDER BY id").fetchall()


def _sql(dsn, query, params=None):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


def _rewind(dsn, *, since="1 hour", last_slot=None):
    """As if the schedule had existed for `since` and last ran `last_slot` ago (None: never)."""
    _sql(dsn, "UPDATE pgjobs.schedules SET since = now() - %s::interval,"
              " last_slot = now() - %s::interval", (since, last_slot))


async def _scheduler(dsn, schedules, pools, **options) -> Scheduler:
    pool = await open_pool(dsn, max_size=2)
    pools.append(pool)
    return Scheduler(pool, schedules, **options)


@pytest.fixture
async def pools():
    opened: list = []
    yield opened
    for pool in opened:
        await pool.close()


async def test_racing_schedulers_enqueue_only_the_newest_missed_slot_once(fresh_dsn, pools):
    hourly = _schedule("0 * * * *")
    first = await _scheduler(fresh_dsn, [hourly], pools)
    await first.sync()
    _rewind(fresh_dsn, since="1 day", last_slot="5 hours")  # five slots missed while no worker ran
    racers = [first] + [await _scheduler(fresh_dsn, [hourly], pools) for _ in range(5)]
    results = await asyncio.gather(*(s.run_due() for s in racers))
    won = [r for result in results for r in result]
    assert len(won) == 1, won
    (newest,) = _sql(fresh_dsn, "SELECT date_trunc('hour', now())")[0]
    assert won[0].slot == newest
    (job,) = _jobs(fresh_dsn)
    assert job[:5] == (won[0].job.id, "noop", "periodic", {}, 7)  # the task's options, its payload
    assert job[5] == hourly.dedupe_key(newest) and job[5].startswith("pgjobs:periodic:shop:sweep:")
    assert _sql(fresh_dsn, "SELECT last_slot, last_job_id FROM pgjobs.schedules") == [(newest, job[0])]
    # Another pass, by anyone, finds the slot taken.
    assert await asyncio.gather(*(s.run_due() for s in racers)) == [[]] * len(racers)
    assert len(_jobs(fresh_dsn)) == 1


async def test_a_new_schedule_starts_with_its_next_slot(fresh_dsn, pools):
    scheduler = await _scheduler(fresh_dsn, [_schedule("0 * * * *")], pools)
    await scheduler.sync()
    assert await scheduler.run_due() == []  # the slot before the schedule existed is not enqueued
    assert _jobs(fresh_dsn) == []
    (since, last) = _sql(fresh_dsn, "SELECT since, last_slot FROM pgjobs.schedules")[0]
    assert last is None and since is not None


async def test_a_changed_cron_takes_over_and_a_stale_worker_enqueues_nothing(fresh_dsn, pools):
    old = await _scheduler(fresh_dsn, [_schedule("0 * * * *")], pools)
    await old.sync()
    _rewind(fresh_dsn, since="1 day", last_slot="3 hours")
    new = await _scheduler(fresh_dsn, [_schedule("*/30 * * * *")], pools)
    await new.sync()
    assert _sql(fresh_dsn, "SELECT cron, since > now() - interval '1 minute' FROM pgjobs.schedules") == [
        ("*/30 * * * *", True)]
    # The new cron counts from the change; the old deploy's worker no longer owns the schedule.
    assert await new.run_due() == [] and await old.run_due() == []
    _sql(fresh_dsn, "UPDATE pgjobs.schedules SET since = now() - interval '1 day'")
    assert await old.run_due() == []
    restarted = await _scheduler(fresh_dsn, [_schedule("*/30 * * * *")], pools)  # a worker starting
    assert len(await restarted.run_due()) == 1
    assert _sql(fresh_dsn, "SELECT extract(minute FROM last_slot)::int % 30 FROM pgjobs.schedules") == [(0,)]


async def test_two_apps_with_a_schedule_of_the_same_name_each_get_their_job(fresh_dsn, pools):
    schedules = [_schedule("0 * * * *", app="shop"), _schedule("0 * * * *", app="billing")]
    scheduler = await _scheduler(fresh_dsn, schedules, pools)
    await scheduler.sync()
    _rewind(fresh_dsn, last_slot="2 hours")
    done = await scheduler.run_due()
    assert sorted(d.schedule.app for d in done) == ["billing", "shop"]
    assert sorted(row[5].split(":")[2] for row in _jobs(fresh_dsn)) == ["billing", "shop"]


async def test_a_slot_whose_job_cannot_be_enqueued_is_not_taken(fresh_dsn, pools):
    # jsonb refuses \u0000: the enqueue fails inside the slot's transaction, which rolls back whole.
    broken = _schedule("0 * * * *", payload={"note": "nul\x00"})
    scheduler = await _scheduler(fresh_dsn, [broken], pools)
    await scheduler.sync()
    _rewind(fresh_dsn, last_slot="2 hours")
    with pytest.raises(psycopg.Error):
        await scheduler.run_due()
    assert _jobs(fresh_dsn) == []
    assert _sql(fresh_dsn, "SELECT last_slot < now() - interval '1 hour', last_job_id FROM pgjobs.schedules") == [
        (True, None)]


async def test_a_running_scheduler_that_falls_behind_enqueues_each_slot_it_passed(fresh_dsn, pools):
    every_second = _schedule("* * * * * *")
    scheduler = await _scheduler(fresh_dsn, [every_second], pools)
    await scheduler.sync()
    _rewind(fresh_dsn, since="1 hour")
    (now,) = _sql(fresh_dsn, "SELECT date_trunc('second', clock_timestamp())")[0]
    # Passes replayed on a clock in the past: the first at now-60s, then a stalled one 4 s later.
    (first,) = await scheduler.run_due(now - timedelta(seconds=60))
    assert first.slot == now - timedelta(seconds=60)
    done = await scheduler.run_due(now - timedelta(seconds=56, milliseconds=500))
    assert [d.slot for d in done] == [now - timedelta(seconds=s) for s in (59, 58, 57)]
    # A scheduler that passed more than max_catch_up slots since its last look takes the newest only.
    late = await _scheduler(fresh_dsn, [every_second], pools, max_catch_up=2)
    assert [d.slot for d in await late.run_due(now - timedelta(seconds=50))] == [now - timedelta(seconds=50)]
    (only,) = await late.run_due(now - timedelta(seconds=40))
    assert only.slot == now - timedelta(seconds=40)
    assert [d.slot for d in await late.run_due(now - timedelta(seconds=38))] == [
        now - timedelta(seconds=39), now - timedelta(seconds=38)]
    keys = [row[5] for row in _jobs(fresh_dsn)]
    assert len(keys) == len(set(keys)) == 8
    assert every_second.dedupe_key(now - timedelta(seconds=45)) not in keys
    # A slot ahead of the database's clock is never taken, whatever a caller's clock says.
    assert await late.run_due(now + timedelta(seconds=30)) == []


async def test_run_sleeps_until_each_slot_and_stops_at_once(fresh_dsn, pools):
    got: asyncio.Queue = asyncio.Queue()
    scheduler = await _scheduler(fresh_dsn, [_schedule("* * * * * *")], pools, on_enqueued=got.put_nowait)
    task = asyncio.create_task(scheduler.run())
    try:
        seen = [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, 2)
    slots = [s.slot for s in seen]
    assert all(b - a == timedelta(seconds=1) for a, b in zip(slots, slots[1:]))
    # One pass per slot (plus the first and a possible early wake-up each): no polling in between.
    assert scheduler.passes <= 2 * len(slots) + 2
    assert len(_jobs(fresh_dsn)) == len(seen) + got.qsize()
