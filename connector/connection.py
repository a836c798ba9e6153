"""One accepted connection: aiohttp's HTTP/1.1 protocol with a head deadline and request
tracking, and the middleware and hooks it relies on.

aiohttp bounds only idle keep-alive time: a request head sent a byte at a time is never cut.
`Connection` puts a deadline on the request head and remembers when the request began, so the
body shares that deadline (`request_started`); it tells its `connector.listener.Listener` when it
opens, closes, and whether it may be displaced at the connection cap (`vouch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

if TYPE_CHECKING:
    from connector.listener import Listener

log = structlog.get_logger("connector.server")

REQUEST_STARTED = web.RequestKey("request_started", float)
MAX_HEAD_BYTES = 32 * 1024
"""Bytes a request head may take (step-ca's take about 400). aiohttp holds up to 128 header
lines of 8 KiB each while a head is incomplete: 2 MiB a connection, a gigabyte at the
connection cap, from clients that need no credential."""


class Connection(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol, plus a head deadline, request tracking and a close callback.

    A request "begins" with its first byte. If its head is not complete `read_timeout` seconds
    later the connection is closed; once complete, the request middleware (`track_requests`)
    claims it and the body gets what is left of the same deadline (`read_capped`).
    """

    __slots__ = (
        "_busy",
        "_head_bytes",
        "_head_tail",
        "_head_text",
        "_head_timer",
        "_listener",
        "_read_timeout",
        "_requests",
        "_started",
        "accepted",
        "adoption",
        "vouched",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        listener: Listener,
        read_timeout: float,
        loop: asyncio.AbstractEventLoop,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._listener = listener
        self._read_timeout = read_timeout
        self._started: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._head_bytes = 0  # of the head arriving, until its blank line (-1: it has come)
        self._head_tail = b""  # its last bytes, to find a blank line split across reads
        self._head_text = False  # a byte other than CR or LF has come (blank lines before it
        # are skipped by the parser, so they end no head)
        self._requests = 0
        self.accepted = loop.time()
        """When the listener accepted the socket (the oldest unproven one is displaced first)."""
        self.adoption: asyncio.Task[None] | None = None
        """The listener's task handing this socket over (TLS handshake included), until done."""
        self.vouched = False
        """A request on it carried a valid webhook signature: step-ca's, kept at the cap."""

    @property
    def unproven(self) -> bool:
        """No request head has arrived yet: silent, trickling, or just connected."""
        return self._requests == 0 and not self._busy

    @property
    def spare(self) -> bool:
        """Idle between requests, none of them signed: anyone's keep-alive, closed at the cap
        before a newcomer is refused (a client reconnects; a signed caller is never displaced)."""
        return not self.vouched and not self._busy and self._started is None

    @property
    def draining(self) -> bool:
        """Whether answers close the connection: the drain period or shutdown is under way."""
        return self._listener.draining or not self._listener.keepalive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register with the listener, then let aiohttp start reading."""
        self._listener.opened(self)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Free the listener's slot for this socket."""
        self._cancel_head_timer()
        self._listener.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Start the head deadline on the first byte of a request; close a connection whose
        head grows past `MAX_HEAD_BYTES`."""
        if data and not self._busy and self._started is None:
            self._started = self._loop.time()
            if self._head_timer is None:  # else the pending timer moves on to this head
                self._head_timer = self._loop.call_at(
                    self._started + self._read_timeout, self._head_timed_out
                )
        if not self._busy and self._head_bytes >= 0 and self._head_too_large(data):
            return
        super().data_received(data)

    def _head_too_large(self, data: bytes) -> bool:
        """Count `data` into the head arriving; at its blank line stop counting (the body
        follows); past the limit, close the connection (True)."""
        self._head_bytes += len(data)
        text = data
        if not self._head_text:  # the blank lines the parser skips before a request line
            text = data.lstrip(b"\r\n")
            self._head_text = bool(text)
        seam = self._head_tail + text[:3]  # a blank line split across two reads
        if b"\n\n" in text or b"\r\n\r\n" in text or b"\n\n" in seam or b"\n\r\n" in seam:
            self._head_bytes = -1
            return False
        self._head_tail = (self._head_tail + text[-3:])[-3:]
        if self._head_bytes <= MAX_HEAD_BYTES:
            return False
        log.info(
            "request.malformed",
            error=f"request head over {MAX_HEAD_BYTES} bytes",
            status=431,
            peer=self._peer(),
        )
        self.force_close()
        if self.transport is not None:
            self.transport.abort()  # what it sent is not read, nor kept
        return True

    def begin_request(self) -> float:
        """The head is complete: its deadline no longer applies; answer when the request began.

        The timer is not cancelled: on a keep-alive connection it would be re-armed for the
        next head a moment later. When it fires it finds no head pending, or re-arms itself
        for the one that is (`_head_timed_out`).
        """
        started = self._started if self._started is not None else self._loop.time()
        self._started = None
        self._busy = True
        self._requests += 1
        # Counting starts again for the next head.
        self._head_bytes, self._head_tail, self._head_text = 0, b"", False
        return started

    def log_access(self, request: Any, response: Any, time: float | None) -> None:
        """aiohttp calls this once the answer is written: the connection is idle again."""
        self._busy = False
        super().log_access(request, response, time)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A request aiohttp could not parse is one line without a traceback, not an error; so
        is a body that does not unpack (aiohttp reads what is left of it after our 400)."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            error = " ".join(str(exc.message).split())  # aiohttp draws a caret on extra lines
            log.info("request.malformed", error=error, status=exc.code, peer=self._peer())
            return
        if isinstance(exc, web.RequestPayloadError):
            log.info("request.malformed", error=str(exc)[:256], status=400, peer=self._peer())
            return
        log.error("server.unhandled_error", exc_info=exc if exc is not None else True)

    def drain(self) -> None:
        """Shutdown: close now when idle; otherwise the request under way is answered first."""
        if not self._busy and self._started is None:
            self.force_close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._busy or self._started is None:
            return  # no head is arriving: the next first byte arms a new timer
        deadline = self._started + self._read_timeout
        if self._loop.time() < deadline:  # armed for an earlier head: wait for this one's
            self._head_timer = self._loop.call_at(deadline, self._head_timed_out)
            return
        log.info("request.head_timeout", read_timeout=self._read_timeout, peer=self._peer())
        self.force_close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _peer(self) -> str | None:
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) else None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection its request head is in, and keep when the request began."""
    protocol = request.protocol
    if isinstance(protocol, Connection):
        request[REQUEST_STARTED] = protocol.begin_request()
    return await handler(request)


async def _close_after_answer(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """While draining, or when the body was not read to its end, answer and then close."""
    protocol = request.protocol
    if isinstance(protocol, Connection) and (protocol.draining or not request.content.at_eof()):
        response.force_close()
        response.headers["Connection"] = "close"


def install(app: web.Application) -> None:
    """Add the request tracking `Listener` relies on to `app` (before it starts)."""
    app.middlewares.insert(0, track_requests)
    app.on_response_prepare.append(_close_after_answer)


def vouch(request: web.Request) -> None:
    """The request carried a valid webhook signature: its connection is step-ca's, and is kept
    when the connection cap makes room (anyone can hold idle keep-alive connections open)."""
    protocol = request.protocol
    if isinstance(protocol, Connection):
        protocol.vouched = True


def request_started(request: web.Request) -> float:
    """When the request's first byte arrived (now, for a server that does not track it)."""
    return request.get(REQUEST_STARTED) or asyncio.get_running_loop().time()
