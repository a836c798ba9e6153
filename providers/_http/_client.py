"""One httpx client per upstream: retries inside a total deadline, bounded answers, every
exchange observed.

Each request names its ``route``, the path template with ids replaced
(``/api/v1/departments/{id}``); it travels in the request's extensions, so the 401 retry of
`BearerAuth` is observed under the same route. Every HTTP exchange is reported to the hook as
an `UpstreamCall`, each retry as a `RetryScheduled` carrying the exact wait that is then slept.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from providers._http._body import ACCEPT_ENCODING, LIMIT, read_within
from providers._http._errors import translate
from providers._http._gate import Gate, Ticket
from providers._http._retry import RETRYABLE_STATUSES, Backoff
from providers._http._settings import UpstreamSettings
from providers.base import ProviderError
from providers.observe import NO_HOOKS, ProviderHook, RetryScheduled, UpstreamCall

_STARTED = "posture.started"
# The lookup being made in this task (and the tasks it starts), for the gate it was admitted by.
_ADMITTED: contextvars.ContextVar[tuple[Gate, Ticket] | None] = contextvars.ContextVar(
    "posture_admitted", default=None
)
_OBSERVED = "posture.observed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
"""The ``error`` of an exchange cut at its deadline (as httpx's are named by their class)."""
_SLACK = 0.001
"""The deadline's own timeout fires this long after it: a lookup whose budget ends at the same
moment reports its budget, as it did before requests had a deadline of their own."""
Params = Mapping[str, str] | Sequence[tuple[str, str]]


class UpstreamClient:
    """An httpx client bound to one provider, with retries inside a per-call total deadline."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        settings: UpstreamSettings,
        *,
        headers: dict[str, str] | None = None,
        hooks: ProviderHook = NO_HOOKS,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_when: Callable[[httpx.Response], bool] | None = None,
    ) -> None:
        self.provider = provider
        # A vendor whose throttling is not a 429 (Google's 403 userRateLimitExceeded) says so here.
        self._retry_when = retry_when
        self.settings = settings
        self._hooks = hooks
        self._backoff = backoff or Backoff(settings.backoff)
        self._sleep = sleep
        self.gate = Gate(provider, settings.max_connections)
        verify: ssl.SSLContext | bool = settings.verify_tls
        if settings.verify_tls and settings.ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
        self._client = httpx.AsyncClient(
            base_url=base_url,
            # Only the codings `read_within` inflates in bounded steps.
            headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
            verify=verify,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.budget,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            follow_redirects=False,
            event_hooks={"request": [self._sent], "response": [self._answered]},
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        route: str,
        deadline: float | None = None,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: object | None = None,
        auth: httpx.Auth | None = None,
        gated: bool = True,
    ) -> httpx.Response:
        """Send a request, retrying transport errors and retryable statuses.

        `deadline` (a `time.monotonic()` value; the budget from now when not given) ends the
        whole call: the wait for a slot, every exchange and every body are cut when it passes
        (``timed out (DeadlineExceeded ...)``). Retries back off exponentially with jitter,
        honour `Retry-After`, and never sleep past it: a wait that would overrun it fails at once.
        An answer is read in full, decoded within ``max_answer_bytes`` (`read_within`), before
        it is returned. Any other status is returned for the caller to interpret; every other
        failure is a `ProviderError` whose message starts with `route`.

        Each attempt first passes the `Gate`: one request per connection, earliest deadline
        first; inside `admission` the lookup was admitted as a whole, any other request is
        admitted on its own. A request sent while another one holds its slot waiting for it (a
        token fetch inside a request's auth flow) passes ``gated=False``, or it would wait for
        the slot its own caller holds.
        """
        began = time.monotonic()
        end = deadline if deadline is not None else began + self.settings.budget
        current = _ADMITTED.get()
        ticket = current[1] if current is not None and current[0] is self.gate else None
        attempt = 1
        while True:
            answer: httpx.Response | None = None
            sent = self._client.build_request(
                method,
                url,
                params=params if params is None or isinstance(params, Mapping) else tuple(params),
                headers=headers,
                data=data,
                json=json,
                extensions={"route": route, LIMIT: self.settings.max_answer_bytes},
            )
            entered: float | None = None
            # Slot, exchange and body all end by `end`: httpx's timeouts bound each read, not a
            # whole answer, and an answer trickling in under them would hold its slot for ever.
            scope = asyncio.timeout(end - time.monotonic() + _SLACK)
            try:
                async with scope:
                    entered = await self.gate.enter(end, route, ticket) if gated else None
                    answer = await self._client.send(sent, auth=auth, stream=True)
                    await read_within(answer)
            except TimeoutError:
                if not scope.expired():
                    raise
                self._unanswered(method, route, DEADLINE_EXCEEDED, sent.extensions)
                raise ProviderError(
                    self.provider,
                    f"{route}: timed out ({DEADLINE_EXCEEDED}: no complete answer within "
                    f"{end - began:.3g}s)",
                ) from None
            except httpx.TransportError as exc:
                self._failed(method, route, exc)
                failure = translate(self.provider, exc).message
                reason = type(exc).__name__
            except httpx.HTTPError as exc:  # not worth retrying: decoding, too large, misuse
                self._failed(method, route, exc)
                raise ProviderError(
                    self.provider, f"{route}: {translate(self.provider, exc).message}"
                ) from None
            else:
                if answer.status_code not in RETRYABLE_STATUSES and not (
                    self._retry_when is not None and self._retry_when(answer)
                ):
                    return answer
                failure = f"upstream answered {answer.status_code}"
                reason = f"status {answer.status_code}"
            finally:
                if entered is not None:
                    self.gate.leave(entered, ticket)
            if attempt > self.settings.retries:
                raise ProviderError(self.provider, f"{route}: {failure}")
            wait = self._backoff.next_wait(attempt, answer)
            if time.monotonic() + wait.seconds >= end:  # the wait that is checked is the one slept
                raise ProviderError(self.provider, f"{route}: {failure}")
            self._hooks.retry(
                RetryScheduled(
                    provider=self.provider,
                    route=route,
                    attempt=attempt,
                    wait=wait.seconds,
                    reason=reason,
                    rate_limited=wait.rate_limited,
                )
            )
            await self._sleep(wait.seconds)
            attempt += 1

    @contextlib.contextmanager
    def admission(self, deadline: float, *, requests: int, rounds: int = 1) -> Iterator[None]:
        """Admit one lookup of about `requests` requests in `rounds` rounds (each waiting for
        the one before) as a whole, or raise `ProviderError` at once when, behind the work
        already admitted, it could not finish by `deadline`."""
        ticket = self.gate.admit(deadline, requests=requests, rounds=rounds)
        token = _ADMITTED.set((self.gate, ticket))
        try:
            yield
        finally:
            _ADMITTED.reset(token)
            self.gate.close(ticket)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Requests made here serve several admitted lookups at once (a shared department
        fetch): they are part of that admitted work, so they are never refused, and belong to
        no single lookup, so one lookup's refusal never fails them."""
        token = _ADMITTED.set((self.gate, Ticket(math.inf, 0, 0, vetted=True)))
        try:
            yield
        finally:
            _ADMITTED.reset(token)

    async def _sent(self, request: httpx.Request) -> None:
        request.extensions[_STARTED] = time.monotonic()
        request.extensions[_OBSERVED] = False

    async def _answered(self, response: httpx.Response) -> None:
        request = response.request
        request.extensions[_OBSERVED] = True
        self._hooks.upstream_call(
            UpstreamCall(
                provider=self.provider,
                method=request.method,
                route=_route(request.extensions),
                status=response.status_code,
                seconds=time.monotonic() - request.extensions.get(_STARTED, time.monotonic()),
            )
        )

    def _failed(self, method: str, route: str, exc: httpx.HTTPError) -> None:
        """Report an exchange that ended without an answer (unless its answer was reported)."""
        try:
            extensions: dict[str, Any] = exc.request.extensions
        except RuntimeError:  # raised before a request existed
            extensions = {}
        self._unanswered(method, route, type(exc).__name__, extensions)

    def _unanswered(
        self, method: str, route: str, error: str, extensions: Mapping[str, Any]
    ) -> None:
        """Report an exchange that ended with `error` unless its answer was reported (its head
        arrived), or it was never sent (a wait for a slot or a token that ran out of time)."""
        if extensions.get(_OBSERVED):
            return
        if error == DEADLINE_EXCEEDED and _STARTED not in extensions:
            return
        started = extensions.get(_STARTED, time.monotonic())
        self._hooks.upstream_call(
            UpstreamCall(
                provider=self.provider,
                method=method,
                route=route,
                status=None,
                seconds=time.monotonic() - started,
                error=error,
            )
        )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()


def _route(extensions: Mapping[str, Any]) -> str:
    route = extensions.get("route")
    return route if isinstance(route, str) else "{unknown}"
