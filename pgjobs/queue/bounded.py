"""Statement timeouts scoped to the queue's own statements on pool connections handlers share.

The pool's sessions carry no statement_timeout (handlers' reads and writes run on them and may
rightly take long); the queue's upkeep statements (worker row, lease extension, limiter) run in a
transaction that sets it locally instead, so a stalled server never holds them forever.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import psycopg


@asynccontextmanager
async def bounded(conn: psycopg.AsyncConnection, seconds: float, *,
                  lock_timeout: float = 0.0) -> AsyncIterator[psycopg.AsyncConnection]:
    """A transaction whose statements time out after `seconds` (0: no limit), and give up waiting
    for a lock after `lock_timeout` (0: the session's own); SET LOCAL, so the session's settings are back after it."""
    async with conn.transaction():
        timeout = str(int(round(seconds * 1000)))
        if lock_timeout:
            await conn.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                               (timeout, str(max(1, int(round(lock_timeout * 1000))))))
        else:
            await conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
        yield conn
