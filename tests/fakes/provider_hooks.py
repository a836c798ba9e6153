"""A `ProviderHook` that records every event, for asserting what a provider reported."""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.observe import RetryScheduled, TokenEvent, UpstreamCall


@dataclass
class RecordingHook:
    """Keeps each event in arrival order, one list per kind."""

    calls: list[UpstreamCall] = field(default_factory=list)
    retries: list[RetryScheduled] = field(default_factory=list)
    tokens: list[TokenEvent] = field(default_factory=list)

    def upstream_call(self, event: UpstreamCall) -> None:
        """Record one HTTP exchange."""
        self.calls.append(event)

    def retry(self, event: RetryScheduled) -> None:
        """Record one scheduled retry."""
        self.retries.append(event)

    def token(self, event: TokenEvent) -> None:
        """Record a token refresh or refusal."""
        self.tokens.append(event)
