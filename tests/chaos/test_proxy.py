"""The chaos proxy does what the scenarios rely on: passes bytes, holds them (sockets open) while
blackholed and delivers them on restore, and resets connections."""

from __future__ import annotations

import socket
import socketserver
import threading
from typing import Iterator

import pytest

from chaoskit.proxy import Proxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = Proxy("127.0.0.1", server.server_address[1])
    yield proxy
    proxy.close()
    server.shutdown()
    server.server_close()


def _client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def test_blackhole_holds_traffic_with_the_socket_open_and_restore_delivers_it(proxy):
    port = proxy.listen("w")
    with _client(port) as sock:
        sock.sendall(b"one")
        assert sock.recv(16) == b"one"
        assert len(proxy.upstream_ports("w")) == 1
        proxy.blackhole("w")
        sock.sendall(b"two")
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):  # nothing comes back, and nothing says the peer is gone
            sock.recv(16)
        proxy.restore("w")
        sock.settimeout(5)
        assert sock.recv(16) == b"two"


def test_reset_aborts_only_the_named_listener(proxy):
    a, b = proxy.listen("a"), proxy.listen("b")
    with _client(a) as sa, _client(b) as sb:
        for sock in (sa, sb):
            sock.sendall(b"x")
            assert sock.recv(4) == b"x"
        assert proxy.reset("a") == 1
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            sa.sendall(b"y")
            if not sa.recv(4):
                raise ConnectionResetError("closed")
        sb.sendall(b"z")
        assert sb.recv(4) == b"z"
