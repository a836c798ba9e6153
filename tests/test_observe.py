"""Observation hooks: the structlog hook's events (whole dicts) and the fan-out's isolation."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.observe import (
    DecisionEvent,
    FailedRule,
    FanOut,
    Hook,
    LookupEvent,
    StructlogHook,
)
from providers.observe import RetryScheduled, TokenEvent, UpstreamCall

DENY = DecisionEvent(
    webhook="people",
    kind="ENRICHING",
    identifier="C02TEST00002",
    identifier_kind="serial",
    allow=False,
    code="device-unmanaged",
    provider="jamf",
    cached=True,
    latency=0.01234,
    failed_rules=(FailedRule("managed", "device-unmanaged", "device is not managed", "false"),),
    failed_providers=("intune",),
)


def _emit(method: str, event: Any) -> list[dict[str, Any]]:
    with capture_logs() as logs:
        getattr(StructlogHook(), method)(event)
    return [dict(e) for e in logs]


def test_structlog_hook_leaves_token_events_to_the_provider() -> None:
    """Token events are logged once, by the provider (with vendor detail), not again here."""
    assert _emit("token", TokenEvent("intune", "refreshed", expires_in=3599)) == []
    assert _emit("token", TokenEvent("intune", "refused", detail="AADSTS7000215")) == []


@pytest.mark.parametrize(
    ("method", "event", "expected"),
    [
        (
            "decision",
            DENY,
            {
                "event": "webhook.decision",
                "log_level": "info",
                "webhook": "people",
                "kind": "ENRICHING",
                "identifier": "C02TEST00002",
                "identifier_kind": "serial",
                "allow": False,
                "code": "device-unmanaged",
                "provider": "jamf",
                "cached": True,
                "reasons": ["device-unmanaged"],
                "failed_rules": [
                    {
                        "rule": "managed",
                        "code": "device-unmanaged",
                        "observed": "false",
                        "message": "device is not managed",
                    }
                ],
                "failed_providers": ["intune"],
                "latency_ms": 12.34,
            },
        ),
        (
            "decision",
            DecisionEvent("gate", "AUTHORIZING", None, None, True, None, None, None, 0.002),
            {
                "event": "webhook.decision",
                "log_level": "info",
                "webhook": "gate",
                "kind": "AUTHORIZING",
                "allow": True,
                "latency_ms": 2.0,
            },
        ),
        (
            "lookup",
            LookupEvent("jamf", found=True, outcome="found", latency=0.0015, cached=True),
            {
                "event": "provider.lookup",
                "log_level": "debug",
                "provider": "jamf",
                "found": True,
                "cached": True,
                "latency_ms": 1.5,
            },
        ),
        (
            "lookup",
            LookupEvent("jamf", found=False, outcome="timeout", latency=0.3, error="no answer"),
            {
                "event": "provider.lookup_failed",
                "log_level": "warning",
                "provider": "jamf",
                "error": "no answer",
                "outcome": "timeout",
                "latency_ms": 300.0,
            },
        ),
        (
            "upstream_call",
            UpstreamCall("jamf", "GET", "/api/v1/departments/{id}", 200, 0.0421),
            {
                "event": "provider.upstream_call",
                "log_level": "debug",
                "provider": "jamf",
                "method": "GET",
                "route": "/api/v1/departments/{id}",
                "status": 200,
                "latency_ms": 42.1,
            },
        ),
        (
            "upstream_call",
            UpstreamCall("intune", "GET", "/v1.0/deviceManagement", None, 2.0, "ConnectTimeout"),
            {
                "event": "provider.upstream_call",
                "log_level": "debug",
                "provider": "intune",
                "method": "GET",
                "route": "/v1.0/deviceManagement",
                "error": "ConnectTimeout",
                "latency_ms": 2000.0,
            },
        ),
        (
            "retry",
            RetryScheduled("jamf", "/api/v1/computers-inventory", 1, 0.25, "status 503"),
            {
                "event": "provider.retry",
                "log_level": "info",
                "provider": "jamf",
                "route": "/api/v1/computers-inventory",
                "attempt": 1,
                "wait": 0.25,
                "reason": "status 503",
                "rate_limited": False,
            },
        ),
    ],
    ids=[
        "decision-deny",
        "decision-allow-minimal",
        "lookup-cached",
        "lookup-timeout",
        "upstream-call",
        "upstream-no-answer",
        "retry",
    ],
)
def test_structlog_hook_writes_the_documented_event(
    method: str, event: Any, expected: dict[str, Any]
) -> None:
    """Each event becomes one log event with its stable name and exactly these fields."""
    assert _emit(method, event) == [expected]


class _Broken:
    """A hook with a bug in every method."""

    def _fail(self, _event: object) -> None:
        raise RuntimeError("hook bug")

    decision = lookup = upstream_call = retry = token = _fail


class _Recorder:
    """A hook that keeps every event it receives."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    def _keep(self, event: object) -> None:
        self.seen.append(event)

    decision = lookup = upstream_call = retry = token = _keep


@pytest.mark.parametrize(
    ("method", "event"),
    [
        ("decision", DENY),
        ("lookup", LookupEvent("jamf", found=False, outcome="not_found", latency=0.0)),
        ("retry", RetryScheduled("jamf", "/x", 1, 0.1, "status 503")),
    ],
    ids=["decision", "lookup", "provider-event"],
)
def test_a_broken_hook_never_stops_the_others(method: str, event: Any) -> None:
    """A hook that raises is logged as observe.hook_failed and the next hook still gets the event."""
    recorder = _Recorder()
    hooks: list[Hook] = [_Broken(), recorder]
    with capture_logs() as logs:
        getattr(FanOut(hooks), method)(event)
    assert recorder.seen == [event]
    assert [(e["event"], e["hook"]) for e in logs] == [("observe.hook_failed", "_Broken")]
