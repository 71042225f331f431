"""Bench driver for pgjobs' drain in a database that keeps its history (benchkit.history).

Like pgjobs_driver.py's drain, but the tables are not truncated: only the `noop` jobs of earlier
runs are deleted first (the history database holds the data set's finished families, which must
stay), so the N no-op jobs are drained beside whatever history the database holds. The database is
migrated by the caller (with the enrichment app's component). Verified by the harness on the
`noop` jobs (benchkit.verify, workload "history").
"""

from __future__ import annotations

import asyncio

import psycopg

from pgjobs_driver import Bench, enqueue_bulk, open_pool, run_burst
from protocol import drain_result, emit, parse_args


def clear_noop(dsn: str, *, vacuum: bool = False) -> None:
    """The earlier runs' `noop` jobs out, found by the primary key above the newest other job (they
    are the newest: a `kind` filter alone read all 10 M rows); with `vacuum`, their dead rows too,
    so each timed drain starts from the same state instead of a growing debt that sends
    autovacuum over the whole 10 M-row table in the middle of a later drain (its threshold, 2 % of
    the table, is crossed after about three runs)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM pgjobs.jobs WHERE kind <> 'noop' ORDER BY id DESC LIMIT 1").fetchone()
        conn.execute("DELETE FROM pgjobs.jobs WHERE id > %s AND kind = 'noop'", (row[0] if row else 0,))
        if vacuum:
            conn.execute("VACUUM pgjobs.jobs")


async def history(dsn: str, n: int, concurrency: int, warmup: int) -> dict:
    bench = Bench()
    pool = await open_pool(dsn, max_size=4)
    try:
        clear_noop(dsn, vacuum=True)
        enqueue_bulk(dsn, "noop", min(warmup, n))
        await run_burst(bench, pool, dsn, concurrency)
        clear_noop(dsn)
        bench.executed.clear()
        enq = enqueue_bulk(dsn, "noop", n)
        watch = await run_burst(bench, pool, dsn, concurrency)
    finally:
        await pool.close()
    return drain_result("noop", n, watch, enq, bench.executed, {"concurrency": concurrency})


def main() -> None:
    args = parse_args(("history",))
    emit(asyncio.run(history(args.dsn, args.n, args.setting("concurrency", 10), args.warmup)))


if __name__ == "__main__":
    main()
