"""What a provider reports while it works: frozen events and the hook protocol that receives them.

Modelled on stamina's instrumentation (``instrumentation/_data.py`` + ``_hooks.py``): a provider
builds one small frozen value per event and hands it to every registered hook; the structlog
logger is one hook, metrics and traces are others. Hooks must be cheap and must never raise into
the provider: `FanOut` shields the provider from a broken hook.

Events carry no secret, token or device identifier: ``route`` is the path *template* (ids
replaced by ``{id}``), so a metrics label built from it stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import structlog

log = structlog.get_logger("providers.observe")

_E = TypeVar("_E")


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One HTTP exchange with an inventory API (each retry attempt is its own call).

    Attributes:
        provider: Configured provider name.
        method: HTTP method.
        route: Path template with ids replaced, e.g. ``/api/v1/departments/{id}``.
        status: HTTP status, or None when no answer arrived.
        seconds: Wall time of the exchange.
        error: Exception class name when no answer arrived.
    """

    provider: str
    method: str
    route: str
    status: int | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A failed attempt that will be retried after `wait` seconds.

    Attributes:
        provider: Configured provider name.
        route: Path template of the request.
        attempt: The attempt that just failed (1-based).
        wait: Seconds slept before the next attempt (the exact wait taken).
        reason: ``status 503``, ``ConnectTimeout``, ...
        rate_limited: True when the wait comes from the upstream's ``Retry-After``.
    """

    provider: str
    route: str
    attempt: int
    wait: float
    reason: str
    rate_limited: bool = False


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A bearer token was fetched, or the upstream refused to issue one.

    Attributes:
        provider: Configured provider name.
        outcome: ``refreshed`` or ``refused``.
        expires_in: Lifetime of a refreshed token in seconds.
        detail: Secret-free reason of a refusal (vendor error code or text).
    """

    provider: str
    outcome: Literal["refreshed", "refused"]
    expires_in: float | None = None
    detail: str | None = None


class ProviderHook(Protocol):
    """Receives provider events. Implementations must be fast and must not block."""

    def upstream_call(self, event: UpstreamCall) -> None:
        """One HTTP exchange finished (or failed without an answer)."""
        ...

    def retry(self, event: RetryScheduled) -> None:
        """An attempt failed and another one follows."""
        ...

    def token(self, event: TokenEvent) -> None:
        """A token was refreshed or refused."""
        ...


class FanOut:
    """Hands every event to each hook in order; a hook that raises is logged and skipped."""

    def __init__(self, hooks: Sequence[ProviderHook] = ()) -> None:
        self._hooks = tuple(hooks)

    def upstream_call(self, event: UpstreamCall) -> None:
        """Forward to every hook."""
        for hook in self._hooks:
            _safely(hook.upstream_call, event)

    def retry(self, event: RetryScheduled) -> None:
        """Forward to every hook."""
        for hook in self._hooks:
            _safely(hook.retry, event)

    def token(self, event: TokenEvent) -> None:
        """Forward to every hook."""
        for hook in self._hooks:
            _safely(hook.token, event)


def _safely(method: Callable[[_E], None], event: _E) -> None:
    try:
        method(event)
    except Exception:  # a broken hook must never fail a lookup
        log.exception(
            "observe.hook_failed", hook=type(getattr(method, "__self__", method)).__name__
        )


NO_HOOKS = FanOut()
"""A hook that drops everything: the default for providers built without observers."""
