"""Bench driver for pgjobs' idle poll behind an old snapshot: M jobs drained while another session
holds a REPEATABLE READ snapshot, then the worker's own claim statement timed on the empty queue.

Run by the harness like pgjobs_driver.py (project interpreter, PYTHONPATH=repo root + drivers):
`python pgjobs_horizon_driver.py poll --dsn URL --n M [--set runs=200] [--set concurrency=2000]`.

1. A second session opens `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1 FROM …` and keeps it
   (its backend_xmin is checked: vacuum can remove nothing newer while it lives).
2. M `noop` jobs go in through the public bulk API (`enqueue_many`, chunked) and a real burst
   Worker drains them (pgjobs_driver's handlers and worker set-up): whatever the storage does with
   claimed and finished jobs is what gets measured, nothing here imitates it.
3. The claim an idle worker at the default concurrency (10) sends, on a connection set up as the
   worker's claimer (autocommit, prepared, force_generic_plan), is timed `runs` times, and one
   run's `EXPLAIN (ANALYZE, BUFFERS)` gives the buffers it touched. The claim ranges are the
   draining worker's own (its claim floors, pgjobs.queue.floors); the same claim over whole ranges
   (what the worker sends once every few seconds, and what a worker that never claimed sends) is
   timed too (`full_scan`).
4. The snapshot ends, `VACUUM pgjobs.jobs` runs, and 3 is repeated: the same queue without the
   snapshot's dead rows, for comparison.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import uuid

import psycopg

from pgjobs import migrations
from pgjobs.queue.floors import ClaimFloors, full_ranges
from pgjobs.queue.jobs import Q
from pgjobs_driver import Bench, enqueue_bulk, open_pool, reset, run_burst
from protocol import emit, parse_args

WORKER_DEFAULT_CONCURRENCY = 10  # pgjobs.settings: the worker's default
CHUNK = 100_000  # jobs per enqueue transaction: bounded memory at M = 1,000,000
HOLDER_TABLE = "bench_horizon_holder"


class Snapshot:
    """Another session's REPEATABLE READ snapshot, held until release()."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {HOLDER_TABLE} (id int)")
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self.conn.execute(f"SELECT 1 FROM {HOLDER_TABLE}").fetchall()
        self.xmin = self.conn.execute(
            "SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()[0]
        if self.xmin is None:
            raise RuntimeError("the snapshot session holds no xmin: the horizon would not be held")

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.execute("COMMIT")
            self.conn.close()


def claim_params(query: str, limit: int, idle_slots: int, ranges: dict) -> dict:
    """The parameters a Worker passes to its claim (worker.py `_claim`), for an idle worker.

    Read from the statement's own placeholders so that a new parameter fails loudly here rather
    than timing some other statement."""
    known = {"queues": ["default"], "limit": limit, "lease_seconds": 30.0, "worker_id": "bench-horizon",
             "channel": f"pgjobs_w_{uuid.uuid4().hex[:16]}", "lock_key": 1, "idle_slots": idle_slots,
             "lease_token": uuid.uuid4(), "handoff_token": uuid.uuid4(), "offer_ttl": 10,
             "offer_refresh": 0.2, "kinds": ["noop"]} | ranges
    names = set(re.findall(r"%\((\w+)\)[sbt]", query))
    unknown = names - known.keys()
    if unknown:
        raise RuntimeError(f"claim_jobs takes parameters this driver does not know: {sorted(unknown)}")
    return {name: known[name] for name in names}


def time_claims(dsn: str, runs: int, ranges: dict) -> dict:
    """p50/p95/p99 of the idle worker's claim, and one run's EXPLAIN (ANALYZE, BUFFERS)."""
    concurrency = WORKER_DEFAULT_CONCURRENCY
    limit = max(1, min(1000, concurrency // 2))  # the worker's claim_batch
    query = Q["claim_jobs"]
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("SET enable_seqscan = off")  # as the worker's claimer (pgjobs.queue.producer)
        samples = []
        for _ in range(runs + 5):  # 5 warm-ups: prepare, first offer written
            params = claim_params(query, limit, concurrency, ranges) | {"lease_token": uuid.uuid4()}
            started = time.perf_counter()
            claimed = conn.execute(query, params).fetchall()
            samples.append((time.perf_counter() - started) * 1000)
            if claimed:
                raise RuntimeError(f"the queue is not empty: the idle claim got {len(claimed)} job(s)")
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query,
                            claim_params(query, limit, concurrency, ranges)).fetchone()[0][0]
    cuts = statistics.quantiles(samples[5:], n=100, method="inclusive")
    top = plan["Plan"]
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(samples[5:]), "samples": runs,
            "buffers_hit": top.get("Shared Hit Blocks", 0), "buffers_read": top.get("Shared Read Blocks", 0),
            "buffers": top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0),
            "explain_ms": plan.get("Execution Time"), "limit": limit}


async def fill(dsn: str, m: int, concurrency: int) -> tuple[Bench, float, float, ClaimFloors]:
    """Enqueue m noop jobs (chunked transactions), then drain them with a burst Worker."""
    bench = Bench()
    started = time.perf_counter()
    for start in range(0, m, CHUNK):
        enqueue_bulk(dsn, "noop", min(CHUNK, m - start))
    enqueue_seconds = time.perf_counter() - started
    pool = await open_pool(dsn, max_size=4)
    workers: list = []
    try:
        watch = await run_burst(bench, pool, dsn, concurrency, workers=workers)
    finally:
        await pool.close()
    return bench, enqueue_seconds, watch.seconds, workers[0]._floors


def poll(dsn: str, m: int, runs: int, concurrency: int) -> dict:
    reset(dsn)
    snapshot = Snapshot(dsn)
    try:
        bench, enqueue_seconds, drain_seconds, floors = asyncio.run(fill(dsn, m, concurrency))
        ranges = floors.params(claim=False)
        held = time_claims(dsn, runs, ranges)
        full = time_claims(dsn, max(20, runs // 10), full_ranges(["default"], ["noop"]))
        with psycopg.connect(dsn, autocommit=True) as conn:
            dead = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables"
                                " WHERE relid = 'pgjobs.jobs_live'::regclass").fetchone()
    finally:
        snapshot.release()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM pgjobs.jobs")
    after = time_claims(dsn, runs, ranges)
    return held | {
        "n": m, "seconds": drain_seconds, "rate": m / drain_seconds, "enqueue_seconds": enqueue_seconds,
        "enqueue_rate": m / enqueue_seconds, "snapshot_xmin": snapshot.xmin, "n_dead_tup": dead[0] if dead else None,
        "after_vacuum": after, "full_scan": full, "executed": bench.executed,
        "setting": {"jobs_behind_snapshot": m, "fill_concurrency": concurrency, "poll_concurrency": 10},
    }


def main() -> None:
    args = parse_args(("poll",))
    migrations.migrate(args.dsn)  # the harness gives us a fresh database; a migrated one is a no-op
    emit(poll(args.dsn, args.n, args.setting("runs", 200), args.setting("concurrency", 2000)))


if __name__ == "__main__":
    main()
