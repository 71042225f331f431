"""Wake-ups: LISTEN on a dedicated connection, probed, reconnected after it dies.

Enqueue sends `pg_notify('pgjobs', queue)`. The listener sets the producer's wake event for the
queues it serves. With a hand-off channel it also LISTENs there, holds the worker's liveness
lock (a session advisory lock: enqueue_handoff only picks workers whose lock is held), passes
each job handed over on that channel to `handoff`, and its probes refresh the worker's offer
(pgjobs.queue.handoff: an offer nobody refreshes expires). Every `probe_interval` it runs a query on the
same session, bounded by `probe_timeout`: a half-open, stalled or terminated connection fails the
probe (or never answers it), the listener drops it and reconnects with backoff, LISTENs again and
wakes the producer so it catches up on anything enqueued while it was deaf (the jittered poll
covers the time in between). `connected` is clear while it is not listening: the worker offers
nothing then.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable, Iterable, Mapping

import psycopg
from psycopg import sql

from pgjobs.queue.handoff import Handoff
from pgjobs.queue.jobs import Q

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
        probe_timeout: float = 5.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`connect_options`: psycopg connect() keywords (pgjobs.database.Timeouts.options)."""
        self._conninfo = conninfo
        self._queues = frozenset(queues)
        self._wake = wake
        self._handoff = handoff
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._options = dict(connect_options or {"keepalives": 1})
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.backend_pid: int | None = None

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                connecting = psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, **self._options)
                # connect_timeout bounds libpq's own wait, the session's statement_timeout the
                # setup statements; this is the backstop for the whole connect.
                async with await asyncio.wait_for(connecting, self._probe_timeout + 10) as conn:
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
            # Same-session probe: proves the socket and the LISTEN are both still alive. A peer that
            # stops answering (half-open TCP) is given probe_timeout, never forever.
            probe = asyncio.ensure_future(self._probe(conn))
            await asyncio.wait([probe], timeout=self._probe_timeout)
            if not probe.done():
                # Drop the socket first: cancelling a running query would make psycopg send a
                # cancel request to the peer that does not answer and wait for it.
                conn.pgconn.finish()
                probe.cancel()
                await asyncio.wait([probe])
                raise psycopg.OperationalError(f"listener probe unanswered after {self._probe_timeout}s")
            listening = probe.result()
            if not listening:
                raise psycopg.OperationalError("LISTEN registration lost")

    async def _probe(self, conn: psycopg.AsyncConnection) -> bool:
        # The same statement refreshes our hand-off offer, if one stands (pgjobs.queue.handoff).
        offer = {"worker_id": self._handoff.worker_id, "offer_ttl": self._handoff.offer_ttl} if self._handoff \
            else {"worker_id": "", "offer_ttl": 0}
        cur = await conn.execute(Q["listener_probe"], offer)
        (listening,) = await cur.fetchone()
        return bool(listening)

    def _dispatch(self, note: psycopg.Notify) -> None:
        if note.channel == CHANNEL:
            if note.payload in self._queues:
                self._wake()
        elif self._handoff and note.channel == self._handoff.channel:
            self._handoff.accept(note.payload)
