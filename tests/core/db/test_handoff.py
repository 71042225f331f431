"""Hand-off: an enqueue that is its own transaction gives its job to an idle live worker, leased.

The SQL contract is tested with a stand-in "worker" session that holds the liveness lock and
LISTENs on its channel (what Listener does); the whole path with a real Worker.
"""

import asyncio
import uuid

import psycopg
import pytest

from pgjobs.database import open_pool
from pgjobs.queue import RateLimits, Registry, Worker, WorkerHooks, default_registry, enqueue, enqueue_async, handoff
from pgjobs.queue.floors import full_ranges
from pgjobs.queue.jobs import Q

LOCK_KEY = 4242
TOKEN = uuid.UUID("0123456789abcdef0123456789abcdef")  # the waiter's hand-off lease token


@pytest.fixture
def waiter(fresh_dsn):
    """A live waiter 'w1' on queue default with 2 free slots: its session holds the lock and listens."""
    with psycopg.connect(fresh_dsn, autocommit=True) as session:
        session.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        session.execute("LISTEN pgjobs_w_test")
        session.execute("INSERT INTO pgjobs.waiters (worker_id, queues, kinds, channel, lock_key, free, lease_seconds,"
                        " lease_token, heard_at, expires_at) VALUES ('w1', '{default}', '{noop}', 'pgjobs_w_test', %s,"
                        " 2, 30, %s, now(), now() + interval '1 minute')", (LOCK_KEY, TOKEN))
        yield session


def _row(conn, job_id):
    return conn.execute("SELECT state::text, attempt, worker_id, lease_token FROM pgjobs.jobs WHERE id = %s",
                        (job_id,)).fetchone()


def _free(conn):
    return conn.execute("SELECT free FROM pgjobs.waiters WHERE worker_id = 'w1'").fetchone()[0]


def test_autocommit_enqueue_is_leased_to_the_waiter_and_the_notification_carries_it(fresh_dsn, waiter):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        job_id = enqueue(conn, "noop", {"n": 1}, priority=3).id
        assert _row(conn, job_id) == ("running", 1, "w1", TOKEN)  # leased with the waiter's own token
        assert _free(conn) == 2  # the offer is only read: the worker itself keeps it up to date
    (note,) = list(waiter.notifies(timeout=5, stop_after=1))
    assert note.channel == "pgjobs_w_test"
    job = handoff.decode(note.payload, TOKEN)  # what SQL built, read by the one decoder
    assert job.payload_json == '{"n": 1}'  # the payload as jsonb prints it, as a claim returns it
    with psycopg.connect(fresh_dsn) as conn:
        (run_at,) = conn.execute("SELECT run_at FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert (job.id, job.run_at, job.attempt, job.lease_token) == (job_id, run_at, 1, TOKEN)
    assert (job.kind, job.queue, job.priority, job.max_attempts, job.backoff_base_ms, job.backoff_cap_ms) == (
        "noop", "default", 3, 3, 2000, 600_000)


def test_no_hand_off_inside_a_transaction_for_another_queue_too_big_or_without_free_slots(fresh_dsn, waiter):
    with psycopg.connect(fresh_dsn) as conn:  # a transaction of the caller's: the job waits for the commit
        in_tx = enqueue(conn, "noop").id
        assert _row(conn, in_tx)[0] == "queued"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        with conn.transaction():
            explicit = enqueue(conn, "noop").id
        other_queue = enqueue(conn, "noop", queue="other").id
        later = enqueue(conn, "noop", delay=60).id
        deduped = enqueue(conn, "noop", dedupe_key="k").id
        assert [_row(conn, i)[0] for i in (in_tx, explicit, other_queue, later, deduped)] == ["queued"] * 5
        too_big = [enqueue(conn, "noop", {"text": "x" * 7000}).id, enqueue(conn, "k" * 1000).id,
                   enqueue(conn, "ü" * 600).id]  # 600 characters, 1200 bytes
        assert [_row(conn, i)[0] for i in too_big] == ["queued"] * 3  # a notification holds < 8000 bytes
        handed = enqueue(conn, "noop").id
        conn.execute("UPDATE pgjobs.waiters SET free = 0")  # what the worker's next claim writes when full
        after_full = enqueue(conn, "noop").id
        conn.execute("UPDATE pgjobs.waiters SET free = 2, lease_token = NULL")  # an offer from before 0006
        no_token = enqueue(conn, "noop").id
        assert [_row(conn, i)[0] for i in (handed, after_full, no_token)] == ["running", "queued", "queued"]


def test_a_job_goes_only_to_a_waiter_that_runs_its_kind_on_a_queue_not_paused(fresh_dsn, waiter):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        other_kind = enqueue(conn, "not_in_its_registry").id
        conn.execute("INSERT INTO pgjobs.queue_pauses (queue) VALUES ('default')")
        paused = enqueue(conn, "noop").id
        conn.execute("DELETE FROM pgjobs.queue_pauses")
        resumed = enqueue(conn, "noop").id
        conn.execute("UPDATE pgjobs.waiters SET kinds = NULL")  # an offer from before 0005 names no kinds
        no_kinds = enqueue(conn, "noop").id
        assert [_row(conn, i)[0] for i in (other_kind, paused, resumed, no_kinds)] == [
            "queued", "queued", "running", "queued"]


def test_a_dead_waiter_is_never_chosen_and_the_rescuer_prunes_it(fresh_dsn, waiter):
    waiter.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))  # as if its listener session died
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert _row(conn, enqueue(conn, "noop").id)[0] == "queued"
        conn.execute(Q["prune_dead_waiters"])
        assert conn.execute("SELECT count(*) FROM pgjobs.waiters").fetchone()[0] == 0


