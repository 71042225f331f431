"""PostgreSQL's own wake-up floor: no queue, just the two steps any durable PostgreSQL queue's
wake-up has to take. One connection INSERTs a row and NOTIFYs its id in one autocommit statement
(a durable commit: the WAL is flushed before the notification leaves); another connection of the
same process LISTENs. Latency = send of the INSERT -> notification received, with the same
spacing and sample counts as the queues' wake-up runs, so the table shows how much of each
queue's figure is PostgreSQL's and how much is the queue's.

`python floor_driver.py wake --dsn URL --n 0 [--warmup W] [--samples S]`; the harness checks that
every inserted row's notification arrived exactly once ("executed" = ids received).
"""

from __future__ import annotations

import asyncio
import time

import psycopg

from protocol import emit, parse_args, spacing

TABLE = "CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, seq int NOT NULL)"
INSERT = ("WITH ins AS (INSERT INTO bench_floor (seq) VALUES (%s) RETURNING id) "
          "SELECT pg_notify('bench_floor', id::text) FROM ins")


async def wake(args) -> dict:
    async with await psycopg.AsyncConnection.connect(args.dsn, autocommit=True) as listener, \
            await psycopg.AsyncConnection.connect(args.dsn, autocommit=True) as conn:
        await conn.execute(TABLE)
        await conn.execute("TRUNCATE bench_floor")
        await listener.execute("LISTEN bench_floor")
        total = args.warmup + args.samples
        sent: dict[int, float] = {}
        received: dict[int, float] = {}
        ids: list[int] = []  # every notification received, duplicates included

        async def listen() -> None:
            async for note in listener.notifies():
                job_id = int(note.payload)
                received.setdefault(job_id, time.perf_counter())
                ids.append(job_id)

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.5)  # both sessions idle when we start, as in the queues' runs
        for seq in range(total):
            sent[seq] = time.perf_counter()
            await conn.execute(INSERT, (seq,))
            await asyncio.sleep(spacing(args))
        cur = await conn.execute("SELECT seq, id FROM bench_floor")
        ids_by_seq = dict(await cur.fetchall())
        deadline = time.monotonic() + 10
        while len(received) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
    latencies = [(received[ids_by_seq[s]] - sent[s]) * 1000 for s in range(args.warmup, total)
                 if ids_by_seq.get(s) in received]
    return {"n": total, "latencies_ms": latencies, "executed": ids, "setting": {}}


def main() -> None:
    args = parse_args(("wake",))
    emit(asyncio.run(wake(args)))


if __name__ == "__main__":
    main()
