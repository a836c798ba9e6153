"""What the service reports while it decides: frozen events, the hook protocol, the log hook.

Modelled on stamina's instrumentation (``_data.py`` + ``_hooks.py``), and extending the provider
side in `providers.observe`: the handler builds one `DecisionEvent` per verified call, the chain
one `LookupEvent` per provider answer, and both go to one `Hook` the app builds once. The
structlog hook writes the log events docs/observability.md lists; metrics will be another hook.
A hook must be cheap and must never raise into a decision: `FanOut` logs and skips a broken one.

Events never carry secrets. An identifier that failed the shape check was chosen by whoever
sent the request: it is cut to `MAX_LOGGED_IDENTIFIER` characters before it reaches an event.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import structlog

from providers import observe
from providers.observe import ProviderHook, RetryScheduled, TokenEvent, UpstreamCall

log = structlog.get_logger("connector.observe")

MAX_LOGGED_IDENTIFIER = 64
"""Characters of an invalid (attacker-chosen) identifier that reach a log line."""
MAX_LOGGED_OBSERVED = 256
"""Characters of a rule's observed value that reach a log line (group lists can be long)."""

_E = TypeVar("_E")


def clip(value: str | None, limit: int) -> str | None:
    """`value` cut to `limit` characters."""
    return None if value is None else value[:limit]


USER_NAME_HIDDEN = "(a user name: logging.personal_data is off)"
"""What logs and the audit keep for an identifier that names a person."""


def kept_identifier(value: str | None, *, personal_data: bool) -> str | None:
    """`value` as logs and the audit keep it, cut to `MAX_LOGGED_IDENTIFIER`. A SCEP
    certificate's common name may be a user's UPN or e-mail address (Intune
    ``identity = "none"``): one with an ``@`` anywhere is kept only with
    ``logging.personal_data``. Device identifiers never hold one."""
    if value is not None and not personal_data and "@" in value:
        return USER_NAME_HIDDEN
    return clip(value, MAX_LOGGED_IDENTIFIER)


@dataclass(frozen=True, slots=True)
class FailedRule:
    """A policy rule that refused the device, with what it saw.

    Attributes:
        rule: The rule's config key (``managed``, ``groups.none_of``, ...).
        code: Its reason code.
        message: Its human explanation.
        observed: The value it saw, as text, cut to `MAX_LOGGED_OBSERVED` (None: unreported).
    """

    rule: str
    code: str | None
    message: str
    observed: str | None


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """The answer to one verified webhook call.

    Attributes:
        webhook: The webhook's configured name.
        kind: ``ENRICHING``, ``AUTHORIZING`` or ``SCEPCHALLENGE``.
        identifier: The attested identifier (an invalid one cut to `MAX_LOGGED_IDENTIFIER`).
        identifier_kind: Its shape, when it passed the check.
        allow: The answer.
        code: Reason code of a deny.
        provider: The provider whose record decided.
        cached: Whether that record (for a miss: any answer) came from the lookup cache.
        failed_rules: Every policy rule that failed, in evaluation order.
        failed_providers: Providers that failed during the lookup, in order.
        latency: Seconds from the request's arrival to the decision.
        user: The device user's username (only with ``logging.personal_data``).
        email: Their e-mail address (only with ``logging.personal_data``).
        shadow: The webhook runs in shadow mode: `allow` is what step-ca got (always True),
            `would_allow` what the policy decided.
        would_allow: The policy's own verdict in shadow mode (None otherwise).
        detail: Extra facts for the audit log (SCEP: transaction id, validator code).
    """

    webhook: str
    kind: str
    identifier: str | None
    identifier_kind: str | None
    allow: bool
    code: str | None
    provider: str | None
    cached: bool | None
    latency: float
    failed_rules: tuple[FailedRule, ...] = field(default=())
    failed_providers: tuple[str, ...] = field(default=())
    user: str | None = None
    email: str | None = None
    shadow: bool = False
    would_allow: bool | None = None
    detail: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class LookupEvent:
    """One provider's answer inside a chain lookup.

    Attributes:
        provider: Configured provider name.
        found: Whether it knows the device.
        outcome: ``found``, ``not_found``, ``error`` (it raised) or ``timeout`` (the decision
            budget ran out before it answered, or before it could be asked).
        latency: Seconds spent on it.
        cached: Whether the answer came from the lookup cache.
        error: Why it failed (safe to log), for ``error`` and ``timeout``.
    """

    provider: str
    found: bool
    outcome: Literal["found", "not_found", "error", "timeout"]
    latency: float
    cached: bool = False
    error: str | None = None


