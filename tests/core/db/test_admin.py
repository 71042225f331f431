"""pgjobs.queue.admin on a real PostgreSQL: queue pauses, live workers and the jobs they hold, the
queued kinds no live worker serves. pgjobs.workers rows are written here directly: that table is
the contract with the worker, which keeps its own row fresh."""

from __future__ import annotations

import psycopg
import pytest

from pgjobs.queue import admin


@pytest.fixture
def conn(conn):
    """The shared database's rolled-back transaction, with no jobs, workers or pauses in sight (other
    tests commit jobs there)."""
    conn.execute("DELETE FROM pgjobs.jobs; DELETE FROM pgjobs.workers; DELETE FROM pgjobs.queue_pauses")
    return conn


def add_worker(conn, worker_id: str, *, queues=("default",), kinds=("noop",), age_seconds: float = 0,
               app: str = "shop") -> None:
    conn.execute("INSERT INTO pgjobs.workers (worker_id, app, host, pid, queues, kinds, concurrency, started_at,"
                 " heartbeat_at) VALUES (%s, %s, 'host-1', 4242, %s, %s, 4, now() - interval '1 hour',"
                 " now() - make_interval(secs => %s))", (worker_id, app, list(queues), list(kinds), age_seconds))


def add_job(conn, kind: str = "noop", *, queue: str = "default", state: str = "queued",
            worker_id: str | None = None) -> int:
    running = state == "running"
    return conn.execute(
        "INSERT INTO pgjobs.jobs (id, root_id, kind, queue, state, attempt, worker_id, lease_token, lease_expires_at,"
        " finished_at) VALUES (nextval('pgjobs.job_id_seq'), currval('pgjobs.job_id_seq'), %s, %s, %s, %s, %s,"
        " CASE WHEN %s THEN gen_random_uuid() END, CASE WHEN %s THEN now() + interval '30 seconds' END,"
        " CASE WHEN %s IN ('succeeded', 'failed', 'cancelled') THEN now() END) RETURNING id",
        (kind, queue, state, int(state != "queued"), worker_id, running, running, state)).fetchone()[0]


# --- pauses -----------------------------------------------------------------------------------------


def test_pausing_twice_keeps_the_first_pause_and_says_so(conn):
    first = admin.pause_queue(conn, "mail", paused_by="ann@host")
    assert (first["queue"], first["paused_by"], first["created"]) == ("mail", "ann@host", True)
    again = admin.pause_queue(conn, "mail", paused_by="bob@host")
    assert (again["paused_at"], again["paused_by"], again["created"]) == (first["paused_at"], "ann@host", False)
    assert [(p["queue"], p["paused_by"]) for p in admin.paused_queues(conn)] == [("mail", "ann@host")]


def test_resume_lifts_the_pause_and_resuming_an_unpaused_queue_is_none(conn):
    admin.pause_queue(conn, "mail", paused_by=None)
    lifted = admin.resume_queue(conn, "mail")
    assert lifted is not None and lifted["queue"] == "mail"
    assert admin.paused_queues(conn) == []
    assert admin.resume_queue(conn, "mail") is None


def test_resume_wakes_idle_workers_on_the_queues_channel_at_commit(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as listener, psycopg.connect(fresh_dsn) as conn:
        listener.execute("LISTEN pgjobs")
        admin.pause_queue(conn, "mail", paused_by=None)
        conn.commit()
        admin.resume_queue(conn, "mail")
        assert list(listener.notifies(timeout=0.2)) == []  # nothing before commit
        conn.commit()
        woken = list(listener.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in woken] == [("pgjobs", "mail")]


def test_the_empty_queue_name_cannot_be_paused(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        admin.pause_queue(conn, "", paused_by=None)


def test_queues_lists_every_queue_known_with_its_jobs_workers_and_pause(conn):
    add_job(conn, queue="default")
    add_job(conn, queue="default")
    add_worker(conn, "w-live", queues=["default", "reports"])
    add_job(conn, queue="reports", state="running", worker_id="w-live")
    add_job(conn, queue="old", state="succeeded")  # finished jobs name no queue
    add_worker(conn, "w-dead", queues=["graveyard"], age_seconds=3600)  # a stale worker neither
    admin.pause_queue(conn, "mail", paused_by="ann@host")
    rows = {r["queue"]: r for r in admin.queues(conn, known=["default", "app-only"])}
    assert {q: (r["queued"], r["running"], r["workers"], r["paused"]) for q, r in rows.items()} == {
        "app-only": (0, 0, 0, False),
        "default": (2, 0, 1, False),
        "mail": (0, 0, 0, True),
        "reports": (0, 1, 1, False),
    }
    assert rows["mail"]["paused_by"] == "ann@host" and rows["mail"]["paused_at"] is not None


# --- workers ----------------------------------------------------------------------------------------


def test_workers_lists_live_ones_with_the_running_jobs_each_holds(conn):
    add_worker(conn, "w1", queues=["default", "mail"], kinds=["noop", "send_receipt"], age_seconds=5)
    add_worker(conn, "w2", age_seconds=59)
    add_worker(conn, "w-dead", age_seconds=61)
    for _ in range(3):
        add_job(conn, state="running", worker_id="w1")
    add_job(conn, state="running", worker_id="w-dead")  # its lease will expire and the rescuer take it
    add_job(conn, state="succeeded", worker_id="w2")  # finished jobs are not held
    rows = admin.workers(conn)
    assert [(w["worker_id"], w["running_jobs"], w["live"]) for w in rows] == [("w1", 3, True), ("w2", 0, True)]
    w1 = rows[0]
    assert (w1["app"], w1["host"], w1["pid"], w1["queues"], w1["kinds"], w1["concurrency"]) == (
        "shop", "host-1", 4242, ["default", "mail"], ["noop", "send_receipt"], 4)
    assert 4 <= w1["heartbeat_age_seconds"] <= 7
    every = admin.workers(conn, include_stale=True)
    assert [(w["worker_id"], w["running_jobs"], w["live"]) for w in every] == [
        ("w1", 3, True), ("w2", 0, True), ("w-dead", 1, False)]
    assert [w["worker_id"] for w in admin.workers(conn, stale_after=10)] == ["w1"]


# --- kinds no live worker serves ------------------------------------------------------------------------


def test_unserved_kinds_are_queued_kind_and_queue_pairs_no_live_worker_runs(conn):
    add_worker(conn, "w-live", queues=["default", "mail"], kinds=["noop", "send_receipt"])
    add_worker(conn, "w-dead", queues=["reports"], kinds=["monthly_report"], age_seconds=3600)
    add_job(conn, "noop")                                   # served
    add_job(conn, "send_receipt", queue="mail")             # served
    add_job(conn, "send_receipt", queue="default")          # served: w-live runs it on both queues
    add_job(conn, "noop", queue="bulk")                     # w-live knows the kind, not the queue
    add_job(conn, "monthly_report", queue="reports")        # only a dead worker knew it
    add_job(conn, "monthly_report", queue="reports")
    add_job(conn, "refund", queue="mail", state="failed")   # not queued: nobody needs to run it
    add_job(conn, "refund", queue="mail", state="running", worker_id="w-live")
    assert admin.unserved_kinds(conn) == [
        {"kind": "noop", "queue": "bulk", "jobs": 1},
        {"kind": "monthly_report", "queue": "reports", "jobs": 2},
    ]


def test_with_no_live_worker_every_queued_kind_is_unserved(conn):
    add_job(conn, "noop")
    add_job(conn, "noop", state="succeeded")
    assert admin.unserved_kinds(conn) == [{"kind": "noop", "queue": "default", "jobs": 1}]