def test_an_expired_offer_is_never_chosen_though_its_lock_is_held_and_the_rescuer_prunes_it(fresh_dsn, waiter):
    # A worker behind a half-open network or stopped: the server still holds its listener's lock,
    # but nobody refreshed its offer.
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgjobs.waiters SET expires_at = now() - interval '1 ms'")
        assert _row(conn, enqueue(conn, "noop").id)[0] == "queued"
        conn.execute("UPDATE pgjobs.waiters SET expires_at = NULL")  # an offer from before 0010
        assert _row(conn, enqueue(conn, "noop").id)[0] == "queued"
        conn.execute("UPDATE pgjobs.waiters SET expires_at = now() - interval '1 ms'")
        conn.execute(Q["prune_dead_waiters"])
        assert conn.execute("SELECT count(*) FROM pgjobs.waiters").fetchone()[0] == 0


def test_the_waiter_heard_from_most_recently_is_chosen(fresh_dsn, waiter):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn, psycopg.connect(fresh_dsn, autocommit=True) as w2:
        w2.execute("SELECT pg_advisory_lock(4343)")  # a second live waiter
        conn.execute("INSERT INTO pgjobs.waiters (worker_id, queues, kinds, channel, lock_key, free, lease_seconds,"
                     " lease_token, heard_at, expires_at) VALUES ('w2', '{default}', '{noop}', 'pgjobs_w_2', 4343,"
                     " 2, 30, %s, now() - interval '1 s', now() + interval '1 minute')", (uuid.uuid4(),))
        assert _row(conn, enqueue(conn, "noop").id)[2] == "w1"  # w2 last spoke a second ago
        conn.execute("UPDATE pgjobs.waiters SET heard_at = clock_timestamp() WHERE worker_id = 'w2'")
        assert _row(conn, enqueue(conn, "noop").id)[2] == "w2"


def test_idle_claims_and_the_listeners_probes_keep_an_offer_alive(fresh_dsn):
    params = {"queues": ["default"], "kinds": ["noop"], "lease_seconds": 30, "worker_id": "w3", "limit": 1,
              "channel": "pgjobs_w_3", "lock_key": 9, "lease_token": uuid.uuid4(), "handoff_token": TOKEN,
              "idle_slots": 2, "offer_ttl": 10, "offer_refresh": 0.2, **full_ranges(["default"], ["noop"])}
    heard = "SELECT heard_at, expires_at - heard_at FROM pgjobs.waiters WHERE worker_id = 'w3'"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(Q["claim_jobs"], params)
        first, ttl = conn.execute(heard).fetchone()
        assert ttl.total_seconds() == pytest.approx(10, abs=0.001)  # two clock_timestamp() readings
        conn.execute(Q["claim_jobs"], params | {"offer_refresh": 60})  # heard of lately: not written again
        assert conn.execute(heard).fetchone()[0] == first
        conn.execute(Q["claim_jobs"], params | {"offer_refresh": 0})
        claimed = conn.execute(heard).fetchone()[0]
        assert claimed > first
        (listening,) = conn.execute(Q["listener_probe"], {"worker_id": "w3", "offer_ttl": 10}).fetchone()
        assert listening is False  # this session does not LISTEN: a listener would reconnect
        assert conn.execute(heard).fetchone()[0] > claimed


