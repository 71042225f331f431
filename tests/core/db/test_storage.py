"""The jobs table's storage (queue migration 0008, pgjobs.queue.retention): heartbeats
are HOT updates (jobs_live, migration 0011), the rescuer and hand-backs find running jobs through jobs_running_idx, and
retention prunes whole old families in bounded batches while leaving everything else alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from pgjobs.queue import JobSpec, enqueue, enqueue_many
from pgjobs.queue.floors import full_ranges
from pgjobs.queue.jobs import Q
from pgjobs.queue.retention import PRUNER_LOCK_KEY, Retention, prune


def _claim_all(conn: psycopg.Connection, token: uuid.UUID) -> list[int]:
    params = {"queues": ["default"], "kinds": ["noop"], "limit": 1000, "lease_seconds": 30, "worker_id": "w",
              "channel": "c", "lock_key": 0, "idle_slots": 0, "lease_token": token, "handoff_token": None,
              "offer_ttl": 10, "offer_refresh": 0.2}
    return [row[0] for row in conn.execute(Q["claim_jobs"], params | full_ranges(["default"], ["noop"]))]


def _heartbeat_rounds(conn: psycopg.Connection, ids: list[int], token: uuid.UUID, rounds: int) -> list[int]:
    """HOT updates per round of heartbeats (each round one extend_leases of every id)."""
    stats = ("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
             " WHERE relid = 'pgjobs.jobs_live'::regclass")
    hot = []
    for _ in range(rounds):
        with conn.transaction():
            upd0, hot0 = conn.execute(stats).fetchone()
            held = conn.execute(Q["extend_leases"], {"ids": ids, "tokens": [token] * len(ids),
                                                     "lease_seconds": 30}).fetchall()
            upd1, hot1 = conn.execute(stats).fetchone()
        assert len(held) == len(ids) == upd1 - upd0
        hot.append(hot1 - hot0)
    return hot


def test_heartbeats_are_hot_updates(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        enqueue_many(conn, [JobSpec(kind="noop") for _ in range(1000)])
        token = uuid.uuid4()
        ids = _claim_all(conn, token)[:100]
        # The first rounds find pages the claim filled; page pruning frees them and from then on
        # every heartbeat stays on its page (measured: 25, 35, 48, 76, 100 of 100 with fillfactor 90).
        hot = _heartbeat_rounds(conn, ids, token, 6)
        assert hot[-1] == 100 and sum(hot) >= 300, hot
        # The index migration 0008 dropped named lease_expires_at: with it no heartbeat is HOT.
        conn.execute("CREATE INDEX jobs_lease_idx ON pgjobs.jobs_live (lease_expires_at) WHERE state = 'running'")
        assert _heartbeat_rounds(conn, ids, token, 3) == [0, 0, 0]


def test_running_jobs_are_found_through_the_running_index(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        enqueue_many(conn, [JobSpec(kind="noop") for _ in range(5000)])
        conn.execute("UPDATE pgjobs.jobs SET state = 'succeeded', finished_at = now() WHERE id % 100 <> 0")
        conn.execute("ANALYZE pgjobs.jobs")
        rescue = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q["rescue_expired"], {"limit": 500}))
        orphans = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q["hand_back_orphans"],
                                                       {"worker_id": "w", "held": [1, 2]}))
    for plan in (rescue, orphans):
        assert "jobs_running_idx" in plan and "Seq Scan on jobs" not in plan, plan


# VACUUMs of the history partition (where _family's old rows are) so far.
VACUUMS = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'pgjobs.jobs_finished_history'::regclass"


def _family(conn: psycopg.Connection, finished_days_ago: float | None, children: int = 2) -> int:
    root = enqueue(conn, "noop").id
    for _ in range(children):
        conn.execute("INSERT INTO pgjobs.jobs (root_id, parent_id, kind) VALUES (%s, %s, 'child')", (root, root))
    if finished_days_ago is not None:
        conn.execute("UPDATE pgjobs.jobs SET state = 'succeeded', finished_at = now() - make_interval(days => %s),"
                     " created_at = now() - make_interval(days => %s) WHERE root_id = %s",
                     (finished_days_ago, finished_days_ago, root))
    return root


async def test_retention_prunes_old_families_in_bounded_batches_and_keeps_the_rest(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        old = [_family(conn, 10) for _ in range(25)]
        recent = _family(conn, 1)
        unfinished = _family(conn, None)
        mixed = _family(conn, 10)  # one child still queued: the family stays whole
        conn.execute("UPDATE pgjobs.jobs SET state = 'queued', finished_at = NULL WHERE id = %s", (mixed + 1,))
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as aconn:
        retention = Retention(7, interval=3600, batch=10, max_batches=2, max_batch=10)  # scans that don't grow
        assert await retention.tick(aconn) == 20 * 3  # 2 scans of 10 roots, then the turn ends
        assert await retention.tick(aconn) == 5 * 3  # the pass goes on where it stopped: the 5 left
        assert await retention.tick(aconn) == 0  # the pass ended: not due again for an hour
    with psycopg.connect(fresh_dsn) as conn:
        roots = {r[0] for r in conn.execute("SELECT DISTINCT root_id FROM pgjobs.jobs")}
    assert roots == {recent, unfinished, mixed} and not roots & set(old)


async def test_retention_behind_doubles_its_scans_then_vacuums_once_caught_up(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        old = [_family(conn, 10) for _ in range(20)]
        before = conn.execute(VACUUMS).fetchone()[0]
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as aconn:
        retention = Retention(7, interval=3600, batch=2, max_batches=3, max_batch=8, vacuum_after=50)
        assert await retention.tick(aconn) == (2 + 4 + 8) * 3  # each full scan due doubles the next
        assert await retention.tick(aconn) == 6 * 3  # a scan of 8 finds the 6 left: the pass ends
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert not conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE root_id = ANY(%s)", (old,)).fetchone()[0]
        deadline = time.monotonic() + 10
        while conn.execute(VACUUMS).fetchone()[0] == before and time.monotonic() < deadline:
            time.sleep(0.05)  # the server's statistics catch up with the VACUUM
        assert conn.execute(VACUUMS).fetchone()[0] == before + 1  # 60 pruned >= 50: one VACUUM at the end


async def test_a_running_retention_vacuums_after_its_pruning(fresh_dsn):
    """Under run() (a worker's) the VACUUM after enough pruned jobs runs in a task of its own, on a
    connection of the pool's, so the pruning does not wait for it (what that buys is measured in
    the soak: docs/performance.md); here: it still runs, once, after the pass."""
    from pgjobs.database import open_pool

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        old = [_family(conn, 10) for _ in range(5)]
        before = conn.execute(VACUUMS).fetchone()[0]
    pool = await open_pool(fresh_dsn, max_size=3)
    retention = Retention(7, interval=3600, vacuum_after=5)
    task = asyncio.create_task(retention.run(pool))
    try:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 10
            while conn.execute(VACUUMS).fetchone()[0] == before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the pass, its VACUUM task, then the server's statistics
            assert conn.execute(VACUUMS).fetchone()[0] == before + 1
            assert not conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE root_id = ANY(%s)", (old,)).fetchone()[0]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.close()


async def test_retention_skips_its_pass_while_another_pruner_holds_the_lock(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        old = _family(conn, 10)
    with psycopg.connect(fresh_dsn) as other:  # another worker's retention step, mid-transaction
        other.execute("SELECT pg_advisory_xact_lock(%s)", (PRUNER_LOCK_KEY,))
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as aconn:
            retention = Retention(7, interval=3600)
            assert await retention.tick(aconn) == 0  # nothing scanned, nothing waited for
        other.rollback()
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as aconn:
        assert await Retention(7, interval=3600).tick(aconn) == 3  # free again: the next pass prunes
    with psycopg.connect(fresh_dsn) as conn:
        assert not conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE root_id = %s", (old,)).fetchone()[0]


def test_prune_walks_the_roots_in_scans_and_stops_at_the_first_root_created_after_the_cutoff(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        old = [_family(conn, 10, children=1) for _ in range(7)]
        newer = _family(conn, 1, children=1)
        late = _family(conn, 10, children=1)  # finished long ago but created after `newer`: ids follow creation
        conn.execute("UPDATE pgjobs.jobs SET created_at = now() WHERE root_id = %s", (late,))
        cutoff = datetime.now(timezone.utc) - timedelta(days=7)
        assert prune(conn, cutoff, batch=2) == 7 * 2  # scans of 2 roots; the 4th, (old, `newer`), ends it
        left = {r[0] for r in conn.execute("SELECT DISTINCT root_id FROM pgjobs.jobs")}
    assert left == {newer, late} and not left & set(old)


def test_prune_deletes_a_family_spread_over_partitions_and_leaves_a_newer_one(fresh_dsn):
    """prune_scan's DELETE names only partitions that can hold a due row; a family's rows in the
    history and in the default partition (finished_at NULL: rows an upgrade moved there) all go, and
    a family finished after the cutoff (today's partition) stays whole."""
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        old, newer = _family(conn, 10, children=2), _family(conn, 0, children=1)
        child = conn.execute("SELECT id FROM pgjobs.jobs WHERE parent_id = %s ORDER BY id LIMIT 1", (old,)).fetchone()[0]
        conn.execute("UPDATE pgjobs.jobs SET state = 'cancelled', finished_at = NULL WHERE id = %s", (child,))
        where = "SELECT DISTINCT tableoid::regclass::text FROM pgjobs.jobs WHERE root_id = %s"
        assert {r[0] for r in conn.execute(where, (old,))} == {"pgjobs.jobs_finished_history",
                                                              "pgjobs.jobs_finished_default"}
        assert prune(conn, datetime.now(timezone.utc) - timedelta(days=7)) == 3
        left = conn.execute("SELECT root_id, count(*) FROM pgjobs.jobs GROUP BY root_id").fetchall()
    assert left == [(newer, 2)]


async def test_a_worker_with_retention_prunes_while_it_runs(fresh_dsn):
    from pgjobs.database import open_pool
    from pgjobs.queue import RateLimits, Worker, default_registry

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        old = _family(conn, 30)
        keep = _family(conn, 1)
    pool = await open_pool(fresh_dsn, max_size=4)
    try:
        worker = Worker(pool, default_registry(), conninfo=fresh_dsn, limits=RateLimits(pool, {}),
                        lease_seconds=1, retention=Retention(7))
        task = asyncio.create_task(worker.run())
        try:
            async def gone() -> bool:
                async with pool.connection() as conn:
                    cur = await conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE root_id = %s", (old,))
                    return (await cur.fetchone())[0] == 0
            for _ in range(100):  # the rescue loop's first turn runs at start; allow 10 s
                if await gone():
                    break
                await asyncio.sleep(0.1)
            assert await gone()
        finally:
            worker.stop(now=True)
            await task
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE root_id = %s", (keep,))
            assert (await cur.fetchone())[0] == 3
    finally:
        await pool.close()


LIVE_VACUUMS = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'pgjobs.jobs_live'::regclass"


async def test_a_worker_vacuums_the_claim_table_after_every_n_outcomes_it_writes(fresh_dsn):
    """LiveVacuum (pgjobs.queue.vacuum): every `live_vacuum_after` outcomes written, a VACUUM of
    jobs_live beside the worker's loops; counted by the worker and by the server's statistics (a
    manual VACUUM: vacuum_count, not autovacuum_count)."""
    from pgjobs.database import open_pool
    from pgjobs.queue import RateLimits, Worker, default_registry

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        before = conn.execute(LIVE_VACUUMS).fetchone()[0]
    pool = await open_pool(fresh_dsn, max_size=4)
    worker = Worker(pool, default_registry(), conninfo=fresh_dsn, limits=RateLimits(pool, {}), live_vacuum_after=100)
    task = asyncio.create_task(worker.run())

    async def ran(vacuums: int) -> None:
        deadline = time.monotonic() + 10
        while worker.live_vacuum.runs < vacuums and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the jobs, then the VACUUM task they set off
        assert worker.live_vacuum.runs == vacuums

    try:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            enqueue_many(conn, [JobSpec(kind="noop")] * 150)  # one VACUUM at the 100th-odd outcome
            await ran(1)
            enqueue_many(conn, [JobSpec(kind="noop")] * 100)  # 40-50 left over + 100: one more
            await ran(2)
            deadline = time.monotonic() + 10
            while conn.execute(LIVE_VACUUMS).fetchone()[0] < before + 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the server's statistics catch up
            assert conn.execute(LIVE_VACUUMS).fetchone()[0] == before + 2
    finally:
        worker.stop()
        await task
        await pool.close()
