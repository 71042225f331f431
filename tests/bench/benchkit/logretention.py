"""Audit-log retention probe (issue 16): deleting old `enrichment_log` rows in bounded batches
against daily partitions dropped whole, on a copy of the history workload's database.

    PYTHONPATH=tests/bench:tests/bench/drivers:. .venv/bin/python -m benchkit.logretention \\
        --template bench_hist_1773050_1_<checksum> --db storage_logret --delete-days 3

1. The copy: CREATE DATABASE … TEMPLATE the cached history database (≈ 10.9 M log rows over 30 days).
2. Deletes: the app's own `prune_log` (pgjobs/enrichment/log_retention.py, 5,000 rows a
   transaction) removes the oldest `--delete-days` days while a burst worker drains N no-op jobs
   (drivers/pgjobs_history_driver.py), in pairs with the same drain without it; batch times, rows/s,
   sizes before, after, and after VACUUM.
3. Partitions: the log rebuilt as a table partitioned by day on created_at (the primary key and
   the unique (job_id, attempt) index must then carry created_at), filled by INSERT … SELECT (what
   an in-place conversion of an existing log costs), the views re-pointed at it; the two view reads
   timed on both layouts; one day dropped (DETACH … CONCURRENTLY then DROP) and the unique index an
   "attach the old table as one partition" upgrade would need built, both timed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from datetime import timedelta

import psycopg
from psycopg import sql

from benchkit import dataset
from benchkit.schema import with_dbname

SIZES = """SELECT pg_relation_size('enrichment_log'), pg_indexes_size('enrichment_log'),
                  (SELECT count(*) FROM enrichment_log)"""
PARTITIONED = """
CREATE TABLE public.enrichment_log_p (LIKE public.enrichment_log_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (created_at);
ALTER TABLE public.enrichment_log_p ADD PRIMARY KEY (id, created_at);
CREATE INDEX ON public.enrichment_log_p (parent_job_id, created_at) WHERE parent_job_id IS NOT NULL;
CREATE INDEX ON public.enrichment_log_p (created_at DESC) WHERE is_root_job;
CREATE INDEX ON public.enrichment_log_p (entity_type, entity_id, created_at);
CREATE UNIQUE INDEX ON public.enrichment_log_p (job_id, attempt, created_at) WHERE job_id IS NOT NULL;
"""


def _mb(b: int) -> str:
    return f"{b / 2**20:,.0f} MB"


def sizes(conn: psycopg.Connection) -> str:
    heap, idx, rows = conn.execute(SIZES).fetchone()
    return f"{rows:,} rows, heap {_mb(heap)}, indexes {_mb(idx)}"


def drain(dsn: str, n: int, concurrency: int) -> float:
    from pgjobs_history_driver import history

    return asyncio.run(history(dsn, n, concurrency, 200))["rate"]


def delete_in_background(dsn: str, cutoff, batch: int, stop: threading.Event, out: dict,
                         paced: bool = True) -> threading.Thread:
    """prune_log's batches, timed one by one, until the cutoff is reached or `stop` is set."""
    from pgjobs.enrichment.runner import Q  # the statement prune_log sends, batch by batch

    async def go() -> None:
        after = 0
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                async with conn.transaction():
                    cur = await conn.execute(Q["prune_log"], {"cutoff": cutoff, "after": after, "limit": batch})
                    gone, after, scanned, kept = await cur.fetchone()
                out["times"].append(time.perf_counter() - started)
                out["rows"] += gone
                if kept or scanned < batch:
                    break
                if paced:  # as prune_log does: a pause as long as the batch took
                    await asyncio.sleep(out["times"][-1])
            out["done"], out["ended"] = True, time.perf_counter()

    thread = threading.Thread(target=lambda: asyncio.run(go()), daemon=True)
    thread.start()
    return thread


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchkit.logretention", description=__doc__.splitlines()[0])
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--template", required=True, help="the cached history database (benchkit.history)")
    p.add_argument("--db", default="storage_logret")
    p.add_argument("--delete-days", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--partitions-only", action="store_true", help="on the --db left by an earlier run: step 3 only")
    p.add_argument("--deletes-only", action="store_true", help="steps 1 and 2 only")
    p.add_argument("--unpaced", action="store_true", help="batches back to back (prune_log pauses after each)")
    args = p.parse_args()
    say = lambda line: print(line, flush=True)  # noqa: E731
    dsn = with_dbname(args.server, args.db)
    if args.partitions_only:
        return partitions(dsn, dataset.measure(dsn, 50), say)
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
        started = time.perf_counter()
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(args.db),
                                                                      sql.Identifier(args.template)))
        say(f"copy of {args.template}: {time.perf_counter() - started:.0f} s")
    with psycopg.connect(dsn, autocommit=True) as conn:
        say(f"log before: {sizes(conn)}")
        oldest = conn.execute("SELECT min(created_at) FROM enrichment_log").fetchone()[0]
    views_plain = dataset.measure(dsn, 50)
    cutoff = oldest + timedelta(days=args.delete_days)

    # 2. Deletes in bounded batches beside a draining worker, pairs in turns.
    stop, out = threading.Event(), {"times": [], "rows": 0, "done": False}
    free, busy = [], []
    thread = None
    started = time.perf_counter()
    for i in range(args.pairs):
        free.append(drain(dsn, args.n, args.concurrency))
        if thread is None:
            thread = delete_in_background(dsn, cutoff, args.batch, stop, out, paced=not args.unpaced)
            started = time.perf_counter()
        busy.append(drain(dsn, args.n, args.concurrency))
        overlapped = not out["done"]  # the deletes still ran when this drain ended
        say(f"  pair {i}: drain {free[-1]:,.0f} jobs/s alone, {busy[-1]:,.0f} while deleting "
            f"({busy[-1] / free[-1]:.2f}x; {out['rows']:,} rows deleted so far"
            f"{'' if overlapped else '; the deletes ended during this drain'})")
        if not overlapped:
            break
    thread.join()
    seconds = out.get("ended", time.perf_counter()) - started
    times = sorted(out["times"])
    say(f"deletes: {out['rows']:,} rows (the oldest {args.delete_days:g} days) in {seconds:.0f} s = "
        f"{out['rows'] / seconds:,.0f} rows/s, {len(times)} batches of {args.batch:,}: p50 "
        f"{statistics.median(times) * 1000:.0f} ms, p95 {times[int(len(times) * 0.95)] * 1000:.0f} ms, "
        f"max {times[-1] * 1000:.0f} ms; drain while deleting / alone: "
        f"{' '.join(f'{b / f:.2f}' for f, b in zip(free, busy))} (the last pair only partly overlapped; median "
        f"{statistics.median(b / f for f, b in zip(free, busy)):.2f}x)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        say(f"log after the deletes: {sizes(conn)}")
        t = time.perf_counter()
        conn.execute("VACUUM enrichment_log")
        say(f"VACUUM enrichment_log: {time.perf_counter() - t:.0f} s; after: {sizes(conn)} "
            "(the heap keeps its size; its free space takes the next rows)")

    if not args.deletes_only:
        partitions(dsn, views_plain, say)


def partitions(dsn: str, views_plain: dict, say) -> None:
    """3. Partitions by day, filled from the log as an in-place conversion would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        views = {name: conn.execute("SELECT pg_get_viewdef(%s::regclass)", (name,)).fetchone()[0]
                 for name in ("enrichment_timeline", "enrichment_roots")}
        conn.execute("ALTER TABLE enrichment_log RENAME TO enrichment_log_old")
        conn.execute(PARTITIONED)
        low, high = conn.execute("SELECT date_trunc('day', min(created_at)), max(created_at) "
                                 "FROM enrichment_log_old").fetchone()
        day, parts = low, 0
        while day <= high:
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF public.enrichment_log_p FOR VALUES FROM ({}) TO ({})"
                                 ).format(sql.Identifier(f"enrichment_log_{day:%Y%m%d}"), sql.Literal(day),
                                          sql.Literal(day + timedelta(days=1))))
            day, parts = day + timedelta(days=1), parts + 1
        t = time.perf_counter()
        conn.execute("INSERT INTO enrichment_log_p OVERRIDING SYSTEM VALUE SELECT * FROM enrichment_log_old")
        say(f"partitioned copy ({parts} daily partitions): INSERT … SELECT of the log took "
            f"{time.perf_counter() - t:.0f} s (an in-place conversion's rewrite, before any lock swap)")
        conn.execute("ANALYZE enrichment_log_p")
        conn.execute("ALTER TABLE enrichment_log_p RENAME TO enrichment_log")
        for name in ("enrichment_timeline", "enrichment_roots"):  # the same text, bound to the new table
            conn.execute(f"CREATE OR REPLACE VIEW public.{name} AS {views[name].replace('enrichment_log_old', 'enrichment_log')}")
    views_part = dataset.measure(dsn, 50)
    for name in ("newest_20_roots", "family"):
        a, b = views_plain[name], views_part[name]
        say(f"{name}: one table p50 {a['p50']:.2f} / p95 {a['p95']:.2f} ms; {parts} daily partitions "
            f"p50 {b['p50']:.2f} / p95 {b['p95']:.2f} ms")
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "WHERE i.inhparent = 'enrichment_log'::regclass ORDER BY c.relname LIMIT 1").fetchone()[0]
        t = time.perf_counter()
        conn.execute(sql.SQL("ALTER TABLE enrichment_log DETACH PARTITION {} CONCURRENTLY").format(sql.Identifier(first)))
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(first)))
        say(f"one day dropped (DETACH CONCURRENTLY + DROP): {(time.perf_counter() - t) * 1000:.0f} ms")
        t = time.perf_counter()
        conn.execute("CREATE UNIQUE INDEX ON enrichment_log_old (id, created_at)")
        say(f"attach-the-old-table-as-one-partition needs a unique (id, created_at) index on it: "
            f"{time.perf_counter() - t:.0f} s to build")


if __name__ == "__main__":
    main()
