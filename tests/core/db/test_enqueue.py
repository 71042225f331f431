"""Enqueue on the caller's connection: transactions, options, dedupe, bulk, lineage constraints."""

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from pgjobs.queue import JobSpec, PayloadError, enqueue, enqueue_async, enqueue_many


def _row(conn, job_id):
    return conn.execute(
        "SELECT kind, queue, payload, priority, state::text, root_id, parent_id, max_attempts, run_at - created_at"
        " FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()


def test_enqueue_joins_the_callers_transaction(shared_dsn):
    with psycopg.connect(shared_dsn) as conn:
        job = enqueue(conn, "noop", {"n": 1})
        assert job.created and job.root_id == job.id
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE id = %s", (job.id,)).fetchone()[0] == 0
        kept = enqueue(conn, "noop", {"n": 2})
        conn.commit()
    with psycopg.connect(shared_dsn) as other:
        assert _row(other, kept.id)[:5] == ("noop", "default", {"n": 2}, 0, "queued")


def test_enqueue_options_are_stored(conn):
    job = enqueue(conn, "noop", {"a": [1, 2]}, queue="bulk", priority=-5, delay=90, max_attempts=7)
    kind, queue, payload, priority, state, root, parent, max_attempts, lag = _row(conn, job.id)
    assert (kind, queue, payload, priority, state, root, parent, max_attempts) == (
        "noop", "bulk", {"a": [1, 2]}, -5, "queued", job.id, None, 7)
    assert timedelta(seconds=89) < lag < timedelta(seconds=91)


def test_enqueue_at_a_given_time(conn):
    at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    job = enqueue(conn, "noop", run_at=at)
    assert conn.execute("SELECT run_at FROM pgjobs.jobs WHERE id = %s", (job.id,)).fetchone()[0] == at


async def test_enqueue_async_on_an_async_connection(shared_dsn):
    async with await psycopg.AsyncConnection.connect(shared_dsn) as aconn:
        job = await enqueue_async(aconn, "noop", {"async": True}, priority=3)
        cur = await aconn.execute("SELECT payload, priority FROM pgjobs.jobs WHERE id = %s", (job.id,))
        assert await cur.fetchone() == ({"async": True}, 3)
        await aconn.rollback()


def test_duplicate_dedupe_key_returns_the_unfinished_job(conn):
    first = enqueue(conn, "noop", {"v": 1}, dedupe_key="album:42")
    second = enqueue(conn, "noop", {"v": 2}, dedupe_key="album:42")
    assert second.id == first.id and first.created and not second.created
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE dedupe_key = 'album:42'").fetchone()[0] == 1
    # Once the holder finished, the key is free again.
    conn.execute("UPDATE pgjobs.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", (first.id,))
    third = enqueue(conn, "noop", dedupe_key="album:42")
    assert third.created and third.id != first.id


def test_enqueue_many_inserts_in_bulk_and_skips_held_keys(conn):
    enqueue(conn, "noop", dedupe_key="held")
    specs = [JobSpec(kind="noop", payload={"i": i}, queue="bulk") for i in range(1200)]
    specs += [JobSpec(kind="noop", dedupe_key="held"), JobSpec(kind="noop", dedupe_key="new")]
    assert enqueue_many(conn, specs) == 1201
    rows = conn.execute("SELECT count(*), count(DISTINCT id), bool_and(root_id = id) FROM pgjobs.jobs"
                        " WHERE queue = 'bulk'").fetchone()
    assert rows == (1200, 1200, True)


def test_payload_must_be_a_json_object(conn):
    with pytest.raises(PayloadError, match="JSON object"):
        enqueue(conn, "noop", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="kind"):
        enqueue(conn, "", {})


def test_a_child_without_a_root_cannot_exist(conn):
    root = enqueue(conn, "noop")
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_lineage"):
        with conn.transaction():
            conn.execute("INSERT INTO pgjobs.jobs (id, root_id, parent_id, kind) "
                         "VALUES (nextval('pgjobs.job_id_seq'), currval('pgjobs.job_id_seq'), %s, 'noop')",
                         (root.id,))
    with pytest.raises(psycopg.errors.NotNullViolation):
        with conn.transaction():
            conn.execute("INSERT INTO pgjobs.jobs (parent_id, kind) VALUES (%s, 'noop')", (root.id,))


def test_enqueue_many_of_plain_jobs_copies_them_in_and_notifies(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgjobs")
        with psycopg.connect(fresh_dsn) as conn:
            specs = [JobSpec(kind="noop", payload={"i": i, "text": "tab\there \\ \"q\""}, queue="copy", priority=i % 3)
                     for i in range(3000)]
            assert enqueue_many(conn, specs) == 3000
            conn.commit()
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in notes] == ["copy"]
    with psycopg.connect(fresh_dsn) as conn:
        rows = conn.execute("SELECT count(*), bool_and(root_id = id), bool_and(state = 'queued'),"
                            " bool_and(run_at <= now()), min(priority), max(priority) FROM pgjobs.jobs").fetchone()
        sample = conn.execute("SELECT payload FROM pgjobs.jobs ORDER BY id LIMIT 1").fetchone()[0]
    assert rows == (3000, True, True, True, 0, 2)
    assert sample == {"i": 0, "text": "tab\there \\ \"q\""}
