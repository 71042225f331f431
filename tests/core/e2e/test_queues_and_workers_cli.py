"""`pgjobs queues pause|resume|list`, `pgjobs workers`, `pgjobs stats` and `pgjobs jobs show`'s
tracebacks, end to end: the real CLI in subprocesses. Worker rows go into pgjobs.workers directly
(the table is the contract with the worker, which keeps its own row fresh)."""

from __future__ import annotations

import json

import psycopg

TRACEBACK = ('Traceback (most recent call last):\n  File "shop/mail.py", line 12, in send_receipt\n'
             '    smtp.send(msg)\nRuntimeError: SMTP said no\n')


def _worker(sql, dsn, worker_id, *, queues, kinds, age_seconds=0.0, app="shop"):
    sql(dsn, "INSERT INTO pgjobs.workers (worker_id, app, host, pid, queues, kinds, concurrency, heartbeat_at)"
             " VALUES (%s, %s, 'web-1', 4242, %s, %s, 8, now() - make_interval(secs => %s))",
        (worker_id, app, queues, kinds, age_seconds))


def _job(sql, dsn, kind="noop", *, queue="default", state="queued", worker_id=None, errors="[]"):
    running = state == "running"
    return sql(dsn, "INSERT INTO pgjobs.jobs (id, root_id, kind, queue, state, attempt, worker_id, lease_token,"
                    " lease_expires_at, errors, finished_at) VALUES (nextval('pgjobs.job_id_seq'),"
                    " currval('pgjobs.job_id_seq'), %s, %s, %s, %s, %s, CASE WHEN %s THEN gen_random_uuid() END,"
                    " CASE WHEN %s THEN now() + interval '30 s' END, %s,"
                    " CASE WHEN %s IN ('succeeded', 'failed', 'cancelled') THEN now() END) RETURNING id",
               (kind, queue, state, int(state != "queued"), worker_id, running, running, errors, state))[0][0]


