"""Admission in front of the connection pool: one request per connection, earliest deadline first,
and a lookup that could not finish within its budget refused at once.

Without it, a burst of lookups queues hundreds of requests inside httpcore's pool, and each
waits until its budget runs out: a slow ``inventory-unavailable`` for every device of the burst
instead of a fast one for the few that cannot be served. The gate keeps httpcore's queue empty
and admits a lookup only if the work already admitted, its own requests and its rounds of
requests (one after another) fit in what is left of its budget at the current estimate of one
exchange's duration. Little's law with the budget as the bound: at most about
``connections x budget / (exchange x requests per lookup)`` lookups are under way at once.

Requests of an admitted lookup are not checked again; a lookup that sent its first request has
the earlier deadline, so its later requests go first and it finishes. Requests outside a lookup
(start-up, listing) are admitted one by one. Until `TRUSTED` exchanges have been timed
everything is admitted; when the estimate is first trusted, or it grows by a quarter, the
admitted lookups are checked again in deadline order and those that can no longer start in time
are refused at once rather than left to time out.

The estimate changes only when exchanges are timed, and a refused lookup sends none: an idle
gate (nothing admitted, nothing sent or waiting) therefore admits the next lookup whatever the
estimate says, as a probe. Without it, a slow spell that once made lookups look too long would
refuse every later one for good, however fast the upstream had become again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from providers.base import ProviderError

log = structlog.get_logger("providers.http")

SMOOTHING = 0.05
"""Weight of a slower exchange in the running estimate of one exchange's duration."""
RECOVERY = 0.25
"""Weight of a faster one."""
TRUSTED = 5
"""Exchanges timed before the estimate may refuse anything (until then all is admitted)."""
MARGIN = 1.1
"""A lookup is admitted when this multiple of its estimated time (plus one exchange) fits."""
GROWTH = 1.25
"""Admitted lookups are checked again once the estimate has grown by this factor."""


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted lookup: its deadline and the requests it has not completed yet.

    Attributes:
        deadline: `time.monotonic()` value its budget ends at.
        remaining: Planned requests not yet answered.
        rounds: Planned rounds of requests (each waits for the one before).
        vetted: Admitted with a trusted estimate (else checked in full once there is one).
        refusal: Set when the gate gave up on it; its next request raises this.
    """

    deadline: float
    remaining: int
    rounds: int
    vetted: bool
    refusal: ProviderError | None = None


@dataclass(order=True, slots=True)
class _Waiter:
    deadline: float
    order: int
    future: asyncio.Future[None] = field(compare=False)
    ticket: Ticket | None = field(compare=False)


class Gate:
    """At most `slots` requests reach the pool; the others wait, earliest deadline first.

    Attributes:
        estimate: Running estimate of one exchange's duration in seconds (None: none timed).
        refused: Lookups and requests refused so far.
    """

    def __init__(
        self, provider: str, slots: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._provider = provider
        self._slots = slots
        self._clock = clock
        self._busy = 0
        self._queue: list[_Waiter] = []
        self._waiting = 0
        self._order = itertools.count()
        self._tickets: set[Ticket] = set()
        self._outstanding = 0  # planned requests of admitted lookups not answered yet
        self._loose = 0  # requests outside a lookup waiting for a slot
        self._checked_at: float | None = None  # the estimate admitted lookups were checked with
        self._timed = 0  # exchanges timed so far
        self.estimate: float | None = None
        self.refused = 0
        self._refused_since_clear = 0

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return self._waiting

    # --- lookups -------------------------------------------------------------------------------

    def admit(self, deadline: float, *, requests: int, rounds: int) -> Ticket:
        """Admit a lookup of about `requests` requests in `rounds` rounds, or raise at once
        (never on an idle gate: see the module docstring)."""
        if self.trusted and not self._idle:
            refusal = self._refusal(self._outstanding + self._loose, requests, rounds, deadline)
            if refusal is not None:
                raise refusal
        ticket = Ticket(deadline, requests, rounds, vetted=self.trusted)
        self._tickets.add(ticket)
        self._outstanding += requests
        return ticket

    def close(self, ticket: Ticket) -> None:
        """The lookup is over: forget what it planned and did not send."""
        self._outstanding -= ticket.remaining
        ticket.remaining = 0
        self._tickets.discard(ticket)
        self._maybe_cleared()

    # --- requests ------------------------------------------------------------------------------

    async def enter(self, deadline: float, route: str, ticket: Ticket | None = None) -> float:
        """Wait for a slot (or be refused); returns the clock value when the slot was taken.

        A request of an admitted lookup (`ticket`) is not checked again; any other one is
        admitted on its own.
        """
        if ticket is not None and ticket.refusal is not None:
            raise ticket.refusal
        if self._busy < self._slots and not self._waiting:
            self._busy += 1
            return self._clock()
        if ticket is None and self.trusted:
            refusal = self._refusal(self._outstanding + self._loose, 1, 1, deadline, route)
            if refusal is not None:
                raise refusal
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, _Waiter(deadline, next(self._order), future, ticket))
        self._waiting += 1
        self._loose += ticket is None
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._pass_on()  # the slot was handed over as the caller gave up
            else:
                self._dequeued(ticket)
                future.cancel()
            raise
        return self._clock()

    def leave(self, entered: float, ticket: Ticket | None = None) -> None:
        """Give the slot back; the exchange's duration updates the estimate."""
        took = self._clock() - entered
        previous = self.estimate
        self._timed += 1
        # The mean of the first exchanges (the first on a connection also pays its set-up), then
        # slow to rise and quick to fall: the exchanges timed while a burst arrives (and the event
        # loop is busy taking it in) are slow for a moment; a slower upstream shows within some
        # twenty exchanges.
        if previous is None:
            estimate = took
        elif self._timed <= TRUSTED:
            estimate = previous + (took - previous) / self._timed
        else:
            estimate = previous + (SMOOTHING if took > previous else RECOVERY) * (took - previous)
        self.estimate = estimate
        if ticket is not None and ticket.remaining > 0:
            ticket.remaining -= 1
            self._outstanding -= 1
        checked = self._checked_at
        if self.trusted and (checked is None or estimate > GROWTH * checked):
            self._recheck(estimate)
        elif checked is not None and estimate < checked:
            self._checked_at = estimate
        self._pass_on()

    @property
    def _idle(self) -> bool:
        """No lookup admitted and no request sent or waiting: nothing will time an exchange."""
        return not (self._tickets or self._busy or self._waiting)

    @property
    def trusted(self) -> bool:
        """Whether enough exchanges were timed to refuse anything."""
        return self._timed >= TRUSTED

    # --- internals -----------------------------------------------------------------------------

    def _dequeued(self, ticket: Ticket | None) -> None:
        self._waiting -= 1
        self._loose -= ticket is None

    def _pass_on(self) -> None:
        while self._queue:
            waiter = heapq.heappop(self._queue)
            if not waiter.future.done():
                self._dequeued(waiter.ticket)
                waiter.future.set_result(None)  # the slot moves on; `_busy` is unchanged
                return
        self._busy -= 1
        self._maybe_cleared()

    def _maybe_cleared(self) -> None:
        if self._refused_since_clear and not self._waiting:
            log.info(
                "provider.overload_cleared",
                provider=self._provider,
                refused=self._refused_since_clear,
            )
            self._refused_since_clear = 0

    def _recheck(self, estimate: float) -> None:
        """Refuse, in deadline order, the admitted lookups that can no longer finish."""
        self._checked_at = estimate
        ahead = self._loose
        for ticket in sorted(self._tickets, key=lambda t: t.deadline):
            if ticket.refusal is not None:
                continue
            if ticket.vetted:  # given up only when its next request could not even start
                refusal = self._refusal(ahead, 1, 0, ticket.deadline, admitted=True)
            else:  # admitted blind: judged now as it would have been
                refusal = self._refusal(ahead, ticket.remaining, ticket.rounds, ticket.deadline)
            if refusal is None:
                ticket.vetted = True
                ahead += ticket.remaining
                continue
            ticket.refusal = refusal
            self._outstanding -= ticket.remaining
            ticket.remaining = 0
        for waiter in self._queue:
            refused = waiter.ticket.refusal if waiter.ticket is not None else None
            if refused is not None and not waiter.future.done():
                self._dequeued(waiter.ticket)
                waiter.future.set_exception(refused)

    def _refusal(
        self,
        ahead: int,
        requests: int,
        rounds: int,
        deadline: float,
        route: str | None = None,
        *,
        admitted: bool = False,
    ) -> ProviderError | None:
        """The error for work that would not finish by `deadline` at the estimate, else None.

        An `admitted` lookup is given up only when its next request could not even start.
        """
        estimate = self.estimate
        assert estimate is not None  # noqa: S101 - callers check
        # The requests ahead and its own share the slots; its rounds follow each other at
        # best; a tenth more, and one more exchange, absorb the estimate's error.
        needed = (ahead + requests) * estimate / self._slots
        if not admitted:
            needed = max(needed, rounds * estimate) * MARGIN + estimate
        left = deadline - self._clock()
        if needed <= left:
            return None
        self.refused += 1
        self._refused_since_clear += 1
        if self._refused_since_clear == 1:
            log.warning(
                "provider.overloaded",
                provider=self._provider,
                queued=ahead,
                connections=self._slots,
                exchange_ms=round(estimate * 1000, 1),
            )
        what = f"{route}: request" if route else "lookup"
        return ProviderError(
            self._provider,
            f"{what} refused at once: {ahead} requests queued ahead for {self._slots} connections "
            f"at about {estimate * 1000:.0f} ms each need about {needed:.1f}s, "
            f"{max(left, 0):.1f}s of the budget left",
        )