def test_orphaned_hand_offs_go_back_without_spending_an_attempt(fresh_dsn, waiter):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        kept, orphan = enqueue(conn, "noop").id, enqueue(conn, "noop").id
        back = conn.execute(Q["hand_back_orphans"], {"worker_id": "w1", "held": [kept]}).fetchall()
        assert back == [(orphan,)]
        assert _row(conn, orphan) == ("queued", 0, "w1", None)
        assert _row(conn, kept)[:2] == ("running", 1)


def test_claim_offers_free_slots_only_when_it_found_less_than_it_asked(fresh_dsn):
    params = {"queues": ["default"], "kinds": ["noop"], "lease_seconds": 30, "worker_id": "w2",
              "channel": "pgjobs_w_2", "lock_key": 7, "lease_token": uuid.uuid4(), "handoff_token": TOKEN,
              "offer_ttl": 10, "offer_refresh": 0.2,
              **full_ranges(["default"], ["noop"])}
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        for _ in range(3):
            enqueue(conn, "noop", queue="default")
        offer = "SELECT free FROM pgjobs.waiters WHERE worker_id = 'w2'"
        assert len(conn.execute(Q["claim_jobs"], params | {"limit": 2, "idle_slots": 10}).fetchall()) == 2
        assert conn.execute(offer).fetchone() is None  # a full claim: busy, nothing offered
        assert len(conn.execute(Q["claim_jobs"], params | {"limit": 2, "idle_slots": 8}).fetchall()) == 1
        assert conn.execute(offer).fetchone() == (7,)  # 8 free, 1 just taken, nothing else runnable
        token = "SELECT lease_token FROM pgjobs.waiters WHERE worker_id = 'w2'"
        assert conn.execute(token).fetchone() == (TOKEN,)  # what its hand-offs will be leased with
        kinds = "SELECT kinds FROM pgjobs.waiters WHERE worker_id = 'w2'"
        assert conn.execute(kinds).fetchone() == (["noop"],)  # only these are ever handed to it
        conn.execute(Q["claim_jobs"], params | {"limit": 2, "idle_slots": 0})  # burst / stopping
        assert conn.execute(offer).fetchone() == (0,)


async def test_an_idle_worker_starts_a_handed_off_job_without_claiming_it(fresh_dsn):
    started, release = asyncio.Queue(), asyncio.Event()

    async def hold(ctx):
        started.put_nowait(ctx.job)
        await release.wait()

    registry = Registry()
    registry.register("hold", hold)
    pool = await open_pool(fresh_dsn, max_size=4)
    claimed: list = []
    finished: asyncio.Queue = asyncio.Queue()
    worker = Worker(pool, registry, conninfo=fresh_dsn, limits=RateLimits(pool, {}), concurrency=4,
                    hooks=WorkerHooks(claimed=claimed.extend, finished=finished.put_nowait))
    task = asyncio.create_task(worker.run())
    try:
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
            await asyncio.wait_for(worker.listener.connected.wait(), 10)
            for _ in range(200):  # the first (empty) claim offers the worker's 4 slots
                cur = await conn.execute("SELECT free FROM pgjobs.waiters WHERE worker_id = %s", (worker.worker_id,))
                if await cur.fetchone() == (4,):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the idle worker never offered its slots")
            job_id = (await enqueue_async(conn, "hold", {"x": 1})).id
            cur = await conn.execute("SELECT state::text, worker_id FROM pgjobs.jobs WHERE id = %s", (job_id,))
            assert await cur.fetchone() == ("running", worker.worker_id)  # leased by the enqueue itself
            job = await asyncio.wait_for(started.get(), 10)
            assert (job.id, job.payload, job.attempt) == (job_id, {"x": 1}, 1)
            cur = await conn.execute("SELECT run_at, lease_token FROM pgjobs.jobs WHERE id = %s", (job_id,))
            assert await cur.fetchone() == (job.run_at, job.lease_token)  # the notification carried both
            release.set()
            done = await asyncio.wait_for(finished.get(), 10)
            assert (done.job.id, done.state) == (job_id, "succeeded")
        assert [j.id for j in claimed] == [job_id]  # reported through the claimed hook all the same
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await pool.close()
    with psycopg.connect(fresh_dsn) as conn:  # a stopped worker withdraws its offer
        assert conn.execute("SELECT count(*) FROM pgjobs.waiters WHERE worker_id = %s AND free > 0",
                            (worker.worker_id,)).fetchone()[0] == 0


