"""The `pgjobs` command line end to end: real processes, a real PostgreSQL, exit codes and --json."""

from __future__ import annotations

import re

import json
import signal
import time

import psycopg
import pytest

from pgjobs.migrations import available
from pgjobs.queue import Complete, LeaseLost, Retry, enqueue_async, record_outcome


def _states(sql, dsn: str) -> dict[int, str]:
    return dict(sql(dsn, "SELECT id, state::text FROM pgjobs.jobs"))


def _job_count(sql, dsn: str) -> int:
    return sql(dsn, "SELECT count(*) FROM pgjobs.jobs")[0][0]


def _insert_job(sql, dsn: str, *, kind: str = "noop", payload: str = "{}", state: str = "queued") -> int:
    """A root job written straight into the table: for jobs the CLI rightly refuses to enqueue."""
    return sql(dsn, "INSERT INTO pgjobs.jobs (id, root_id, kind, payload, state, finished_at) "
                    "VALUES (nextval('pgjobs.job_id_seq'), currval('pgjobs.job_id_seq'), %s, %s, %s, "
                    "CASE WHEN %s IN ('succeeded', 'failed', 'cancelled') THEN now() - interval '1 hour' END) "
                    "RETURNING id", (kind, payload, state, state))[0][0]


def _enqueue_from_file(cli, sql, dsn, tmp_path, payloads) -> list[int]:
    """`pgjobs enqueue noop --from FILE`; returns the new jobs' ids (the bulk form prints only a count)."""
    path = tmp_path / "payloads.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in payloads))
    before = {r[0] for r in sql(dsn, "SELECT id FROM pgjobs.jobs")}
    assert cli.json("enqueue", "noop", "--from", str(path)) == {"enqueued": len(payloads)}
    return sorted({r[0] for r in sql(dsn, "SELECT id FROM pgjobs.jobs")} - before)


# --- 1. quickstart --------------------------------------------------------------------------------


def test_quickstart_migrate_enqueue_burst_worker_then_every_job_succeeded(make_cli, empty_dsn, sql, tmp_path):
    cli = make_cli(empty_dsn)
    every_migration = [m.label for m in available()]
    assert cli.json("migrate") == {"applied": every_migration}

    single = [cli.json("enqueue", "noop", "--payload", '{"sleep_ms": 5}')["id"] for _ in range(3)]
    bulk = tmp_path / "jobs.jsonl"
    bulk.write_text("".join(json.dumps({"sleep_ms": n % 3}) + "\n" for n in range(20)) + "\n")  # and a blank line
    assert cli.json("enqueue", "noop", "--from", str(bulk)) == {"enqueued": 20}
    assert _job_count(sql, empty_dsn) == 23

    assert cli("worker", "--burst").returncode == 0

    jobs = cli.json("jobs", "list", "--limit", "100")
    assert len(jobs) == 23
    assert {(j["kind"], j["state"], j["attempt"]) for j in jobs} == {("noop", "succeeded", 1)}
    assert set(single) <= {j["id"] for j in jobs}

    stats = cli.json("stats")
    assert [(s["queue"], s["state"], s["jobs"], s["paused"]) for s in stats["queues"]] == [
        ("default", "succeeded", 23, False)]
    assert (stats["paused"], stats["unserved_kinds"], stats["live_workers"]) == ([], [], 0)

    shown = cli.json("jobs", "show", str(single[0]))
    assert (shown["id"], shown["root_id"], shown["parent_id"], shown["kind"]) == (single[0], single[0], None, "noop")
    assert (shown["state"], shown["attempt"], shown["payload"]) == ("succeeded", 1, {"sleep_ms": 5})
    assert shown["errors"] == [] and shown["last_error"] is None and shown["finished_at"] is not None


# --- 2. bad input: see test_hostile_input.py ---------------------------------------------------------


# --- 3. cancel, retry, prune ----------------------------------------------------------------------
# There is no CLI that makes children: a parent makes them in its completion transaction. These
# tests play the worker's part with its own claim statement and `record_outcome`.


@pytest.fixture
async def aconn(fresh_dsn):
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
        yield conn


async def _claim(aconn, claim_jobs, expected_id):
    """Claim the next runnable job, as a worker would; it must be `expected_id`."""
    (job,) = await claim_jobs(aconn, limit=1)
    assert job.id == expected_id
    return job


async def _finish(aconn, job, outcome) -> None:
    async with aconn.transaction():
        await record_outcome(aconn, job, outcome)


def _children(*payloads):
    async def write(tx):
        for payload in payloads:
            await tx.enqueue_child("noop", payload)
    return write


def _child_ids(sql, dsn, parent_id):
    return [r[0] for r in sql(dsn, "SELECT id FROM pgjobs.jobs WHERE parent_id = %s ORDER BY id", (parent_id,))]


