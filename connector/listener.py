"""Accepting connections: a cap on open sockets, lean TLS, a drain at shutdown.

aiohttp's `TCPSite` accepts without limit, gives every TLS connection asyncio's 256 KiB read
buffer, and on shutdown stops reading bodies that are still arriving. `Listener` accepts by
itself so it can count every socket (TLS handshakes included) and keep them under
`server.max_connections`, handing each to a `connector.connection.Connection`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from asyncio import sslproto

import structlog
from aiohttp import web

from connector.connection import Connection

log = structlog.get_logger("connector.server")

# asyncio allocates `max_size` bytes per TLS connection up front (256 KiB in 3.11) as the socket
# read buffer. One TLS record is at most 16 KiB of plaintext; a 16 KiB read buffer costs a few more
# reads for a 64 KiB body and saves ~240 KiB per open connection (see benchmarks/connections.py).
TLS_READ_BUFFER = 16 * 1024
# After answering a request whose body was not read (a 408 or 413), aiohttp reads and discards
# what the client still sends so that closing does not reset the answer away; 2 s is plenty on
# a LAN and keeps a refused client from holding its socket for aiohttp's default 10 s.
LINGERING_TIME = 2.0
# Closing a TLS connection waits for the peer's close_notify (asyncio's default: 30 s); a peer that
# never sends it would hold its socket, and its slot, that long.
TLS_SHUTDOWN_TIMEOUT = 2.0
# Linux reports a listening socket readable again at once after EMFILE; wait before retrying.
ACCEPT_RETRY_DELAY = 0.5
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _accepted(connection: Connection) -> float:
    return connection.accepted


class _LeanTLS(sslproto.SSLProtocol):
    """asyncio's server-side TLS protocol with a 16 KiB instead of a 256 KiB read buffer."""

    max_size = TLS_READ_BUFFER


