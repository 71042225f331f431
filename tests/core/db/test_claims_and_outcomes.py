"""Claims (order, SKIP LOCKED, plan) and fenced outcomes: complete, retry, snooze, discard."""

import asyncio
import re
import uuid
from datetime import timedelta

import psycopg
import pytest

from pgjobs.queue import (Complete, CopyInto, Discard, JobSpec, LeaseLost, Retry, Snooze, enqueue, enqueue_many,
                          record_outcome)
from pgjobs.queue.floors import full_ranges
from pgjobs.queue.jobs import Q


@pytest.fixture
async def aconn(fresh_dsn):
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as c:
        yield c


def _enqueue(dsn, *specs):
    with psycopg.connect(dsn) as conn:
        return [enqueue(conn, s.kind, s.payload, **{k: getattr(s, k) for k in (
            "queue", "priority", "delay", "max_attempts", "backoff_base_ms", "backoff_cap_ms")}).id for s in specs]


async def _state(aconn, job_id):
    cur = await aconn.execute("SELECT state::text, attempt, snoozes, run_at - now(), last_error, finished_at IS NOT NULL,"
                              " lease_token FROM pgjobs.jobs WHERE id = %s", (job_id,))
    return await cur.fetchone()


async def test_claim_takes_priority_then_run_at_then_id_and_skips_future_jobs(fresh_dsn, aconn, claim_jobs):
    late, low, high, first, future = _enqueue(
        fresh_dsn, JobSpec(kind="noop", priority=5), JobSpec(kind="noop", priority=9),
        JobSpec(kind="noop", priority=-1), JobSpec(kind="noop", priority=5), JobSpec(kind="noop", delay=3600))
    jobs = await claim_jobs(aconn, limit=10)
    assert [j.id for j in jobs] == [high, late, first, low]
    assert all(j.attempt == 1 and j.lease_token is not None for j in jobs)
    assert future not in {j.id for j in jobs}


async def test_claim_is_limited_to_the_requested_queues(fresh_dsn, aconn, claim_jobs):
    a, b = _enqueue(fresh_dsn, JobSpec(kind="noop", queue="a"), JobSpec(kind="noop", queue="b"))
    assert [j.id for j in await claim_jobs(aconn, queues=["b"])] == [b]


async def test_two_connections_never_claim_the_same_job(fresh_dsn, claim_jobs):
    with psycopg.connect(fresh_dsn) as conn:
        enqueue_many(conn, [JobSpec(kind="noop") for _ in range(300)])
    async def claimer():
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as c:
            got = []
            while batch := await claim_jobs(c, limit=7):
                got += [j.id for j in batch]
            return got
    results = await asyncio.gather(*(claimer() for _ in range(4)))
    claimed = [i for r in results for i in r]
    assert len(claimed) == 300 and len(set(claimed)) == 300
    assert sum(1 for r in results if r) >= 2  # they really did claim side by side


@pytest.mark.parametrize("kinds", [["noop"], ["noop", "other", "third"]])
def test_claim_plan_uses_the_claim_index_after_a_bulk_load(fresh_dsn, kinds):
    with psycopg.connect(fresh_dsn) as conn:
        enqueue_many(conn, [JobSpec(kind=("noop", "other", "unserved")[i % 3], queue=("default", "b")[i % 2])
                            for i in range(20_000)])
        conn.execute("UPDATE pgjobs.jobs SET state = 'succeeded', finished_at = now() WHERE id % 50 <> 0")
        conn.commit()
        conn.execute("ANALYZE pgjobs.jobs")
        params = {"queues": ["default", "b"], "kinds": kinds, "limit": 10, "lease_seconds": 30, "worker_id": "x",
                  "channel": "c", "lock_key": 0, "idle_slots": 0, "lease_token": uuid.uuid4(),
                  "handoff_token": None, "offer_ttl": 10,
                  "offer_refresh": 0.2} | full_ranges(["default", "b"], kinds)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + Q["claim_jobs"], params).fetchall())
        # The worker runs the claim with its generic plan (plan_cache_mode = force_generic_plan): same walk.
        names = list(params)
        prepared = re.sub(r"%\((\w+)\)[sb]", lambda m: f"${names.index(m.group(1)) + 1}", Q["claim_jobs"])
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE claim AS {prepared}")
        (types,) = conn.execute("SELECT parameter_types::text[] FROM pg_prepared_statements"
                                " WHERE name = 'claim'").fetchone()
        placeholders = ", ".join(f"%s::{t}" for t in types)
        generic = "\n".join(r[0] for r in psycopg.ClientCursor(conn).execute(  # EXPLAIN takes no bind parameters
            f"EXPLAIN EXECUTE claim({placeholders})", list(params.values())).fetchall())
    for p in (plan, generic):
        assert "jobs_claim_idx" in p, p
        assert "Seq Scan on jobs" not in p and "Sort Key: jobs" not in p, p


