"""What the vendor fakes share: failure switches, a request log, the in-flight count.

Each fake keeps a `FakeUpstream` (Kandji, Mosyle and Fleet subclass it and add the inventory;
Workspace ONE, Google and ABM hold one as `board`) and installs `switch_middleware`, which logs
every request, counts requests in flight and answers injected faults before the handler runs:

    401, 403, 404, 429, 500, 502, 503, 504   that status, in the vendor's error shape, with
                                             ``Retry-After`` when the fault gives one
    slow                                     the real answer, after ``delay`` seconds
    malformed                                200 with a JSON body cut in half
    html                                     200 with an HTML page (a captive proxy)
    reset                                    the connection closes without an answer
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

FaultKind = Literal[
    "401", "403", "404", "429", "500", "502", "503", "504", "slow", "malformed", "html", "reset"
]
ErrorBody = Callable[[int], web.Response]
"""Renders a vendor's error answer for a status."""

KEPT_HEADERS = ("aw-tenant-code", "accept", "content-type")
"""Request headers the log keeps (lower-case names)."""


@dataclass
class Fault:
    """One injected misbehaviour.

    Attributes:
        kind: What to answer instead of the real response ("slow" answers normally, late).
        path: Path prefix it applies to; None means every path the fake does not exempt.
        times: How many requests it affects; None until `clear_faults`.
        retry_after: ``Retry-After`` value sent with it.
        delay: Seconds to wait first.
    """

    kind: FaultKind
    path: str | None = None
    times: int | None = 1
    retry_after: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake answered.

    Attributes:
        method: HTTP method.
        path: URL path.
        query: Query parameters in order.
        status: Status answered (599: none, the connection was closed or the handler failed).
        body: The JSON body (text when it was not JSON), when there was one.
        authorization: The ``Authorization`` scheme, lower-case ("bearer", "basic"), or None.
        headers: The `KEPT_HEADERS` the request carried.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int
    body: Any = None
    authorization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeUpstream:
    """Failure switches and observations every fake has; `exempt` paths (a token endpoint)
    never fault unless a fault names them."""

    exempt: frozenset[str] = frozenset()
    faults: list[Fault] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def inject(
        self,
        kind: FaultKind,
        path: str | None = None,
        *,
        times: int | None = 1,
        retry_after: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue a fault for paths starting with `path`; faults apply in the order injected."""
        self.faults.append(Fault(kind, path, times, retry_after, delay))

    def clear_faults(self) -> None:
        """Stop every injected fault."""
        self.faults.clear()

    def count(self, path_prefix: str, method: str | None = None) -> int:
        """How many requests for paths starting with `path_prefix` the fake answered."""
        return sum(
            1
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        )

    def logged(self, prefix: str = "") -> list[LoggedRequest]:
        """Logged requests whose path starts with `prefix`."""
        return [r for r in self.requests if r.path.startswith(prefix)]

    def take_fault(self, path: str) -> Fault | None:
        """The first queued fault for `path`, used up by one."""
        for fault in self.faults:
            applies = path.startswith(fault.path) if fault.path else path not in self.exempt
            if applies:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None


def fault_response(fault: Fault, error: ErrorBody) -> web.StreamResponse | None:
    """The answer a fault stands for; None for "slow" (the real answer follows)."""
    if fault.kind == "malformed":
        return web.Response(
            status=200, text='{"devices": [{"id": ', content_type="application/json"
        )
    if fault.kind == "html":
        return web.Response(
            status=200,
            text="<html><body>Sign in to the network</body></html>",
            content_type="text/html",
        )
    if fault.kind == "slow":
        return None
    response = error(int(fault.kind))
    if fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    return response


def switch_middleware(
    upstream: Callable[[web.Request], FakeUpstream], error: ErrorBody
) -> Middleware:
    """Logs, counts concurrency and applies faults for the `FakeUpstream` of each request."""

    @web.middleware
    async def switches(request: web.Request, handler: Handler) -> web.StreamResponse:
        fake = upstream(request)
        fake.in_flight += 1
        fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        body = await _body(request)
        status = 599
        try:
            fault = fake.take_fault(request.path)
            response: web.StreamResponse | None = None
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.kind == "reset":
                    assert request.transport is not None
                    request.transport.close()
                    return web.Response(status=599)
                response = fault_response(fault, error)
            if response is None:
                response = await handler(request)
            status = response.status
            return response
        finally:
            fake.in_flight -= 1
            fake.requests.append(_logged(request, status, body))

    return switches


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _logged(request: web.Request, status: int, body: Any) -> LoggedRequest:
    auth = request.headers.get("Authorization", "")
    return LoggedRequest(
        method=request.method,
        path=request.path,
        query=tuple(request.query.items()),
        status=status,
        body=body,
        authorization=auth.split(" ", 1)[0].lower() or None,
        headers={k: request.headers[k] for k in KEPT_HEADERS if k in request.headers},
    )
