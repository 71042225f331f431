"""Bounded waits (issue 18): every connection the worker opens carries its name and timeouts, the
server ends a transaction whose client went silent, and the listener drops a connection whose
probe goes unanswered."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import psycopg
import pytest

from pgjobs.database import Timeouts, open_pool
from pgjobs.queue import RateLimits, Registry, Worker, WorkerHooks
from pgjobs.queue.listener import Listener
from pgjobs.queue.worker import new_worker_id
from tcpproxy import TcpProxy
from workertools import _enqueue


def _sessions(dsn: str, name: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, backend_type FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchall()


async def _wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


async def test_every_worker_session_is_named_after_the_worker_and_bounded(fresh_dsn):
    worker_id = new_worker_id()
    timeouts = dataclasses.replace(Timeouts.default(), statement_timeout=7, idle_in_transaction_timeout=11)
    pool = await open_pool(fresh_dsn, max_size=3, application_name=worker_id, timeouts=timeouts)
    claimed = asyncio.Event()
    worker = Worker(pool, Registry(), conninfo=fresh_dsn, limits=RateLimits(pool, {}), worker_id=worker_id,
                    timeouts=timeouts, hooks=WorkerHooks(idle=claimed.set))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        await asyncio.wait_for(claimed.wait(), 10)  # the producer's claim session is open
        # The pool (min 2), the claimer and the listener: all named after the worker.
        sessions = await _wait_until(
            lambda: asyncio.to_thread(lambda: (s := _sessions(fresh_dsn, worker_id)) and len(s) >= 4 and s),
            10, "four sessions named after the worker")
        assert {pid for pid, _ in sessions} >= {worker.listener.backend_pid, worker._claimer.info.backend_pid}

        async def show(conn) -> tuple:
            cur = await conn.execute("SELECT current_setting('statement_timeout'), "
                                     "current_setting('idle_in_transaction_session_timeout'), "
                                     "current_setting('application_name')")
            return await cur.fetchone()

        # The claim session only the queue uses: statement_timeout too. The pool's sessions (which
        # handlers share): no statement_timeout, but the server ends a stalled transaction.
        assert await show(worker._claimer) == ("7s", "11s", worker_id)
        async with pool.connection() as conn:
            assert await show(conn) == ("0", "11s", worker_id)
            cur = await conn.execute("SELECT current_setting('tcp_keepalives_idle')")
            # Over a Unix socket the server reports 0 for keepalives; over TCP our 10 s.
            assert (await cur.fetchone())[0] in ("0", "10")
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await pool.close()


async def test_a_transaction_left_idle_on_a_worker_connection_is_ended_by_the_server(fresh_dsn):
    """A partition inside a transaction looks, to the server, like a client gone quiet: the idle
    in-transaction timeout ends the session, its row locks go, and the pool replaces it."""
    timeouts = dataclasses.replace(Timeouts.default(), idle_in_transaction_timeout=0.5)
    pool = await open_pool(fresh_dsn, max_size=1, application_name="stalled-worker", timeouts=timeouts)
    try:
        job_id = _enqueue(fresh_dsn, "noop")
        stalled = await pool.getconn()
        await stalled.execute("BEGIN")
        await stalled.execute("SELECT id FROM pgjobs.jobs WHERE id = %s FOR UPDATE", (job_id,))
        started = time.monotonic()

        def lock_is_free() -> bool:
            with psycopg.connect(fresh_dsn, autocommit=True) as other:
                try:
                    other.execute("SELECT id FROM pgjobs.jobs WHERE id = %s FOR UPDATE NOWAIT", (job_id,))
                    return True
                except psycopg.errors.LockNotAvailable:
                    return False

        await _wait_until(lambda: asyncio.to_thread(lock_is_free), 10, "the stalled transaction's lock to go")
        assert time.monotonic() - started < 5
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            await stalled.execute("SELECT 1")  # the server said why before it closed the session
        assert stalled.closed
        await pool.putconn(stalled)  # broken: the pool discards it and opens another
        async with pool.connection(timeout=10) as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await pool.close()


async def test_the_listener_drops_a_connection_whose_probe_goes_unanswered(fresh_dsn):
    proxy = await TcpProxy(fresh_dsn).start()
    wakes: list[float] = []
    listener = Listener(proxy.dsn, ["default"], lambda: wakes.append(time.monotonic()), probe_interval=0.2,
                        probe_timeout=0.5, connect_options=Timeouts.default().options("probe-test"))
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        first = listener.backend_pid
        proxy.freeze()  # the open connection goes silent; new ones get through
        frozen_at = time.monotonic()

        async def back_on_a_new_session() -> bool:
            return listener.connected.is_set() and listener.reconnects >= 1 and listener.backend_pid != first

        await _wait_until(back_on_a_new_session, 10, "the listener to reconnect")
        # Probe interval + probe timeout + the first reconnect delay, with room for a loaded machine.
        assert time.monotonic() - frozen_at < 3.0
        assert wakes[-1] >= frozen_at  # it woke the producer to catch up on what it missed
        # The new session works: a NOTIFY reaches it.
        seen = len(wakes)
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('pgjobs', 'default')")
        await _wait_until(lambda: asyncio.sleep(0, len(wakes) > seen), 10, "the NOTIFY")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await proxy.close()


async def test_a_group_commit_stalled_mid_pipeline_is_ended_by_the_server_on_postgresql_17(fresh_dsn, claim_jobs):
    """Mid-pipeline the server waits for the client in state 'active', where the idle-in-transaction
    timeout does not apply; on PostgreSQL 17+ the group's transaction_timeout ends it, so the
    jobs' row locks go. (PostgreSQL 15/16 have no such bound: the write simply completes.)"""
    from pgjobs.queue import Complete
    from pgjobs.queue.completer import Finished, write_outcomes
    from pgjobs.queue.faults import UNAVAILABLE

    _enqueue(fresh_dsn, "noop")
    stalled = asyncio.Event()
    unlocked_after: list[float] = []

    async def stall(tx):
        await tx.execute("SELECT 1")  # the group's pipeline is open from here on
        stalled.set()
        started = time.monotonic()
        while time.monotonic() - started < 5:  # a client gone silent (no sleep-as-sync: we watch)
            with psycopg.connect(fresh_dsn, autocommit=True) as other:
                free = other.execute("SELECT count(*) FROM (SELECT id FROM pgjobs.jobs WHERE state = 'running' "
                                     "FOR UPDATE SKIP LOCKED) f").fetchone()[0]
            if free:
                unlocked_after.append(time.monotonic() - started)
                break
            await asyncio.sleep(0.05)
        await tx.execute("SELECT 1")

    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
        (job,) = await claim_jobs(conn)
        version = conn.info.server_version
        if version >= 170000:
            with pytest.raises(UNAVAILABLE):
                await write_outcomes(conn, [Finished(job, Complete(stall), 0.0)], hold_limit=0.5)
            assert unlocked_after and unlocked_after[0] < 3  # ended ~0.5 s in, not by us
        else:
            items = await write_outcomes(conn, [Finished(job, Complete(stall), 0.0)], hold_limit=0.5)
            assert items[0].state == "succeeded" and not unlocked_after
    assert stalled.is_set()
