"""A TCP proxy on 127.0.0.1 in front of PostgreSQL that injects network faults, per listener.

Each worker gets its own listener (port), so a fault can strike one worker: `blackhole` stops
forwarding in both directions while every socket stays open (half-open: nothing is lost, bytes wait
as TCP's retransmissions would, and new connections hang before reaching the server); `restore`
lets them flow again; `reset` aborts every connection (RST on both sides). The proxy runs its own
asyncio loop in a daemon thread; its methods are called from the harness's thread.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field


@dataclass
class _Listener:
    name: str
    port: int
    server: asyncio.AbstractServer
    flowing: asyncio.Event
    pipes: set["_Pipe"] = field(default_factory=set)


@dataclass(eq=False)
class _Pipe:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listeners: dict[str, _Listener] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self._thread.start()

    def _call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- control (harness thread) ------------------------------------------------------------------
    def listen(self, name: str) -> int:
        """Open a listener for one client (a worker); returns its port on 127.0.0.1."""
        return self._call(self._listen(name))

    def blackhole(self, name: str) -> None:
        self._call(self._set_flowing(name, False))

    def restore(self, name: str) -> None:
        self._call(self._set_flowing(name, True))

    def reset(self, name: str | None = None) -> int:
        """Abort the connections of one listener (or all); returns how many."""
        return self._call(self._reset(name))

    def upstream_ports(self, name: str) -> list[int]:
        """The proxy's local ports toward PostgreSQL for one listener: pg_stat_activity.client_port."""
        return self._call(self._ports(name))

    def close(self) -> None:
        try:
            self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()

    # -- the loop's side -------------------------------------------------------------------------
    async def _listen(self, name: str) -> int:
        flowing = asyncio.Event()
        flowing.set()
        holder: dict[str, _Listener] = {}
        server = await asyncio.start_server(lambda r, w: self._accept(holder["l"], r, w), "127.0.0.1", 0)
        listener = _Listener(name, server.sockets[0].getsockname()[1], server, flowing)
        holder["l"] = listener
        self._listeners[name] = listener
        return listener.port

    async def _set_flowing(self, name: str, on: bool) -> None:
        event = self._listeners[name].flowing
        event.set() if on else event.clear()

    async def _reset(self, name: str | None) -> int:
        listeners = [self._listeners[name]] if name else list(self._listeners.values())
        count = 0
        for listener in listeners:
            for pipe in list(listener.pipes):
                pipe.abort()
                count += 1
            listener.pipes.clear()
        return count

    async def _ports(self, name: str) -> list[int]:
        return [pipe.upstream.get_extra_info("sockname")[1] for pipe in self._listeners[name].pipes
                if pipe.upstream is not None and not pipe.upstream.transport.is_closing()]

    async def _close(self) -> None:
        await self._reset(None)
        for listener in self._listeners.values():
            listener.server.close()
            listener.flowing.set()
        for listener in self._listeners.values():
            await listener.server.wait_closed()
        await asyncio.sleep(0)  # let the aborted pipes' tasks finish

    async def _accept(self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pipe = _Pipe(writer)
        listener.pipes.add(pipe)
        try:
            await listener.flowing.wait()  # a blackholed SYN: the client's connect hangs
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except (OSError, asyncio.CancelledError):
            writer.transport.abort()
            listener.pipes.discard(pipe)
            return
        pipe.upstream = up_writer
        pipe.tasks = [asyncio.create_task(self._pump(listener, reader, up_writer)),
                      asyncio.create_task(self._pump(listener, up_reader, writer))]
        await asyncio.gather(*pipe.tasks, return_exceptions=True)
        pipe.abort()
        listener.pipes.discard(pipe)

    @staticmethod
    async def _pump(listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await listener.flowing.wait()  # held, not dropped: TCP would retransmit it later
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()  # one side gone: the other sees its connection end too
