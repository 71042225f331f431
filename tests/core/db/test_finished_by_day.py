"""Finished jobs by day (queue migration 0012): jobs_finished is range-partitioned on finished_at,
one partition per UTC day made ahead by pgjobs.maintain_finished_partitions, a default partition
for what no day holds. A database of the previous layout upgrades in place (its finished rows
become jobs_finished_history), new ends land in today's partition, days are made ahead and emptied
past days dropped, and a worker makes the days at its start.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import psycopg

from pgjobs import migrations
from pgjobs.queue import Registry
from pgjobs.queue.jobs import Q
from pgjobs.queue.maintenance import maintain_partitions

from test_finished_apart import migrated_before, today_partition
from workertools import running_worker


def _leaves(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT relid::text FROM pg_partition_tree('pgjobs.jobs_finished') WHERE isleaf").fetchall()
    return {row[0] for row in rows}


def _day(at: datetime) -> str:
    return f"pgjobs.jobs_finished_{at.astimezone(timezone.utc):%Y%m%d}"


def _where(conn: psycopg.Connection, job: int) -> str:
    return conn.execute("SELECT tableoid::regclass::text FROM pgjobs.jobs WHERE id = %s", (job,)).fetchone()[0]


def _finished(conn: psycopg.Connection, finished_at: str | None) -> int:
    """A finished job written straight into pgjobs.jobs, as a one-off statement of anyone's would."""
    return conn.execute("INSERT INTO pgjobs.jobs (id, root_id, kind, state, attempt, finished_at)"
                        " SELECT n, n, 'k', 'succeeded', 1, %s FROM nextval('pgjobs.job_id_seq') AS n RETURNING id",
                        (finished_at,)).fetchone()[0]


def test_an_upgrade_keeps_the_finished_rows_as_history_and_new_ends_go_to_today(empty_dsn):
    migrated_before(empty_dsn, 12)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        old = [_finished(conn, "2024-01-01 00:00+00"), _finished(conn, "now()")]
        undated = _finished(conn, None)
        conn.execute("CREATE VIEW public.my_finished AS SELECT id, state FROM pgjobs.jobs_finished")
        before = conn.execute("SELECT id, finished_at FROM pgjobs.jobs ORDER BY id").fetchall()

    assert [m.version for m in migrations.migrate(empty_dsn)] == [
        m.version for m in migrations.QUEUE.migrations() if m.version >= 12]  # 12 and any later

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT id, finished_at FROM pgjobs.jobs ORDER BY id").fetchall() == before
        assert [_where(conn, job) for job in old] == ["pgjobs.jobs_finished_history"] * 2
        assert _where(conn, undated) == "pgjobs.jobs_finished_default"  # a range holds no NULL
        now = conn.execute("SELECT now()").fetchone()[0]
        days = {_day(now + timedelta(days=n)) for n in range(3)}
        assert _leaves(conn) == {"pgjobs.jobs_finished_history", "pgjobs.jobs_finished_default"} | days
        # a job that ends after the upgrade goes to today's partition; the user's view reads it
        new = _finished(conn, "now()")
        assert _where(conn, new) == today_partition(conn)
        assert {row[0] for row in conn.execute("SELECT id FROM public.my_finished")} == {*old, undated, new}
        # the history's rows are found by id and by root as before (a retry moves one back)
        assert conn.execute(Q["retry_job"], {"id": old[0], "reason": "retried by test"}).fetchall()
        assert _where(conn, old[0]) == "pgjobs.jobs_live"


def test_days_are_made_ahead_above_what_the_default_caught_and_emptied_past_days_dropped(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
        later = now + timedelta(days=5)
        # a day not made yet: the row waits in the default, and that day's partition begins above it
        caught = _finished(conn, later.isoformat())
        assert _where(conn, caught) == "pgjobs.jobs_finished_default"
        made = conn.execute("SELECT partition, action FROM pgjobs.maintain_finished_partitions(%s)",
                            (timedelta(days=6),)).fetchall()
        assert made == [(_day(now + timedelta(days=n)).removeprefix("pgjobs."), "made") for n in range(3, 7)]
        assert _where(conn, caught) == "pgjobs.jobs_finished_default"
        bound = conn.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = %s::regclass",
                             (_day(later),)).fetchone()[0]
        assert bound.startswith(f"FOR VALUES FROM ('{(later + timedelta(microseconds=1)):%Y-%m-%d %H:%M:%S}")
        after = _finished(conn, (later + timedelta(seconds=1)).isoformat())
        assert _where(conn, after) == _day(later)
        # a second call has nothing to do
        assert conn.execute("SELECT * FROM pgjobs.maintain_finished_partitions(%s)",
                            (timedelta(days=6),)).fetchall() == []

        # three days on: today's and tomorrow's partitions are past; the one holding a row stays
        kept = _finished(conn, "now()")
        conn.execute(f"ANALYZE {today_partition(conn)}")
        done = conn.execute("SELECT partition, action FROM pgjobs.maintain_finished_partitions(%s, %s)",
                            (timedelta(days=2), now + timedelta(days=3))).fetchall()
        dropped = {p for p, action in done if action == "dropped"}
        assert dropped == {_day(now + timedelta(days=n)).removeprefix("pgjobs.") for n in (1, 2)}
        assert today_partition(conn) in _leaves(conn)
        assert _where(conn, kept) == today_partition(conn)
        assert "pgjobs.jobs_finished_history" in _leaves(conn)  # never dropped: the upgrade's rows


