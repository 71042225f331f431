"""Finished jobs apart from the claim table (queue migration 0011): pgjobs.jobs is partitioned by
state, jobs_live (queued, running) and jobs_finished (the rest, by day since 0012). An attempt's end moves its row in
the completion transaction, an operator retry moves it back, and a database of the previous layout
upgrades in place: every row kept, unfinished ones moved, views on pgjobs.jobs reading the new table.
"""

from __future__ import annotations

import uuid

import psycopg

from pgjobs import migrations
from pgjobs.migrations import _LEDGER, QUEUE
from pgjobs.queue import JobSpec, enqueue_many
from pgjobs.queue.floors import full_ranges
from pgjobs.queue.jobs import Q

COLUMNS = "id, root_id, parent_id, kind, queue, payload, priority, run_at, attempt, max_attempts, dedupe_key, " \
          "lease_token, worker_id, last_error, errors, created_at, finished_at"


def today_partition(conn: psycopg.Connection) -> str:
    """The day partition of jobs_finished a job that ends now goes to (queue migration 0012)."""
    return conn.execute("SELECT 'pgjobs.jobs_finished_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')").fetchone()[0]


def _partition_of(conn: psycopg.Connection) -> dict[int, str]:
    rows = conn.execute("SELECT id, tableoid::regclass::text FROM pgjobs.jobs").fetchall()
    return dict(rows)


def migrated_before(dsn: str, version: int) -> None:
    """The queue's migrations before `version`, applied and recorded as migrate() does."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(_LEDGER)
        for m in QUEUE.migrations():
            if m.version >= version:
                break
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute("INSERT INTO pgjobs.migrations (component, version, name, checksum)"
                             " VALUES (%s, %s, %s, %s)", (m.component, m.version, m.name, m.checksum))


def test_an_old_layout_upgrades_in_place_rows_views_and_leases_kept(empty_dsn):
    migrated_before(empty_dsn, 11)
    token = uuid.uuid4()
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'pgjobs.jobs'::regclass").fetchone()[0] == "r"
        ids = {}
        for state in ("queued", "running", "succeeded", "failed", "cancelled"):
            extra = {"running": ", lease_token = %(t)s, lease_expires_at = now() + interval '1 hour', attempt = 1",
                     "queued": ""}.get(state, ", finished_at = now(), attempt = 1")
            job = conn.execute("INSERT INTO pgjobs.jobs (id, root_id, kind, dedupe_key)"
                               " SELECT n, n, 'k', %s FROM nextval('pgjobs.job_id_seq') AS n RETURNING id",
                               (f"key-{state}",)).fetchone()[0]
            conn.execute(f"UPDATE pgjobs.jobs SET state = %(s)s{extra} WHERE id = %(id)s",
                         {"s": state, "id": job, "t": token})
            ids[state] = job
        child = conn.execute("INSERT INTO pgjobs.jobs (root_id, parent_id, kind) VALUES (%s, %s, 'c') RETURNING id",
                             (ids["succeeded"], ids["succeeded"])).fetchone()[0]
        conn.execute("CREATE VIEW public.my_jobs AS SELECT id, state FROM pgjobs.jobs")
        before = conn.execute(f"SELECT {COLUMNS}, state::text FROM pgjobs.jobs ORDER BY id").fetchall()

    applied = migrations.migrate(empty_dsn)
    assert [m.version for m in applied] == [m.version for m in QUEUE.migrations() if m.version >= 11]  # 11 on

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT {COLUMNS}, state::text FROM pgjobs.jobs ORDER BY id").fetchall() == before
        where = _partition_of(conn)
        live = {ids["queued"], ids["running"], child}
        assert {i for i, t in where.items() if t == "pgjobs.jobs_live"} == live
        # finished before the upgrade: the history partition (migration 0012)
        assert {i for i, t in where.items() if t == "pgjobs.jobs_finished_history"} == set(ids.values()) - live
        # the user's view now reads the new pgjobs.jobs: it sees a job enqueued after the upgrade
        new = enqueue_many(conn, [JobSpec(kind="after")])
        assert new == 1
        newest = conn.execute("SELECT max(id) FROM pgjobs.jobs").fetchone()[0]
        assert newest > max(before)[0]
        assert conn.execute("SELECT state::text FROM public.my_jobs WHERE id = %s", (newest,)).fetchone() == ("queued",)
        # the running job's lease still fences it: its worker completes it, and it moves
        done = conn.execute(Q["complete_jobs"], {"ids": str(ids["running"]), "slots": "1", "tokens": [token]}).fetchall()
        assert done == [(ids["running"],)]
        assert _partition_of(conn)[ids["running"]] == today_partition(conn)
        # the unfinished job's dedupe key is still unique among unfinished jobs
        assert enqueue_many(conn, [JobSpec(kind="k", dedupe_key="key-queued")]) == 0
        assert enqueue_many(conn, [JobSpec(kind="k", dedupe_key="key-succeeded")]) == 1


def _claim(conn: psycopg.Connection, token: uuid.UUID, limit: int) -> list[int]:
    params = {"queues": ["default"], "kinds": ["noop"], "limit": limit, "lease_seconds": 30, "worker_id": "w",
              "channel": "c", "lock_key": 0, "idle_slots": 0, "lease_token": token, "handoff_token": None,
              "offer_ttl": 10, "offer_refresh": 0.2}
    return [row[0] for row in conn.execute(Q["claim_jobs"], params | full_ranges(["default"], ["noop"]))]


def test_each_end_of_a_job_moves_it_and_a_retry_brings_it_back(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        enqueue_many(conn, [JobSpec(kind="noop", max_attempts=1) for _ in range(6)])
        token = uuid.uuid4()
        a, b, c, d, e, f = _claim(conn, token, 6)
        outcomes = {"ids": [a, b, c, d], "tokens": [token] * 4, "outcomes": ["complete", "discard", "retry", "snooze"],
                    "delays": [0.0, 0.0, 5.0, 5.0], "errors": [None, "bad", "boom", "later"],
                    "tracebacks": [None, None, "Traceback...", None]}
        states = dict(conn.execute(Q["apply_outcomes"], outcomes).fetchall())
        assert states == {a: "succeeded", b: "failed", c: "failed", d: "queued"}  # c: its one attempt spent
        conn.execute(Q["cancel_job"], {"id": e, "reason": "cancelled by test"})
        where = _partition_of(conn)
        assert {i for i, t in where.items() if t == today_partition(conn)} == {a, b, c, e}
        assert {i for i, t in where.items() if t == "pgjobs.jobs_live"} == {d, f}
        errors = conn.execute("SELECT errors FROM pgjobs.jobs WHERE id = %s", (c,)).fetchone()[0]
        assert errors[-1]["outcome"] == "retry" and errors[-1]["traceback"] == "Traceback..."
        # a stale lease token moves nothing: f is still running under `token`, not under another
        assert conn.execute(Q["complete_jobs"], {"ids": str(f), "slots": "1", "tokens": [uuid.uuid4()]}).fetchall() == []
        assert conn.execute(Q["retry_job"], {"id": c, "reason": "retried by test"}).fetchall()
        row = conn.execute("SELECT tableoid::regclass::text, state::text, max_attempts, finished_at FROM pgjobs.jobs"
                           " WHERE id = %s", (c,)).fetchone()
        assert row == ("pgjobs.jobs_live", "queued", 2, None)
