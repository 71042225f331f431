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
async def bounded(conn: psycopg.AsyncConnection, seconds: float) -> AsyncIterator[psycopg.AsyncConnection]:
    """A transaction whose statements time out after `seconds` (0: no limit); SET LOCAL, so the
    session's own setting is back after it."""
    async with conn.transaction():
        await conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(round(seconds * 1000))),))
        yield conn