async def test_cancel_on_a_root_cancels_its_unfinished_family_and_nothing_else(cli, fresh_dsn, sql, aconn,
                                                                              claim_jobs):
    root = (await enqueue_async(aconn, "noop")).id
    # root -> c1, c2; c1 -> g1; then c2 is running under a worker's lease and g1 is queued.
    await _finish(aconn, await _claim(aconn, claim_jobs, root), Complete(_children({"n": 1}, {"n": 2})))
    c1, c2 = _child_ids(sql, fresh_dsn, root)
    await _finish(aconn, await _claim(aconn, claim_jobs, c1), Complete(_children({"n": 11})))
    (g1,) = _child_ids(sql, fresh_dsn, c1)
    running_c2 = await _claim(aconn, claim_jobs, c2)
    other = (await enqueue_async(aconn, "noop")).id
    assert _states(sql, fresh_dsn) == {root: "succeeded", c1: "succeeded", c2: "running", g1: "queued",
                                       other: "queued"}

    assert cli.json("jobs", "cancel", str(root)) == {"cancelled": sorted([c2, g1])}

    assert _states(sql, fresh_dsn) == {root: "succeeded", c1: "succeeded", c2: "cancelled", g1: "cancelled",
                                       other: "queued"}
    # The running child lost its lease: its worker can no longer commit an outcome.
    with pytest.raises(LeaseLost):
        await _finish(aconn, running_c2, Complete())


