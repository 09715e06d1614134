"""A small TCP proxy for fault tests: between the panel (or a worker) and PostgreSQL.

    proxy = TcpProxy("127.0.0.1", 5432).start()   # or the ``tcp_proxy`` fixture
    url = proxy.url(pg_url)   # the same database, through the proxy
    proxy.black_hole()   # stop forwarding, close nothing: packets "dropped", no reset
    proxy.heal()         # forward again (what was held back flows on, like TCP after a
                         # partition heals)
    proxy.down()         # close every connection and stop listening: the server is gone
    proxy.up()           # listen again on the same port
    proxy.close()

Threads, not asyncio: a test drives it from plain synchronous code.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url


@dataclass
class TcpProxy:
    target_host: str
    target_port: int
    port: int = 0
    _listener: socket.socket | None = None
    _sockets: list[socket.socket] = field(default_factory=list)
    _forwarding: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0

    def start(self) -> TcpProxy:
        self._forwarding.set()
        self.up()
        return self

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._stopped.clear()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def url(self, database_url: str) -> str:
        """``database_url`` (on the proxied server) reached through this proxy instead."""
        through = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return through.render_as_string(hide_password=False)

    def black_hole(self) -> None:
        self._forwarding.clear()

    def heal(self) -> None:
        self._forwarding.set()

    def down(self) -> None:
        """Refuse new connections and drop every open one (a server that went away)."""
        self._stopped.set()
        if self._listener is not None:
            # shutdown() wakes the accept() blocked in another thread; close() alone would
            # leave the port listening (and connections queued, unanswered) until it returns.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._forwarding.set()
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((self.target_host, self.target_port), 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
                self.connections += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way; while black-holed, read nothing (the bytes wait unacknowledged
        by the far side, as on a cut link) and close nothing."""
        while not self._stopped.is_set():
            if not self._forwarding.wait(0.05):
                continue
            try:
                ready, _, _ = select.select([source], [], [], 0.05)
                if not ready:
                    continue
                if not self._forwarding.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
            except (OSError, ValueError):  # ValueError: select on a socket closed by down()
                return
