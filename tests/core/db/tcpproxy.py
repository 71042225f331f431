"""A TCP proxy on 127.0.0.1 in front of the test's PostgreSQL, that can stop forwarding.

`freeze()` turns every open connection into a half-open one: the sockets stay open, nothing
passes either way (a partition as the client sees it). Connections made afterwards forward
normally, so a client that drops the silent connection and reconnects gets through.
"""

from __future__ import annotations

import asyncio

from psycopg.conninfo import conninfo_to_dict, make_conninfo


class TcpProxy:
    def __init__(self, dsn: str) -> None:
        params = conninfo_to_dict(dsn)
        host, port = params.get("host") or "/tmp", int(params.get("port") or 5432)
        self._unix = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._upstream = (host, port)
        self._dsn = dsn
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, asyncio.Event]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    @property
    def dsn(self) -> str:
        port = self._server.sockets[0].getsockname()[1]
        return make_conninfo(self._dsn, host="127.0.0.1", port=port, hostaddr="127.0.0.1")

    def freeze(self) -> None:
        """Every connection open now stops forwarding, both ways, and stays open."""
        for _, _, frozen in self._pairs:
            frozen.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._unix:
            up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        frozen = asyncio.Event()
        self._pairs.append((writer, up_writer, frozen))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst, frozen))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, frozen: asyncio.Event) -> None:
        try:
            while data := await src.read(65536):
                if frozen.is_set():
                    await asyncio.Event().wait()  # swallow it and everything after: a blackhole
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not frozen.is_set():
                dst.close()

    async def close(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer, up_writer, _ in self._pairs:
            writer.close()
            up_writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
