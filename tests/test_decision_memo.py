"""Reused verdicts: a webhook's memo never outlives the record, the time or the webhook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.decision import Decision, DecisionMemo, decide
from connector.lookup import AnswerCache, MemoryCache, ProviderChain
from connector.models import parse_request
from connector.policy import PolicySettings, judge, rejudge
from connector.settings import WebhookSettings
from providers.base import DeviceRecord
from providers.identifiers import classify
from providers.memory import MemoryProvider
from tests.helpers import FIXED_NOW, INVENTORY_CSV, authorize, config, make_settings, webhook

SERIAL = "C02TEST00001"
SEEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def hook_with(tmp_path: Path, name: str = "gate", **policy: Any) -> WebhookSettings:
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(INVENTORY_CSV, encoding="utf-8")
    entry = webhook(name, "AUTHORIZING", policy=policy)
    return make_settings(config(inventory, webhooks=[entry])).webhooks[0]


def device(**fields: Any) -> DeviceRecord:
    return DeviceRecord(
        **{"provider": "jamf", "serial": SERIAL, "managed": True, "last_contact": SEEN, **fields}
    )


async def decided(
    hook: WebhookSettings, chain: ProviderChain, memo: DecisionMemo, now: datetime
) -> Decision:
    request = parse_request(authorize(SERIAL, now=now))
    return await decide(hook, request, chain, now=now, memo=memo)


def cached_chain(provider: MemoryProvider) -> ProviderChain:
    cache = AnswerCache(MemoryCache(10), found_ttl=300, not_found_ttl=60)
    return ProviderChain([provider], cache, budget=8)


async def test_a_time_based_rule_that_flips_between_calls_denies_the_second(
    tmp_path: Path,
) -> None:
    """The last-contact rule is judged again at each call's time, for the same cached record."""
    hook = hook_with(tmp_path, max_last_contact_age="3d")
    chain = cached_chain(MemoryProvider("jamf", [device()], cacheable=True))
    memo = DecisionMemo()
    await decided(hook, chain, memo, FIXED_NOW)  # the upstream's answer, now in the cache
    first = await decided(hook, chain, memo, FIXED_NOW)
    later = await decided(hook, chain, memo, FIXED_NOW + timedelta(days=2))
    assert first.allow
    assert first.record is later.record  # the very record the memo judged before
    assert not later.allow
    assert later.code == "last-contact-too-old"
    again = await decided(hook, chain, memo, FIXED_NOW)
    assert again.allow


async def test_a_changed_record_never_gets_the_old_answer(tmp_path: Path) -> None:
    """When the inventory's record for the device changes, the policy judges the new one."""
    hook = hook_with(tmp_path)
    provider = MemoryProvider("files", [device()])
    chain = ProviderChain([provider], budget=8)
    memo = DecisionMemo()
    assert (await decided(hook, chain, memo, FIXED_NOW)).allow
    provider.add(device(managed=False))
    refused = await decided(hook, chain, memo, FIXED_NOW)
    assert not refused.allow
    assert refused.code == "device-unmanaged"
    provider.add(device())
    assert (await decided(hook, chain, memo, FIXED_NOW)).allow


async def test_a_memo_handed_another_webhook_forgets_the_first(tmp_path: Path) -> None:
    """A verdict reached under one webhook's policy is never the answer under another's."""
    lenient = hook_with(tmp_path)
    strict = hook_with(tmp_path, "strict", platform=["iOS"])
    chain = ProviderChain([MemoryProvider("files", [device(platform="macOS")])], budget=8)
    memo = DecisionMemo()
    assert (await decided(lenient, chain, memo, FIXED_NOW)).allow
    refused = await decided(strict, chain, memo, FIXED_NOW)
    assert not refused.allow
    assert refused.code == "platform-not-allowed"
    assert (await decided(lenient, chain, memo, FIXED_NOW)).allow


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"max_last_contact_age": "1d"},
        {"max_last_contact_age": "30d", "supervised": True},
        {"platform": ["macOS"], "min_os_version": {"macOS": "15.0"}},
        {"report": "all", "supervised": True, "max_last_contact_age": "1d"},
    ],
    ids=["managed-only", "stale", "fresh-unsupervised", "os", "report-all"],
)
async def test_a_reused_verdict_equals_a_fresh_one(tmp_path: Path, policy: dict[str, Any]) -> None:
    """Across calls at different times, the memo's decision is the one a fresh evaluation gives."""
    hook = hook_with(tmp_path, **policy)
    record = device(platform="macOS", os_version="15.3", supervised=False)
    chain = cached_chain(MemoryProvider("jamf", [record], cacheable=True))
    memo = DecisionMemo()
    for hours in (0, 1, 30, 0, 800):
        now = FIXED_NOW + timedelta(hours=hours)
        request = parse_request(authorize(SERIAL, now=now))
        fresh = await decide(hook, request, chain, now=now)
        reused = await decide(hook, request, chain, now=now, memo=memo)
        assert (reused.allow, reused.code, reused.message, reused.outcomes) == (
            fresh.allow,
            fresh.code,
            fresh.message,
            fresh.outcomes,
        )


def test_rejudge_runs_only_the_rules_that_read_the_clock() -> None:
    """Outcomes of rules that never read `now` are kept; the clock-reading one is judged anew."""
    policy = PolicySettings.model_validate({"managed": True, "max_last_contact_age": "3d"})
    ident = classify(SERIAL)
    first = judge(policy, device(), ident, now=FIXED_NOW)
    assert [rule.key for _, rule in first.timed] == ["max_last_contact_age"]
    later = rejudge(first, policy, device(), ident, now=FIXED_NOW + timedelta(days=2))
    kept = [o for o in later.result.outcomes if o.rule == "managed"]
    assert kept == [o for o in first.result.outcomes if o.rule == "managed"]
    assert not later.result.allow
    assert (
        later.result.outcomes
        == judge(policy, device(), ident, now=FIXED_NOW + timedelta(days=2)).result.outcomes
    )
