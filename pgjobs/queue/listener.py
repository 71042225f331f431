"""Wake-ups: LISTEN on a dedicated connection, probed, reconnected after it dies.

Enqueue sends `pg_notify('pgjobs', queue)`. The listener sets the producer's wake event for the
queues it serves. With a hand-off channel it also LISTENs there and holds the worker's liveness
lock (a session advisory lock: enqueue_handoff only picks workers whose lock is held), and passes
each job handed over on that channel to `handoff`. Every `probe_interval` it runs a query on the
same session: a half-open or terminated connection fails the probe, and the listener reconnects
with backoff, LISTENs again and wakes the producer so it catches up on anything enqueued while it
was deaf (the jittered poll covers the time in between).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, Iterable

import psycopg
from psycopg import sql

from pgjobs.queue.handoff import Handoff

log = logging.getLogger("pgjobs.listener")
CHANNEL = "pgjobs"


class Listener:
    def __init__(
        self,
        conninfo: str,
        queues: Iterable[str],
        wake: Callable[[], None],
        *,
        handoff: Handoff | None = None,
        probe_interval: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._queues = frozenset(queues)
        self._wake = wake
        self._handoff = handoff
        self._probe_interval = probe_interval
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.backend_pid: int | None = None

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, keepalives=1, keepalives_idle=10,
                    keepalives_interval=5, keepalives_count=3,
                ) as conn:
                    conn.add_notify_handler(self._dispatch)  # before LISTEN: none may wait in a backlog
                    await conn.execute("LISTEN pgjobs")  # CHANNEL
                    if self._handoff:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._handoff.channel)))
                        await conn.execute("SELECT pg_advisory_lock(%s)", (self._handoff.lock_key,))
                    self.backend_pid = conn.info.backend_pid
                    self.connected.set()
                    self._wake()  # catch up on whatever arrived while we were not listening
                    delay = 0.1
                    await self._listen(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost, server restarting, probe failed
                self.connected.clear()
                self.reconnects += 1
                log.warning("listener connection lost (%s); reconnecting in %.1fs", type(exc).__name__, delay)
                self._wake()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 5.0)

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        # Notifications are read in the event loop's reader callback, straight off the socket: a
        # hand-off starts its job one loop turn sooner than through psycopg's notifies(), which
        # resumes a waiting task. Those that arrive during the probe query reach _dispatch too,
        # through psycopg's notify handler.
        loop = asyncio.get_running_loop()
        pgconn = conn.pgconn
        fd = pgconn.socket
        while True:
            broken: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                try:
                    pgconn.consume_input()  # raises when the connection is gone
                    while (note := pgconn.notifies()) is not None:
                        pgconn.notify_handler(note)  # -> psycopg -> self._dispatch
                except Exception as exc:
                    loop.remove_reader(fd)
                    if not broken.done():
                        broken.set_exception(exc)

            loop.add_reader(fd, readable)
            try:
                await asyncio.wait([broken], timeout=self._probe_interval)
            finally:
                loop.remove_reader(fd)
            if broken.done():
                broken.result()  # raises: run() reconnects
            # Same-session probe: proves the socket and the LISTEN are both still alive.
            cur = await conn.execute("SELECT %s = ANY(ARRAY(SELECT pg_listening_channels()))", (CHANNEL,))
            (listening,) = await cur.fetchone()
            if not listening:
                raise psycopg.OperationalError("LISTEN registration lost")

    def _dispatch(self, note: psycopg.Notify) -> None:
        if note.channel == CHANNEL:
            if note.payload in self._queues:
                self._wake()
        elif self._handoff and note.channel == self._handoff.channel:
            self._handoff.accept(note.payload)
