"""Failure switches and a request log shared by the Workspace ONE, Google and ABM fakes.

A fake keeps a `Switchboard`; its middleware (`switchboard_middleware`) logs every request and
answers an injected `Fault` instead of the real handler. The error body is the vendor's own
shape, given by the fake as an `ErrorBody` callable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

FaultKind = Literal["401", "403", "404", "429", "500", "502", "503", "504", "slow", "malformed"]
ErrorBody = Callable[[int, str], web.Response]
"""Builds the vendor's error answer for a status and a message."""


@dataclass
class Fault:
    """One injected misbehaviour.

    Attributes:
        kind: The status to answer, "slow" (answer normally after `delay`) or "malformed"
            (HTTP 200 with cut JSON).
        path: Path prefix it applies to; "" means every request except the token endpoint.
        times: How many requests it affects; None until `Switchboard.clear_faults`.
        retry_after: ``Retry-After`` header value sent with it.
        delay: Seconds to wait first.
    """

    kind: FaultKind
    path: str = ""
    times: int | None = 1
    retry_after: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class LoggedRequest:
    """One request a fake answered.

    Attributes:
        method: HTTP method.
        path: URL path.
        query: Query parameters in order.
        status: Status answered.
        authorization: "bearer", "basic" or None.
        headers: The request headers a test may assert (lower-case names).
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int
    authorization: str | None
    headers: dict[str, str]


@dataclass
class Switchboard:
    """Faults waiting to be served, the request log, and the in-flight high-water mark."""

    token_path: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def inject(
        self,
        kind: FaultKind,
        path: str = "",
        *,
        times: int | None = 1,
        retry_after: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue a fault for requests whose path starts with `path`."""
        self.faults.append(Fault(kind, path, times, retry_after, delay))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self.faults.clear()

    def take(self, path: str) -> Fault | None:
        """The first fault for `path`, counted down (and dropped when used up)."""
        for fault in self.faults:
            applies = path.startswith(fault.path) if fault.path else path != self.token_path
            if not applies:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    def logged(self, prefix: str = "") -> list[LoggedRequest]:
        """Logged requests whose path starts with `prefix`."""
        return [r for r in self.requests if r.path.startswith(prefix)]


KEPT_HEADERS = ("aw-tenant-code", "accept", "content-type")


def switchboard_middleware(
    board: Callable[[web.Request], Switchboard], error: ErrorBody
) -> Middleware:
    """The middleware: count in-flight requests, serve faults, log what was answered."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        switches = board(request)
        switches.in_flight += 1
        switches.max_in_flight = max(switches.max_in_flight, switches.in_flight)
        try:
            response = await _answer(request, handler, switches, error)
        finally:
            switches.in_flight -= 1
        auth = request.headers.get("Authorization", "")
        switches.requests.append(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query=tuple(request.query.items()),
                status=response.status,
                authorization=auth.split(" ", 1)[0].lower() or None,
                headers={k: request.headers[k] for k in KEPT_HEADERS if k in request.headers},
            )
        )
        return response

    return middleware


async def _answer(
    request: web.Request, handler: Handler, switches: Switchboard, error: ErrorBody
) -> web.StreamResponse:
    fault = switches.take(request.path)
    if fault is None:
        return await handler(request)
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.kind == "slow":
        return await handler(request)
    if fault.kind == "malformed":
        return web.Response(text='{"data": [{"id": ', content_type="application/json")
    status = int(fault.kind)
    response = error(status, f"Injected fault {status}.")
    if fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    return response