def test_pause_list_resume_a_queue_and_resume_wakes_workers(cli, fresh_dsn, sql):
    _job(sql, fresh_dsn, queue="mail")
    paused = cli.json("queues", "pause", "mail")
    assert (paused["queue"], paused["already_paused"]) == ("mail", False)
    assert "@" in paused["paused_by"]  # user@host
    assert sql(fresh_dsn, "SELECT queue, paused_by FROM pgjobs.queue_pauses") == [("mail", paused["paused_by"])]
    again = cli.json("queues", "pause", "mail")
    assert (again["already_paused"], again["paused_at"]) == (True, paused["paused_at"])
    assert "already paused" in cli("queues", "pause", "mail").stdout

    listed = {q["queue"]: q for q in cli.json("queues", "list")}
    assert (listed["mail"]["paused"], listed["mail"]["queued"]) == (True, 1)
    assert listed["default"]["paused"] is False  # the app's own queue, listed though empty

    stats = cli.json("stats")
    assert [p["queue"] for p in stats["paused"]] == ["mail"]
    assert [(r["queue"], r["state"], r["paused"]) for r in stats["queues"]] == [("mail", "queued", True)]
    assert "paused: mail (since " in cli("stats").stdout

    with psycopg.connect(fresh_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgjobs")
        assert cli.json("queues", "resume", "mail") == {"queue": "mail", "resumed": True}
        woken = list(listener.notifies(timeout=10, stop_after=1))
    assert [(n.channel, n.payload) for n in woken] == [("pgjobs", "mail")]
    assert sql(fresh_dsn, "SELECT count(*) FROM pgjobs.queue_pauses") == [(0,)]
    assert cli.json("queues", "resume", "mail") == {"queue": "mail", "resumed": False}
    assert "was not paused" in cli("queues", "resume", "mail").stdout


def test_a_queue_name_that_looks_like_markup_prints_as_written(cli, fresh_dsn, sql):
    assert "paused queue '[red]x[/red]'" in cli("queues", "pause", "[red]x[/red]").stdout
    assert "[red]x[/red]" in cli("queues", "list").stdout


def test_workers_lists_live_workers_with_the_jobs_each_holds(cli, fresh_dsn, sql):
    _worker(sql, fresh_dsn, "web-1:4242:a1", queues=["default", "mail"], kinds=["noop", "send_receipt"])
    _worker(sql, fresh_dsn, "web-1:9999:dead", queues=["default"], kinds=["noop"], age_seconds=600)
    for _ in range(2):
        _job(sql, fresh_dsn, state="running", worker_id="web-1:4242:a1")

    (live,) = cli.json("workers")
    assert (live["worker_id"], live["app"], live["host"], live["pid"], live["concurrency"]) == (
        "web-1:4242:a1", "shop", "web-1", 4242, 8)
    assert (live["queues"], live["kinds"], live["running_jobs"], live["live"]) == (
        ["default", "mail"], ["noop", "send_receipt"], 2, True)
    assert live["heartbeat_age_seconds"] < 30

    every = cli.json("workers", "--all")
    assert [(w["worker_id"], w["live"]) for w in every] == [("web-1:4242:a1", True), ("web-1:9999:dead", False)]
    assert [w["worker_id"] for w in cli.json("workers", "--stale-after", "20m")] == [
        "web-1:4242:a1", "web-1:9999:dead"]

    text = cli("workers").stdout
    assert "1 live worker(s) (heartbeat within 60s)" in text
    assert "web-1:4242:a1" in text and "noop, send_receipt" in text and "dead" not in text


def test_stats_names_queued_kinds_no_live_worker_serves(cli, fresh_dsn, sql):
    _worker(sql, fresh_dsn, "w-live", queues=["default"], kinds=["noop"])
    _worker(sql, fresh_dsn, "w-dead", queues=["mail"], kinds=["send_receipt"], age_seconds=3600)
    _job(sql, fresh_dsn, "noop")
    for _ in range(3):
        _job(sql, fresh_dsn, "send_receipt", queue="mail")
    _job(sql, fresh_dsn, "refund", state="failed")

    stats = cli.json("stats")
    assert stats["unserved_kinds"] == [{"kind": "send_receipt", "queue": "mail", "jobs": 3}]
    assert stats["live_workers"] == 1
    text = cli("stats").stdout
    assert "queued kinds no live worker serves: send_receipt on mail (3 queued)" in text
    assert "live workers: 1" in text
    # A longer window counts the quiet worker as live: then every queued kind is served.
    assert cli.json("stats", "--stale-after", "2h")["unserved_kinds"] == []


def test_jobs_show_prints_each_failed_attempts_error_with_its_traceback(cli, fresh_dsn, sql):
    errors = [{"attempt": 1, "at": "2026-12-06T10:00:00+00:00", "outcome": "retry",
               "error": "RuntimeError: SMTP said no", "traceback": TRACEBACK},
              {"attempt": 2, "at": "2026-12-06T10:00:02+00:00", "outcome": "lease_expired",
               "error": "lease expired at 2026-12-06 10:00:32+00", "worker": "web-1:1:x"}]
    job_id = _job(sql, fresh_dsn, "send_receipt", state="failed", errors=json.dumps(errors))

    shown = cli.json("jobs", "show", str(job_id))
    assert [e.get("traceback") for e in shown["errors"]] == [TRACEBACK, None]

    lines = cli("jobs", "show", str(job_id)).stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "attempt 1" in line)
    assert "retry at 2026-12-06T10:00:00+00:00: RuntimeError: SMTP said no" in lines[first]
    assert [line.strip() for line in lines[first + 1:first + 5]] == [line.strip() for line in TRACEBACK.splitlines()]
    assert all(line.startswith(" " * 18) for line in lines[first + 1:first + 5])  # indented under the attempt
    assert "attempt 2  lease_expired" in lines[first + 5]