async def test_hand_offs_beyond_free_slots_wait_their_turn_and_the_full_worker_withdraws(fresh_dsn):
    """Enqueuers only read the offer, so a burst may hand an idle worker more jobs than it has
    slots: it keeps them leased, runs them concurrency at a time, and withdraws its offer."""
    running, peak, release = set(), [0], asyncio.Event()
    started: asyncio.Queue = asyncio.Queue()

    async def hold(ctx):
        running.add(ctx.job.id)
        peak[0] = max(peak[0], len(running))
        started.put_nowait(ctx.job.id)
        await release.wait()
        running.discard(ctx.job.id)

    registry = Registry()
    registry.register("hold", hold)
    pool = await open_pool(fresh_dsn, max_size=4)
    finished: asyncio.Queue = asyncio.Queue()
    worker = Worker(pool, registry, conninfo=fresh_dsn, limits=RateLimits(pool, {}), concurrency=2,
                    poll_interval=30, hooks=WorkerHooks(finished=finished.put_nowait))
    task = asyncio.create_task(worker.run())
    try:
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
            await asyncio.wait_for(worker.listener.connected.wait(), 10)
            offer = "SELECT coalesce(max(free), 0) FROM pgjobs.waiters WHERE worker_id = %s"
            for _ in range(200):
                if await (await conn.execute(offer, (worker.worker_id,))).fetchone() == (2,):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the idle worker never offered its slots")
            with psycopg.connect(fresh_dsn, autocommit=True) as sync:  # blocks the loop: the worker can't react
                ids = [enqueue(sync, "hold", {"n": n}).id for n in range(4)]
                assert sync.execute("SELECT count(*) FROM pgjobs.jobs WHERE worker_id = %s AND state = 'running'",
                                    (worker.worker_id,)).fetchone() == (4,)  # all four handed over
            first_two = {await asyncio.wait_for(started.get(), 10) for _ in range(2)}
            for _ in range(200):  # full: the producer takes the offer back
                if await (await conn.execute(offer, (worker.worker_id,))).fetchone() == (0,):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the full worker kept offering slots")
            assert started.empty() and first_two == set(ids[:2])
            release.set()
            done = [await asyncio.wait_for(finished.get(), 10) for _ in range(4)]
        assert sorted(d.job.id for d in done) == ids and {d.state for d in done} == {"succeeded"}
        assert peak[0] == 2  # never more than concurrency at once
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await pool.close()


async def test_with_hand_offs_off_an_idle_worker_offers_nothing_and_claims_every_job(fresh_dsn):
    from workertools import running_worker, take

    async with running_worker(fresh_dsn, default_registry(), handoff=False, poll_interval=60) as (worker, finished):
        await take(worker.idle_queue, 1)  # its claim found nothing: a worker with hand-offs would offer now
        job_id = _enqueue_autocommit(fresh_dsn)
        (item,) = await take(finished, 1)  # woken by the NOTIFY, it claimed the job
        assert (item.job.id, item.state) == (job_id, "succeeded")
        with psycopg.connect(fresh_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM pgjobs.waiters").fetchone() == (0,)
        assert worker.listener._handoff is None  # no channel of its own, no liveness lock


def _enqueue_autocommit(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return enqueue(conn, "noop").id