async def test_complete_clears_the_lease(fresh_dsn, aconn, claim_jobs):
    (job_id,) = _enqueue(fresh_dsn, JobSpec(kind="noop"))
    (job,) = await claim_jobs(aconn)
    async with aconn.transaction():
        assert await record_outcome(aconn, job, Complete()) == "succeeded"
    state, attempt, _, _, error, finished, token = await _state(aconn, job_id)
    assert (state, attempt, error, finished, token) == ("succeeded", 1, None, True, None)


async def test_retry_backs_off_exponentially_then_fails_when_attempts_are_spent(fresh_dsn, aconn, claim_jobs):
    (job_id,) = _enqueue(fresh_dsn, JobSpec(kind="noop", max_attempts=2, backoff_base_ms=60_000))
    (job,) = await claim_jobs(aconn)
    async with aconn.transaction():
        assert await record_outcome(aconn, job, Retry("boom")) == "queued"
    state, attempt, _, wait, error, finished, _ = await _state(aconn, job_id)
    assert (state, attempt, error, finished) == ("queued", 1, "boom", False)
    assert timedelta(seconds=44) < wait < timedelta(seconds=76)  # 60 s ± 25 % jitter
    await aconn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    (job,) = await claim_jobs(aconn)
    async with aconn.transaction():
        assert await record_outcome(aconn, job, Retry("boom again")) == "failed"
    state, attempt, _, _, error, finished, _ = await _state(aconn, job_id)
    assert (state, attempt, error, finished) == ("failed", 2, "boom again", True)
    cur = await aconn.execute("SELECT errors FROM pgjobs.jobs WHERE id = %s", (job_id,))
    assert [e["error"] for e in (await cur.fetchone())[0]] == ["boom", "boom again"]


async def test_snooze_does_not_spend_an_attempt(fresh_dsn, aconn, claim_jobs):
    (job_id,) = _enqueue(fresh_dsn, JobSpec(kind="noop", max_attempts=1))
    for _ in range(3):
        await aconn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
        (job,) = await claim_jobs(aconn)
        async with aconn.transaction():
            assert await record_outcome(aconn, job, Snooze(120, "rate limited")) == "queued"
    state, attempt, snoozes, wait, *_ = await _state(aconn, job_id)
    assert (state, attempt, snoozes) == ("queued", 3, 3)
    assert timedelta(seconds=115) < wait <= timedelta(seconds=120)
    await aconn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    (job,) = await claim_jobs(aconn)
    assert (job.attempt, job.attempt - job.snoozes) == (4, 1)  # the 4th run is its first real attempt


async def test_discard_is_terminal_at_once(fresh_dsn, aconn, claim_jobs):
    (job_id,) = _enqueue(fresh_dsn, JobSpec(kind="noop", max_attempts=5))
    (job,) = await claim_jobs(aconn)
    async with aconn.transaction():
        assert await record_outcome(aconn, job, Discard("album 9 does not exist")) == "failed"
    assert (await _state(aconn, job_id))[:2] == ("failed", 1)


async def test_outcome_write_commits_with_the_outcome_and_children_link_to_the_root(fresh_dsn, aconn, claim_jobs):
    await aconn.execute("CREATE TABLE effects (job_id bigint, note text)")
    (root_id,) = _enqueue(fresh_dsn, JobSpec(kind="noop"))
    (root,) = await claim_jobs(aconn)

    async def spawn(tx):
        await tx.execute("INSERT INTO effects VALUES (%s, 'root')", (tx.job.id,))
        child = await tx.enqueue_child("noop", {"level": 1}, priority=2)
        assert child.root_id == root_id

    async with aconn.transaction():
        await record_outcome(aconn, root, Complete(spawn))
    (child,) = await claim_jobs(aconn)
    assert (child.parent_id, child.root_id, child.payload) == (root_id, root_id, {"level": 1})

    async def spawn_grandchild(tx):
        await tx.enqueue_child("noop", {"level": 2})

    async with aconn.transaction():
        await record_outcome(aconn, child, Complete(spawn_grandchild))
    (grandchild,) = await claim_jobs(aconn)
    # Flat lineage: the grandchild's root is the root, its parent the child.
    assert (grandchild.parent_id, grandchild.root_id) == (child.id, root_id)
    cur = await aconn.execute("SELECT id FROM pgjobs.jobs WHERE root_id = %s ORDER BY id", (root_id,))
    assert [r[0] for r in await cur.fetchall()] == [root_id, child.id, grandchild.id]


