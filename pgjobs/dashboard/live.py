"""Live updates: one LISTEN connection per server process, fanned out to every open page as
Server-Sent Events (`event: change`), debounced.

What wakes it: NOTIFY pgjobs (every enqueue says it) and, once a second, the write counters of the
watched tables in pg_stat_user_tables (completions and audit rows send no NOTIFY; the counters are
one cheap catalog read whatever the table size). On a hot standby (a read replica serving the
dashboard) LISTEN is refused and those counters stand still, so the mark is the replayed WAL position
instead: any change the primary makes moves it. Pages re-fetch their live regions on `change` and
poll on their own when the stream is down (see templates/base.html).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import psycopg
from starlette.requests import Request
from starlette.responses import StreamingResponse

WATERMARK = """SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
FROM pg_stat_user_tables
WHERE relid IN (SELECT relid FROM pg_partition_tree('pgjobs.jobs') WHERE isleaf)
   OR (schemaname, relname) = ('public', 'enrichment_log')"""
REPLICA_WATERMARK = "SELECT pg_last_wal_replay_lsn()::text"
DEBOUNCE = 0.5  # seconds: a burst of changes is one event
KEEPALIVE = 15.0
LIFETIME = 300.0  # seconds: a stream then ends and the browser reconnects (so none outlives a shutdown long)


class Live:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.version = 0
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()  # LISTEN is in place: a change from now on is not missed
        self._task: asyncio.Task | None = None

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _listen(self) -> None:
        last = None
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    replica = (await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone())[0]
                    if not replica:
                        await conn.execute("LISTEN pgjobs")
                    while True:
                        # Stats of other backends reach the view at their next flush (<= 1 s).
                        await conn.execute("SELECT pg_stat_clear_snapshot()")
                        mark = (await (await conn.execute(REPLICA_WATERMARK if replica else WATERMARK)).fetchone())[0]
                        if last is not None and mark != last:
                            self._bump()
                        last = mark
                        self._ready.set()
                        async for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._bump()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away: retry, the pages poll meanwhile
                await asyncio.sleep(2.0)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def ready(self, timeout: float = 5.0) -> None:
        """Start the listener and wait (bounded) until it listens."""
        self.start()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    async def changes(self, since: int | None = None) -> AsyncIterator[int | None]:
        """Yield the version after each (debounced) change, None as a keepalive. `since`: the version
        the page was rendered at (pages start the listener), so a change between the render and the
        stream's connection is not missed."""
        self.start()
        seen = self.version if since is None else since
        while True:
            changed = self._changed
            if self.version == seen:
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE)
                except asyncio.TimeoutError:
                    yield None
                    continue
            await asyncio.sleep(DEBOUNCE)
            seen = self.version
            yield seen

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


async def events(request: Request) -> StreamingResponse:
    live: Live | None = request.app.state.runtime.live

    async def stream() -> AsyncIterator[str]:
        if live is not None:
            await live.ready()  # the first line means: changes from here on reach this stream
        yield "retry: 3000\n\n"
        if live is None:
            return
        ends = asyncio.get_running_loop().time() + LIFETIME
        since = request.query_params.get("since", "")
        async for version in live.changes(int(since) if since.isdigit() else None):
            if await request.is_disconnected() or asyncio.get_running_loop().time() > ends:
                return
            yield ": keepalive\n\n" if version is None else f"event: change\ndata: {version}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
