"""The cheap paths of a call the cache answers: same answers, same events, same checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.decision import Decision
from connector.lookup import AnswerCache, MemoryCache, ProviderChain
from connector.observe import DecisionEvent, FanOut, LookupEvent
from providers.base import DeviceRecord, UserRecord
from providers.identifiers import classify
from providers.memory import MemoryProvider
from tests.conftest import AppClient
from tests.helpers import AUTH_ID, authorize, signed

SERIAL = "C02TEST00001"


class Recorder(FanOut):
    """Keeps every lookup event."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[LookupEvent] = []

    def lookup(self, event: LookupEvent) -> None:
        self.lookups.append(event)

    def decision(self, event: DecisionEvent) -> None:
        del event


def device(provider: str = "jamf") -> DeviceRecord:
    return DeviceRecord(
        provider=provider,
        serial=SERIAL,
        managed=True,
        last_contact=datetime(2025, 3, 14, 9, 26, tzinfo=UTC),
        user=UserRecord(username="anika", full_name="Anika Şharma"),
    )


@pytest.mark.parametrize(
    "decision",
    [
        Decision(allow=True),
        Decision(allow=True, data={"device": {"serial": SERIAL}, "user": {"name": "Anika Şharma"}}),
        Decision(allow=True, data={}),
        Decision(allow=False, code="device-unmanaged", message="the device is not managed"),
        Decision(allow=False),
    ],
    ids=["allow", "allow-with-data", "allow-empty-data", "deny", "deny-without-code"],
)
def test_reply_body_is_the_reply_as_json(decision: Decision) -> None:
    """The bytes sent are exactly the reply model's JSON (no null members)."""
    assert json.loads(decision.reply_body()) == decision.reply().to_json()


def test_reply_body_writes_a_lone_surrogate_as_u_fffd() -> None:
    """Text that is not valid Unicode (orjson refuses it) is sent as step-ca's Go reads it."""
    decision = Decision(allow=True, data={"user": {"name": "bad \udc80 byte"}})
    assert json.loads(decision.reply_body()) == {
        "allow": True,
        "data": {"user": {"name": "bad \ufffd byte"}},
    }


async def test_a_cached_answer_is_decoded_once_and_keeps_its_record() -> None:
    """Two hits on an unchanged entry return the same record; a new answer replaces it."""
    cache = AnswerCache(MemoryCache(10), found_ttl=300, not_found_ttl=60)
    identifier = classify(SERIAL)
    await cache.put("jamf", identifier, device())
    first, second = await cache.get("jamf", identifier), await cache.get("jamf", identifier)
    assert first is not None
    assert first is second
    await cache.put("jamf", identifier, None)
    third = await cache.get("jamf", identifier)
    assert third is not None
    assert third.record is None


async def test_cache_hits_report_the_events_of_every_provider_asked() -> None:
    """A call the cache answers reports each provider's cached answer, in chain order."""
    hooks = Recorder()
    first = MemoryProvider("first", cacheable=True)
    second = MemoryProvider("second", [device("second")], cacheable=True)
    cache = AnswerCache(MemoryCache(10), found_ttl=300, not_found_ttl=60)
    chain = ProviderChain([first, second], cache, budget=8, hooks=hooks)
    await chain.lookup(classify(SERIAL))
    hooks.lookups.clear()
    result = await chain.lookup(classify(SERIAL))
    assert result.record is not None
    assert result.record.provider == "second"
    assert result.cached
    assert [(e.provider, e.outcome, e.cached) for e in hooks.lookups] == [
        ("first", "not_found", True),
        ("second", "found", True),
    ]
    assert first.calls == [SERIAL]
    assert second.calls == [SERIAL]


async def test_a_provider_that_is_never_cached_is_asked_on_every_call() -> None:
    """Behind a cached not-found, an in-memory inventory still decides each call afresh."""
    remote = MemoryProvider("remote", cacheable=True)
    local = MemoryProvider("file", [device("file")])
    cache = AnswerCache(MemoryCache(10), found_ttl=300, not_found_ttl=60)
    chain = ProviderChain([remote, local], cache, budget=8)
    for _ in range(3):
        result = await chain.lookup(classify(SERIAL))
        assert result.record is not None
    assert remote.calls == [SERIAL]
    assert local.calls == [SERIAL] * 3


async def test_webhook_answer_is_json_with_its_content_type(app_client: AppClient) -> None:
    """The reply is sent as `application/json; charset=utf-8`, as before."""
    client = await app_client()
    body = authorize(SERIAL)
    response = await client.post(
        "/webhooks/gate", data=body, headers=signed(body, webhook_id=AUTH_ID)
    )
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    answer: dict[str, Any] = await response.json()
    assert answer == {"allow": True}
