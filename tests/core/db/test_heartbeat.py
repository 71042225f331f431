"""The heartbeat never waits long on a row lock: while a job's row is held by another transaction
(its own completer committing it, a cancel) the heartbeat's statement gives up within its lock wait
and the worker retries a second later, instead of waiting in a lock order that deadlocked against
the completer's group transaction. Once the lock is gone, every lease is pushed out."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg import errors

from pgjobs.queue import JobSpec, enqueue_many
from pgjobs.queue.bounded import bounded
from pgjobs.queue.floors import full_ranges
from pgjobs.queue.jobs import Q
from pgjobs.queue.worker import HEARTBEAT_LOCK_WAIT


async def test_the_heartbeat_gives_up_on_a_locked_row_at_once_and_extends_every_lease_after(fresh_dsn):
    token = uuid.uuid4()
    with psycopg.connect(fresh_dsn, autocommit=True) as conn, psycopg.connect(fresh_dsn) as completer:
        enqueue_many(conn, [JobSpec(kind="noop") for _ in range(3)])
        params = {"queues": ["default"], "kinds": ["noop"], "limit": 3, "lease_seconds": 30, "worker_id": "w",
                  "channel": "c", "lock_key": 0, "idle_slots": 0, "lease_token": token, "handoff_token": None,
                  "offer_ttl": 10, "offer_refresh": 0.2}
        ids = sorted(r[0] for r in conn.execute(Q["claim_jobs"], params | full_ranges(["default"], ["noop"])))
        assert len(ids) == 3
        before = dict(conn.execute("SELECT id, lease_expires_at FROM pgjobs.jobs WHERE id = ANY(%s)", (ids,)))
        # the completer's transaction holds the middle job's row lock, as a group commit does
        completer.execute("UPDATE pgjobs.jobs SET attempt = attempt WHERE id = %s", (ids[1],))
        extend = {"ids": ids, "tokens": [token] * 3, "lease_seconds": 60}
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as heartbeat:
            started = time.monotonic()
            with pytest.raises(errors.LockNotAvailable):
                async with bounded(heartbeat, 30, lock_timeout=HEARTBEAT_LOCK_WAIT):
                    await heartbeat.execute(Q["extend_leases"], extend)
            waited = time.monotonic() - started
            unchanged = dict(conn.execute("SELECT id, lease_expires_at FROM pgjobs.jobs WHERE id = ANY(%s)", (ids,)))
            completer.rollback()  # the group committed: the row is free
            async with bounded(heartbeat, 30, lock_timeout=HEARTBEAT_LOCK_WAIT):
                held = sorted(r[0] for r in await (await heartbeat.execute(Q["extend_leases"], extend)).fetchall())
            # SET LOCAL: the session's own lock_timeout is back after the transaction
            assert (await (await heartbeat.execute("SHOW lock_timeout")).fetchone())[0] == "0"
        after = dict(conn.execute("SELECT id, lease_expires_at FROM pgjobs.jobs WHERE id = ANY(%s)", (ids,)))
    assert waited < 5  # gave up at its lock wait, not after the statement timeout (30 s)
    assert unchanged == before  # the round that gave up changed nothing
    assert held == ids and all(after[i] > before[i] for i in ids)
