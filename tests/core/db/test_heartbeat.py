"""The heartbeat never waits on a row lock: a job its own completer (or a cancel) holds locked is
skipped for that round yet still reported as held, and every other lease is pushed out at once.
Waiting there deadlocked against the completer's group transaction, which locks in its own order."""

from __future__ import annotations

import uuid

import psycopg

from pgjobs.queue import JobSpec, enqueue_many
from pgjobs.queue.floors import full_ranges
from pgjobs.queue.jobs import Q


def test_extend_leases_skips_a_locked_job_without_waiting_and_keeps_it_held(fresh_dsn):
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
        conn.execute("SET lock_timeout = '2s'")  # waiting would raise LockNotAvailable, not hang
        held = [r[0] for r in conn.execute(Q["extend_leases"],
                                           {"ids": ids, "tokens": [token] * 3, "lease_seconds": 60})]
        after = dict(conn.execute("SELECT id, lease_expires_at FROM pgjobs.jobs WHERE id = ANY(%s)", (ids,)))
        completer.rollback()
    assert sorted(held) == ids  # the locked job is still ours: not cancelled by the worker
    assert after[ids[0]] > before[ids[0]] and after[ids[2]] > before[ids[2]]
    assert after[ids[1]] == before[ids[1]]  # skipped this round, extended by the next
