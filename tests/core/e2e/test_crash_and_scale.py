"""Several worker processes on one queue, and a worker killed with SIGKILL in the middle of a job."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from pgjobs.queue import enqueue

DRILL_WORKER = Path(__file__).with_name("drill_worker.py")
pytestmark = pytest.mark.slow


def test_four_burst_workers_drain_2000_jobs_each_claimed_exactly_once(cli, fresh_dsn, sql, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"sleep_ms": 5}\n' * 2000)
    assert cli.json("enqueue", "noop", "--from", str(jobs)) == {"enqueued": 2000}

    workers = [cli.start("worker", "--burst", "--concurrency", "50") for _ in range(4)]
    codes = [w.wait(timeout=60) for w in workers]
    assert codes == [0, 0, 0, 0], [w.stderr[-2000:] for w in workers]

    rows = sql(fresh_dsn, "SELECT id, state::text, attempt, worker_id FROM pgjobs.jobs")
    assert len(rows) == 2000
    # A job claimed twice (by two workers, or after a lost lease) would show attempt 2.
    assert Counter((state, attempt) for _, state, attempt, _ in rows) == {("succeeded", 1): 2000}

    # worker_id is host:pid:random; each process logged exactly the jobs the table says it ran.
    ran_by = {w.pid: set() for w in workers}
    for job_id, _, _, worker_id in rows:
        ran_by[int(worker_id.split(":")[1])].add(job_id)
    for worker in workers:
        logged = [e["job_id"] for e in worker.outcomes()]
        assert len(logged) == len(set(logged)) and set(logged) == ran_by[worker.pid]
    # Every process had its share when they all got going together; on a loaded machine one may
    # start only after the others have drained the queue (it then exits 0 having run nothing), so
    # demand at least two: the point is that they claimed side by side without a double claim.
    busy = [pid for pid, ids in ran_by.items() if ids]
    assert len(busy) >= 2, {pid: len(ids) for pid, ids in ran_by.items()}


def test_kill_9_mid_job_the_lease_expires_and_the_retry_commits_the_only_effect(make_cli, fresh_dsn, sql, procs,
                                                                                 wait_for):
    sql(fresh_dsn, "CREATE TABLE drill_effects (job_id bigint NOT NULL, attempt int NOT NULL)")
    cli = make_cli(fresh_dsn)
    env = cli.env(PGJOBS_LEASE_SECONDS="1.5", PGJOBS_POLL_INTERVAL="0.2")
    first = procs.start([sys.executable, str(DRILL_WORKER), "drill-a"], env)
    with psycopg.connect(fresh_dsn) as conn:  # the CLI knows no `drill` kind; the library enqueue does not care
        job_id = enqueue(conn, "drill", {"sleep_ms": 60_000}).id
    wait_for(lambda: sql(fresh_dsn, "SELECT state = 'running' AND worker_id = 'drill-a' FROM pgjobs.jobs "
                                    "WHERE id = %s", (job_id,))[0][0], 20, "drill-a to be running the job")

    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL

    second = procs.start([sys.executable, str(DRILL_WORKER), "drill-b", "--burst"], env)
    wait_for(lambda: sql(fresh_dsn, "SELECT state = 'succeeded' FROM pgjobs.jobs WHERE id = %s",
                         (job_id,))[0][0], 30, "the rescued job to succeed")
    assert second.wait(timeout=20) == 0

    ((state, attempt, worker_id, errors),) = sql(
        fresh_dsn, "SELECT state::text, attempt, worker_id, errors FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert (state, attempt, worker_id) == ("succeeded", 2, "drill-b")
    # The killed attempt wrote nothing; the retry's effect committed exactly once.
    assert sql(fresh_dsn, "SELECT job_id, attempt FROM drill_effects") == [(job_id, 2)]
    assert [(e["attempt"], e["outcome"], e["worker"]) for e in errors] == [(1, "lease_expired", "drill-a")]
    rescued = [e for e in second.logs() if e["msg"] == "rescued job"]
    assert [(e["job_id"], e["attempt"], e["state"]) for e in rescued] == [(job_id, 1, "queued")]
    assert [(e["job_id"], e["attempt"], e["state"]) for e in second.outcomes()] == [(job_id, 2, "succeeded")]