class Listener:
    """Binds, accepts up to `max_connections` sockets and drains them on shutdown.

    At the cap a new connection first displaces the oldest one that has not yet delivered a
    request head (a TLS handshake under way, a silent or trickling connection), then the oldest
    idle one that never carried a signed webhook call (anyone's keep-alive, pinging `/healthz`
    to stay open): a flood of either cannot lock step-ca out. Only when every open connection
    is busy with a request or has carried a signed call is the newcomer refused (closed at once).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_connections: int,
        read_timeout: float,
        keepalive_timeout: float,
        backlog: int = 128,
    ) -> None:
        self._host = host
        self._port = port
        self._ssl: ssl.SSLContext | None = None
        self._max = max_connections
        self._read_timeout = read_timeout
        self._keepalive_timeout = keepalive_timeout
        self._backlog = backlog
        self._sockets: list[socket.socket] = []
        self._accepting: set[asyncio.Task[None]] = set()
        # Both oldest first; a socket is in `_handshakes` (with when it was accepted) until
        # aiohttp's protocol has it.
        self._handshakes: dict[asyncio.Task[None], float] = {}
        self._connections: dict[Connection, None] = {}
        self._evicted = 0
        self._refused = 0
        self.evicted_total = 0
        """Connections closed to make room at the cap, since start (for metrics)."""
        self.refused_total = 0
        """Connections refused at the cap, since start (for metrics)."""
        self._idle = asyncio.Event()
        self.keepalive = True
        self.draining = False

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the bound sockets listen (host, port)."""
        return [sock.getsockname()[:2] for sock in self._sockets]

    @property
    def tls(self) -> bool:
        """Whether connections are TLS."""
        return self._ssl is not None

    def use_tls(self, context: ssl.SSLContext) -> None:
        """Serve TLS with `context` (hot-reloaded in place by `CertificateReloader`)."""
        self._ssl = context

    @property
    def open_connections(self) -> int:
        """Accepted sockets not yet closed, TLS handshakes under way included."""
        return len(self._handshakes) + len(self._connections)

    def bind(self) -> None:
        """Bind and listen on every address `host` resolves to; raises `OSError` on failure."""
        infos = socket.getaddrinfo(
            self._host or None, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise

    def start(self, server: web.Server) -> None:
        """Accept connections for aiohttp's `server` (from `AppRunner.server`)."""
        for sock in self._sockets:
            task = asyncio.create_task(self._accept(sock, server))
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)

    def stop_keepalive(self) -> None:
        """Drain period: keep accepting, but answer every request with `Connection: close`.

        A load balancer's pooled connections then end one by one, each right after an answer,
        instead of being cut under a request when the listener closes.
        """
        self.keepalive = False

    async def drain(self, grace: float) -> None:
        """Stop accepting; answer requests under way, close idle connections; wait `grace` s."""
        self.draining = True
        self._close_sockets()
        for task in [*self._accepting, *self._handshakes]:
            task.cancel()
        await asyncio.gather(*self._accepting, *self._handshakes, return_exceptions=True)
        for connection in list(self._connections):
            connection.drain()
        if self.open_connections:
            self._idle.clear()
            try:
                async with asyncio.timeout(grace):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("server.drain_timeout", open_connections=self.open_connections)

    def opened(self, connection: Connection) -> None:
        """A connection is established (TLS handshake done): counted once, as a connection."""
        if connection.adoption is not None:  # its task may still be finishing
            self._handshakes.pop(connection.adoption, None)
            connection.adoption = None
        self._connections[connection] = None

    def closed(self, connection: Connection) -> None:
        """A connection is gone: free its slot."""
        self._connections.pop(connection, None)
        self._maybe_idle()

    def close(self) -> None:
        """Close the listening sockets (idempotent)."""
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()

    def _maybe_idle(self) -> None:
        if not self.open_connections:
            self._idle.set()

    def _handshake_done(self, task: asyncio.Task[None]) -> None:
        self._handshakes.pop(task, None)
        self._maybe_idle()

    async def _accept(self, listening: socket.socket, server: web.Server) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    continue  # the peer gave up between SYN and accept (ECONNABORTED)
                log.warning(
                    "server.accept_failed",
                    error=exc.strerror,
                    open_connections=self.open_connections,
                )
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            if self.open_connections >= self._max and not self._make_room(sock):
                continue
            if self.open_connections < self._max and (self._evicted or self._refused):
                log.info(
                    "server.connection_limit_cleared", evicted=self._evicted, refused=self._refused
                )
                self._evicted = self._refused = 0
            accepted = loop.time()
            task = asyncio.create_task(self._adopt(sock, server, accepted))
            self._handshakes[task] = accepted
            task.add_done_callback(self._handshake_done)

    def _make_room(self, sock: socket.socket) -> bool:
        """At the cap: close, for `sock`, the connection accepted longest ago among those that
        have not yet delivered a request head (a TLS handshake under way, a silent or trickling
        connection) or are idle without ever having carried a signed request, else the oldest
        that never carried one and is reading a request (a body or a second head trickling in,
        which anyone can send without a signature: the signature is checked once the body is
        in); refuse `sock` when every connection is step-ca's.

        By age, whatever the stage: a flood that holds every other slot with silent (or idle,
        unsigned) connections would otherwise displace step-ca's handshake with its next connect.
        """
        if not (self._evicted or self._refused):
            log.warning("server.connection_limit_reached", max_connections=self._max)
        # Forgotten at once, so that a burst of newcomers displaces a different one each.
        handshake = next(iter(self._handshakes.items()), None)
        unproven = min(
            (c for c in self._connections if c.unproven or c.spare), key=_accepted, default=None
        )
        if handshake is not None and (unproven is None or handshake[1] <= unproven.accepted):
            del self._handshakes[handshake[0]]
            handshake[0].cancel()  # `_adopt` aborts its transport
            self._evicted += 1
            self.evicted_total += 1
            return True
        if unproven is None:
            unproven = next((c for c in self._connections if not c.vouched), None)
        if unproven is not None:
            del self._connections[unproven]
            if unproven.transport is not None:
                # At once, before aiohttp closes it: a TLS close would wait for the peer's
                # close_notify, holding the descriptor outside the cap (a flood of evictions,
                # a descriptor each).
                unproven.transport.abort()
            unproven.force_close()
            self._evicted += 1
            self.evicted_total += 1
            return True
        sock.close()
        self._refused += 1
        self.refused_total += 1
        return False

    def _connection(self, server: web.Server) -> Connection:
        return Connection(
            server,
            listener=self,
            read_timeout=self._read_timeout,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self._keepalive_timeout,
            lingering_time=LINGERING_TIME,
            access_log=None,
            # step-ca never compresses a call: inflating one (aiohttp's default, in its parser,
            # before any signature is checked) would be CPU anyone could spend. The webhook
            # refuses a `Content-Encoding` it is sent (`connector.handlers`).
            auto_decompress=False,
        )

    async def _adopt(self, sock: socket.socket, server: web.Server, accepted: float) -> None:
        """Hand an accepted socket to aiohttp (after the TLS handshake, bounded by read_timeout)."""
        loop = asyncio.get_running_loop()
        connection = self._connection(server)
        connection.adoption = asyncio.current_task()
        connection.accepted = accepted
        transport: asyncio.Transport | None = None
        tls: _LeanTLS | None = None
        handshake: asyncio.Future[None] | None = None
        taken = False

        def protocol() -> asyncio.BaseProtocol:
            # The loop asks for the protocol as it takes the socket into a transport of its own.
            nonlocal taken
            taken = True
            return connection if tls is None else tls

        try:
            if self._ssl is not None:
                handshake = loop.create_future()
                tls = _LeanTLS(
                    loop,
                    connection,
                    self._ssl,
                    handshake,
                    server_side=True,
                    ssl_handshake_timeout=self._read_timeout,  # type: ignore[arg-type] # a float works
                    ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT,
                )
            transport, _ = await loop.connect_accepted_socket(protocol, sock)
            if handshake is not None:
                await handshake
        except (OSError, asyncio.CancelledError):
            # A failed, timed-out or displaced handshake never reaches `connection_made`. A
            # transport owns its socket: the loop closes one it made before failing, and closing
            # the socket beneath a live transport would free a descriptor the loop still uses.
            if transport is not None:
                transport.abort()
            elif not taken:
                sock.close()
