"""The dashboard on a read replica (docs/scaling.md): a hot standby refuses LISTEN and its table
counters stand still, so the live stream must watch the replayed WAL instead — a job enqueued on
the primary reaches a page served from the standby without a reload."""

from __future__ import annotations

import asyncio
import shutil
import time

import psycopg

from chaoskit.cluster import Cluster, free_port
from pgjobs import migrations
from pgjobs.app import builtin_app
from pgjobs.dashboard.live import Live


def _standby(primary: Cluster) -> tuple[str, str]:
    """pg_basebackup -R of the primary into its temp dir, started on a free port: (data dir, dsn)."""
    data = primary.base / "standby"
    primary._run("pg_basebackup", "-D", str(data), "-R", "-h", "127.0.0.1", "-p", str(primary.port),
                 "-U", "postgres", "--checkpoint=fast", "--no-sync")
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data} -c hot_standby=on -c max_connections=200"
    primary._run("pg_ctl", "-D", str(data), "-l", str(primary.base / "standby.log"), "-o", options,
                 "-w", "-t", "30", "start")
    return str(data), f"postgresql://postgres@127.0.0.1:{port}/postgres"


noop = builtin_app().tasks["noop"]


def test_live_stream_on_a_hot_standby_sees_the_primarys_enqueue():
    with Cluster() as primary:
        migrations.migrate(primary.dsn())
        data, standby_dsn = _standby(primary)
        try:
            with psycopg.connect(standby_dsn) as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True

            async def watch() -> tuple[int, int]:
                live = Live(standby_dsn)
                try:
                    await live.ready()
                    before = live.version
                    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
                        noop.enqueue(conn)
                    deadline = time.monotonic() + 10
                    while live.version == before and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)  # polling a condition with a deadline
                    return before, live.version
                finally:
                    await live.close()

            before, after = asyncio.run(watch())
            assert after > before, "a change on the primary never reached the standby's live stream"
        finally:
            primary._run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
            shutil.rmtree(data, ignore_errors=True)