async def test_fenced_out_outcome_raises_and_rolls_back_the_whole_transaction(fresh_dsn, aconn, claim_jobs):
    await aconn.execute("CREATE TABLE effects (job_id bigint, note text)")
    (job_id,) = _enqueue(fresh_dsn, JobSpec(kind="noop"))
    (stale,) = await claim_jobs(aconn, worker_id="A", lease_seconds=0.01)
    # Worker A's lease expires; the rescuer re-queues the job and worker B claims it.
    await aconn.execute("SELECT pg_sleep(0.02)")
    await aconn.execute(Q["rescue_expired"], {"limit": 10})
    (fresh,) = await claim_jobs(aconn, worker_id="B")
    assert fresh.id == job_id and fresh.lease_token != stale.lease_token and fresh.attempt == 2

    async def late_write(tx):
        await tx.execute("INSERT INTO effects VALUES (%s, 'late child')", (tx.job.id,))
        await tx.enqueue_child("noop")

    with pytest.raises(LeaseLost, match=f"job {job_id}"):
        async with aconn.transaction():
            await aconn.execute("INSERT INTO effects VALUES (%s, 'written before the outcome')", (job_id,))
            await record_outcome(aconn, stale, Complete(late_write))
    cur = await aconn.execute("SELECT count(*) FROM effects")
    assert (await cur.fetchone())[0] == 0
    cur = await aconn.execute("SELECT count(*) FROM pgjobs.jobs WHERE root_id = %s", (job_id,))
    assert (await cur.fetchone())[0] == 1  # no child was spawned
    async with aconn.transaction():
        assert await record_outcome(aconn, fresh, Complete()) == "succeeded"


async def test_a_group_of_completions_is_fenced_job_by_job_across_claims(fresh_dsn, aconn, claim_jobs):
    """complete_jobs: jobs of two claims (two tokens) in one group; one of them was re-claimed by
    another worker meanwhile, so only its stale attempt is refused."""
    from pgjobs.queue.completer import Finished, write_outcomes

    _enqueue(fresh_dsn, *[JobSpec(kind="noop") for _ in range(3)])
    first = await claim_jobs(aconn, worker_id="A", limit=2)
    (second,) = await claim_jobs(aconn, worker_id="A", limit=1)
    await aconn.execute("UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
                        (first[0].id,))  # A stalled on this one: its lease ran out
    await aconn.execute(Q["rescue_expired"], {"limit": 10})
    (retaken,) = await claim_jobs(aconn, worker_id="B", limit=1)  # first[0] now belongs to B
    assert retaken.id == first[0].id and first[0].lease_token == first[1].lease_token != second.lease_token
    items = [Finished(job, Complete(), 0.0) for job in (*first, second)]
    await write_outcomes(aconn, items)
    assert [i.state for i in items] == [None, "succeeded", "succeeded"]
    cur = await aconn.execute("SELECT id, state::text FROM pgjobs.jobs ORDER BY id")
    assert await cur.fetchall() == [(first[0].id, "running"), (first[1].id, "succeeded"), (second.id, "succeeded")]


async def test_outcome_rows_commit_only_with_a_job_that_keeps_its_lease_and_a_refused_row_fails_only_its_job(
        fresh_dsn, aconn, claim_jobs):
    """`rows` ride on the outcome and are COPYed in the group's transaction. A fenced-out job's rows
    are dropped; a job whose row the table refuses (or whose rows are malformed) becomes a failed
    attempt without them, and the rest of the group keeps theirs."""
    from pgjobs.queue.completer import Finished, write_outcomes

    await aconn.execute("CREATE TABLE notes (job_id bigint NOT NULL CHECK (job_id > 0), tags text[])")
    notes = CopyInto("COPY notes (job_id, tags) FROM STDIN", ("int8", "text[]"))
    _enqueue(fresh_dsn, *[JobSpec(kind="noop") for _ in range(5)])
    jobs = await claim_jobs(aconn, worker_id="A", limit=5)
    await aconn.execute("UPDATE pgjobs.jobs SET lease_token = gen_random_uuid() WHERE id = %s", (jobs[0].id,))
    fenced, retried, refused, twice, malformed = jobs
    items = [
        Finished(fenced, Complete(rows=[(notes, (fenced.id, ["lost"]))]), 0.0),
        Finished(retried, Retry("try later", rows=[(notes, (retried.id, ["b", 'q"uote', "back\\slash"]))]), 0.0),
        Finished(refused, Complete(rows=[(notes, (-1, ["refused"]))]), 0.0),
        Finished(twice, Complete(rows=[(notes, (twice.id, ["d"])), (notes, (twice.id, []))]), 0.0),
        Finished(malformed, Complete(rows=[(notes.statement, (malformed.id, ["m"]))]), 0.0),
    ]
    clean, troubled = [items[0], items[1], items[3]], [items[2], items[4]]
    await write_outcomes(aconn, clean)  # one transaction, no replay
    await write_outcomes(aconn, troubled)  # replayed job by job
    assert [i.state for i in items] == [None, "queued", "queued", "succeeded", "queued"]
    assert "CheckViolation" in items[2].write_error
    assert items[4].write_error == "TypeError: rows take (CopyInto, values) pairs, not str"
    cur = await aconn.execute("SELECT job_id, tags FROM notes ORDER BY job_id, cardinality(tags) DESC")
    assert await cur.fetchall() == [(retried.id, ["b", 'q"uote', "back\\slash"]), (twice.id, ["d"]), (twice.id, [])]
    for job in (refused, malformed):
        assert "completion write failed" in (await _state(aconn, job.id))[4]