class Hook(ProviderHook, Protocol):
    """Receives decision, lookup and provider events. Must be fast and must not block."""

    def decision(self, event: DecisionEvent) -> None:
        """A verified call was answered."""
        ...

    def lookup(self, event: LookupEvent) -> None:
        """A provider answered (or failed) inside a chain lookup."""
        ...


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class StructlogHook:
    """Writes the service's log events (names and fields are a public interface)."""

    def __init__(self) -> None:
        self._bound: Any = None

    @property
    def _log(self) -> Any:
        """The logger, bound once when first used (after logging is configured): the module's
        proxy binds anew on every call, a cost each event (even a filtered debug one) pays."""
        if self._bound is None:
            self._bound = log.bind()
        return self._bound

    def decision(self, event: DecisionEvent) -> None:
        """``webhook.decision`` (info); fields that are None or empty are left out."""
        # Built in its final order, leaving out what is None (one dict, no filtering pass).
        fields: dict[str, Any] = {"webhook": event.webhook, "kind": event.kind}
        if event.identifier is not None:
            fields["identifier"] = event.identifier
        if event.identifier_kind is not None:
            fields["identifier_kind"] = event.identifier_kind
        fields["allow"] = event.allow
        if event.code is not None:
            fields["code"] = event.code
        if event.provider is not None:
            fields["provider"] = event.provider
        if event.cached is not None:
            fields["cached"] = event.cached
        if event.failed_rules:
            fields["reasons"] = [r.code for r in event.failed_rules]
            fields["failed_rules"] = [
                {"rule": r.rule, "code": r.code, "observed": r.observed, "message": r.message}
                for r in event.failed_rules
            ]
        if event.failed_providers:
            fields["failed_providers"] = list(event.failed_providers)
        fields["latency_ms"] = _ms(event.latency)
        if event.user is not None:
            fields["user"] = event.user
        if event.email is not None:
            fields["email"] = event.email
        if event.shadow:
            fields["shadow"] = True
        if event.would_allow is not None:
            fields["would_allow"] = event.would_allow
        self._log.info("webhook.decision", **fields)

    def lookup(self, event: LookupEvent) -> None:
        """``provider.lookup`` (debug) for an answer, ``provider.lookup_failed`` (warning)."""
        if event.outcome in ("error", "timeout"):
            self._log.warning(
                "provider.lookup_failed",
                provider=event.provider,
                error=event.error,
                outcome=event.outcome,
                latency_ms=_ms(event.latency),
            )
            return
        if not self._log.is_enabled_for(logging.DEBUG):  # every cache hit: build nothing unread
            return
        self._log.debug(
            "provider.lookup",
            provider=event.provider,
            found=event.found,
            cached=event.cached,
            latency_ms=_ms(event.latency),
        )

    def upstream_call(self, event: UpstreamCall) -> None:
        """``provider.upstream_call`` (debug)."""
        fields: dict[str, Any] = {"status": event.status, "error": event.error}
        self._log.debug(
            "provider.upstream_call",
            provider=event.provider,
            method=event.method,
            route=event.route,
            latency_ms=_ms(event.seconds),
            **{k: v for k, v in fields.items() if v is not None},
        )

    def retry(self, event: RetryScheduled) -> None:
        """``provider.retry`` (info)."""
        self._log.info(
            "provider.retry",
            provider=event.provider,
            route=event.route,
            attempt=event.attempt,
            wait=round(event.wait, 3),
            reason=event.reason,
            rate_limited=event.rate_limited,
        )

    def token(self, event: TokenEvent) -> None:
        """Nothing: the provider logs ``provider.token_refreshed`` / ``provider.token_failed``
        itself, with vendor detail (credential kind, token path) a metric has no use for."""
        del event


class FanOut(observe.FanOut):
    """Hands every event to each hook in order; a hook that raises is logged and skipped."""

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        super().__init__(hooks)
        self._all = tuple(hooks)
        # Bound once: these two run on every call (twice per decision), so no per-event lookup
        # of the methods and no helper call per hook.
        self._decision = tuple(hook.decision for hook in self._all)
        self._lookup = tuple(hook.lookup for hook in self._all)

    def decision(self, event: DecisionEvent) -> None:
        """Forward to every hook."""
        for method in self._decision:
            try:
                method(event)
            except Exception:  # a broken hook must never fail a decision
                _failed(method)

    def lookup(self, event: LookupEvent) -> None:
        """Forward to every hook."""
        for method in self._lookup:
            try:
                method(event)
            except Exception:  # a broken hook must never fail a decision
                _failed(method)


def _failed(method: Callable[[_E], None]) -> None:
    with contextlib.suppress(Exception):  # the log hook itself may be what failed
        log.exception(
            "observe.hook_failed", hook=type(getattr(method, "__self__", method)).__name__
        )


NO_HOOKS = FanOut()
"""A hook that drops everything: the default for chains built without observers."""