async def test_retry_makes_a_failed_job_runnable_and_a_burst_worker_completes_it(cli, fresh_dsn, sql, aconn,
                                                                                 claim_jobs):
    job_id = (await enqueue_async(aconn, "noop", max_attempts=1)).id
    await _finish(aconn, await _claim(aconn, claim_jobs, job_id), Retry("upstream said no"))
    job = "SELECT state::text, attempt, max_attempts, finished_at IS NULL FROM pgjobs.jobs WHERE id = %s"
    assert sql(fresh_dsn, job, (job_id,)) == [("failed", 1, 1, False)]

    assert cli.json("jobs", "retry", str(job_id)) == {"retried": job_id}
    assert sql(fresh_dsn, job, (job_id,)) == [("queued", 1, 2, True)]  # runnable, with one more attempt
    # Who retried it and when, as a cancel records it.
    (reason,), = sql(fresh_dsn, "SELECT last_error FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert re.fullmatch(r"retried by \S+@\S+ \(pgjobs CLI\) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", reason), reason

    cli("worker", "--burst")
    done = cli.json("jobs", "show", str(job_id))
    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    assert [(e["attempt"], e["outcome"]) for e in done["errors"]] == [(1, "retry")]  # attempt 1's record stays


async def test_prune_deletes_finished_families_and_keeps_an_unfinished_one(cli, fresh_dsn, sql, aconn, claim_jobs):
    done_root, lone_root, open_root = [(await enqueue_async(aconn, "noop")).id for _ in range(3)]
    await _finish(aconn, await _claim(aconn, claim_jobs, done_root), Complete(_children({})))
    (done_child,) = _child_ids(sql, fresh_dsn, done_root)
    await _finish(aconn, await _claim(aconn, claim_jobs, lone_root), Complete())
    await _finish(aconn, await _claim(aconn, claim_jobs, open_root), Complete(_children({})))
    (open_child,) = _child_ids(sql, fresh_dsn, open_root)
    await _finish(aconn, await _claim(aconn, claim_jobs, done_child), Complete())
    # open_root itself finished, but its family has not: open_child is still queued.
    assert _states(sql, fresh_dsn) == {done_root: "succeeded", done_child: "succeeded", lone_root: "succeeded",
                                       open_root: "succeeded", open_child: "queued"}

    assert cli.json("prune", "--older-than", "0s")["deleted"] == 3

    assert _states(sql, fresh_dsn) == {open_root: "succeeded", open_child: "queued"}


# --- 4. jobs the worker cannot run ----------------------------------------------------------------


def test_worker_leaves_unknown_kinds_queued_fails_invalid_payloads_terminally_and_completes_the_rest(
        cli, fresh_dsn, sql, tmp_path):
    # Neither can be enqueued through the CLI (it validates), so they go in by SQL.
    unknown = _insert_job(sql, fresh_dsn, kind="nope")
    invalid = _insert_job(sql, fresh_dsn, payload='{"sleep_ms": "soon"}')
    good = _enqueue_from_file(cli, sql, fresh_dsn, tmp_path, [{"sleep_ms": 1}] * 3)

    worker = cli("worker", "--burst", "--concurrency", "2")
    assert worker.returncode == 0  # burst ends: nothing left that this worker's app can run

    rows = {r[0]: r[1:] for r in sql(fresh_dsn, "SELECT id, state::text, attempt, last_error, errors "
                                                "FROM pgjobs.jobs")}
    assert rows[unknown] == ("queued", 0, None, [])  # waits for a worker whose app declares 'nope'
    state, attempt, error, errors = rows[invalid]
    assert (state, attempt) == ("failed", 1)
    assert "invalid payload for noop: sleep_ms" in error
    assert [(e["attempt"], e["outcome"], e["error"]) for e in errors] == [(1, "discard", error)]
    assert {rows[g][:2] for g in good} == {("succeeded", 1)}

    logged = worker.outcomes()
    assert sorted(e["job_id"] for e in logged) == sorted([invalid, *good])  # one line per outcome
    by_id = {e["job_id"]: e for e in logged}
    assert (by_id[invalid]["outcome"], by_id[invalid]["state"], by_id[invalid]["attempt"]) == ("discard", "failed", 1)
    assert by_id[invalid]["error"] == rows[invalid][2]
    for g in good:
        line = by_id[g]
        assert (line["kind"], line["root_id"], line["attempt"], line["outcome"], line["state"]) == (
            "noop", g, 1, "complete", "succeeded")
        assert line["duration_ms"] >= 0


# --- 5. SIGTERM -----------------------------------------------------------------------------------


def _all_running(sql, dsn, ids) -> bool:
    return sql(dsn, "SELECT count(*) = %s FROM pgjobs.jobs WHERE id = ANY(%s) AND state = 'running'",
               (len(ids), ids))[0][0]


def test_sigterm_lets_running_jobs_finish_within_the_grace_and_exits_0(cli, fresh_dsn, sql, wait_for, tmp_path):
    ids = _enqueue_from_file(cli, sql, fresh_dsn, tmp_path, [{"sleep_ms": 300}] * 3)
    worker = cli.start("worker", env=cli.env(PGJOBS_SHUTDOWN_GRACE_SECONDS="5"))
    wait_for(lambda: _all_running(sql, fresh_dsn, ids), 20, "all three jobs to be running")

    worker.signal(signal.SIGTERM)
    sent = time.monotonic()
    assert worker.wait(timeout=15) == 0
    assert time.monotonic() - sent < 4.5  # it left when the jobs were done, not at the end of the grace

    rows = sql(fresh_dsn, "SELECT state::text, attempt, snoozes FROM pgjobs.jobs WHERE id = ANY(%s)", (ids,))
    assert rows == [("succeeded", 1, 0)] * 3
    assert any(e["msg"] == "stopping: waiting up to 5.0s for 3 running jobs" for e in worker.logs()), worker.stderr
    assert sorted(e["job_id"] for e in worker.outcomes()) == sorted(ids)


def test_sigterm_past_the_grace_hands_running_jobs_back_without_spending_attempts(cli, fresh_dsn, sql, wait_for,
                                                                                  tmp_path):
    ids = _enqueue_from_file(cli, sql, fresh_dsn, tmp_path, [{"sleep_ms": 20000}] * 3)
    worker = cli.start("worker", env=cli.env(PGJOBS_SHUTDOWN_GRACE_SECONDS="0.2"))
    wait_for(lambda: _all_running(sql, fresh_dsn, ids), 20, "all three jobs to be running")

    worker.signal(signal.SIGTERM)
    sent = time.monotonic()
    assert worker.wait(timeout=15) == 0
    assert time.monotonic() - sent < 5  # prompt: nowhere near the 20 s the jobs wanted

    rows = sql(fresh_dsn, "SELECT state::text, attempt, snoozes, attempt - snoozes, lease_token, last_error,"
                          " errors FROM pgjobs.jobs WHERE id = ANY(%s)", (ids,))
    assert len(rows) == 3
    for state, attempt, snoozes, spent, token, last_error, errors in rows:
        assert (state, attempt, snoozes, spent, token) == ("queued", 0, 0, 0, None)  # the run is undone
        assert "handed back" in last_error
        assert [(e["attempt"], e["outcome"]) for e in errors] == [(1, "hand_back")]
    logged = worker.outcomes()
    assert sorted(e["job_id"] for e in logged) == sorted(ids)
    assert {(e["outcome"], e["state"]) for e in logged} == {("hand_back", "queued")}


# --- 6. SIGUSR1 -----------------------------------------------------------------------------------


def test_sigusr1_logs_what_each_task_awaits_and_the_worker_goes_on(cli, fresh_dsn, sql, wait_for, tmp_path):
    [job] = _enqueue_from_file(cli, sql, fresh_dsn, tmp_path, [{"sleep_ms": 20000}])
    worker = cli.start("worker", env=cli.env(PGJOBS_SHUTDOWN_GRACE_SECONDS="0.2"))
    wait_for(lambda: _all_running(sql, fresh_dsn, [job]), 20, "the job to be running")

    worker.signal(signal.SIGUSR1)
    tasks = wait_for(lambda: [e for e in worker.logs() if e["logger"] == "pgjobs.stacks" and "awaits" in e], 10,
                     "the task lines")
    # The job's task, down to the handler's sleep and what that awaits: where a hang would be.
    assert any(re.search(r"registry\.py:\d+ in run_noop -> .* in sleep -> awaiting \w+$", t["awaits"])
               for t in tasks), [(t["msg"], t["awaits"]) for t in tasks]
    assert any("in _listen" in t["awaits"] for t in tasks), tasks  # the listener, waiting on its socket

    worker.signal(signal.SIGTERM)  # still a worker: it stops as ever
    assert worker.wait(timeout=15) == 0
    assert sql(fresh_dsn, "SELECT state::text FROM pgjobs.jobs WHERE id = %s", (job,)) == [("queued",)]