def test_a_reader_of_the_table_puts_a_drop_off_to_the_next_call(fresh_dsn):
    """Dropping waits 100 ms at most for jobs_finished: a reader holding it means 'busy', not a stall."""
    with psycopg.connect(fresh_dsn, autocommit=True) as conn, psycopg.connect(fresh_dsn) as reader:
        now = conn.execute("SELECT now()").fetchone()[0]
        reader.execute("SELECT count(*) FROM pgjobs.jobs_finished")  # holds ACCESS SHARE until it ends
        done = conn.execute("SELECT partition, action FROM pgjobs.maintain_finished_partitions(%s, %s)",
                            (timedelta(days=0), now + timedelta(days=1))).fetchall()
        assert (today_partition(conn).removeprefix("pgjobs."), "busy") in done
        reader.rollback()
        assert today_partition(conn) in _leaves(conn)
        done = conn.execute("SELECT partition, action FROM pgjobs.maintain_finished_partitions(%s, %s)",
                            (timedelta(days=0), now + timedelta(days=1))).fetchall()
        assert (today_partition(conn).removeprefix("pgjobs."), "dropped") in done


def _drop_tomorrow(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tomorrow = _day(conn.execute("SELECT now() + interval '1 day'").fetchone()[0])
        conn.execute(f"DROP TABLE {tomorrow}")
        assert tomorrow not in _leaves(conn)
    return tomorrow


def test_maintain_partitions_remakes_a_missing_day(fresh_dsn):
    tomorrow = _drop_tomorrow(fresh_dsn)

    async def maintained() -> list[tuple[str, str]]:
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as aconn:
            return await maintain_partitions(aconn)

    assert asyncio.run(maintained()) == [(tomorrow.removeprefix("pgjobs."), "made")]
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert tomorrow in _leaves(conn)


async def test_a_worker_makes_the_days_ahead_at_its_start(fresh_dsn):
    tomorrow = _drop_tomorrow(fresh_dsn)
    async with running_worker(fresh_dsn, Registry()):
        async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
            deadline = asyncio.get_running_loop().time() + 10
            while asyncio.get_running_loop().time() < deadline:  # the rescuer's first turn makes it
                cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (tomorrow,))
                if (await cur.fetchone())[0]:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{tomorrow} was not made within 10 s of the worker's start")


async def test_the_dashboards_estimated_counts_add_up_every_partition(fresh_dsn, monkeypatch):
    """Past the cap the overview estimates finished jobs from each partition's statistics and row
    estimate: rows in the history and in today's partition are both counted."""
    from psycopg.rows import dict_row

    from pgjobs.dashboard import overview

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        for finished_at, state, n in (("2024-01-01 00:00+00", "succeeded", 30), ("now()", "succeeded", 20),
                                      ("now()", "failed", 5)):
            conn.execute("INSERT INTO pgjobs.jobs (id, root_id, kind, state, attempt, finished_at)"
                         " SELECT n, n, 'k', %s, 1, %s"
                         " FROM (SELECT nextval('pgjobs.job_id_seq') AS n FROM generate_series(1, %s)) s",
                         (state, finished_at, n))
        conn.execute("ANALYZE pgjobs.jobs_finished_history, pgjobs.jobs_finished_default")
        conn.execute(f"ANALYZE {today_partition(conn)}")
    monkeypatch.setattr(overview, "COUNT_CAP", 10)
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True, row_factory=dict_row) as aconn:
        async with aconn.cursor() as cur:
            table, how = await overview.counts(cur)
    assert how == "estimated"
    assert table == {"default": {"succeeded": 50, "failed": 5}}
