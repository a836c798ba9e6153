"""When a provider fails or runs out of time: fail closed by default, `next` on request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.decision import decide
from connector.lookup import ProviderChain
from connector.models import WebhookRequest
from connector.settings import ConfigError
from providers.memory import MemoryProvider
from tests.conftest import AppClient
from tests.helpers import FIXED_NOW, config, enrich, make_settings, signed, webhook


def _providers(inventory: Path, tmp_path: Path) -> dict[str, Any]:
    """A provider that cannot load (missing file) in front of the working inventory."""
    return {
        "broken": {"kind": "json", "path": str(tmp_path / "missing.json"), "reload_interval": 0},
        "inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0},
    }


async def _decide(client: Any, identifier: str) -> dict[str, Any]:
    body = enrich(identifier)
    response = await client.post("/webhooks/people", data=body, headers=signed(body))
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def test_a_failing_provider_before_a_match_denies_by_default(
    app_client: AppClient, inventory: Path, tmp_path: Path
) -> None:
    """By default a lower-priority inventory never decides while a higher one is failing."""
    hooks = [webhook(providers=("broken", "inventory"))]
    client = await app_client(
        config(inventory, providers=_providers(inventory, tmp_path), webhooks=hooks)
    )
    with capture_logs() as logs:
        answer = await _decide(client, "C02TEST00001")
    assert (answer["allow"], answer["error"]["code"]) == (False, "inventory-unavailable")
    [decision] = [e for e in logs if e["event"] == "webhook.decision"]
    assert decision["failed_providers"] == ["broken"]
    assert not [e for e in logs if e.get("provider") == "inventory"]  # never asked


async def test_next_lets_a_later_provider_decide(
    app_client: AppClient, inventory: Path, tmp_path: Path
) -> None:
    """With on_provider_failure = "next", the chain moves past a failure to the next provider."""
    hooks = [webhook(providers=("broken", "inventory"), on_provider_failure="next")]
    client = await app_client(
        config(inventory, providers=_providers(inventory, tmp_path), webhooks=hooks)
    )
    answer = await _decide(client, "C02TEST00001")
    assert (answer["allow"], answer["data"]["provider"]) == (True, "inventory")


async def test_a_provider_out_of_time_is_a_failure_not_an_error(inventory: Path) -> None:
    """A provider that outlives the decision budget ends in inventory-unavailable, not a 500."""
    hook = make_settings(config(inventory)).webhooks[0]
    slow = MemoryProvider.of_serials("inventory", "C02TEST00001")
    slow.gate = asyncio.Event()  # never opened
    chain = ProviderChain([slow], budget=0.05)
    request = WebhookRequest.model_validate_json(enrich("C02TEST00001"))
    decision = await decide(hook, request, chain, now=FIXED_NOW)
    assert (decision.allow, decision.code) == (False, "inventory-unavailable")
    assert decision.lookup is not None
    assert [f.provider for f in decision.lookup.failures] == ["inventory"]


def test_defaults_fail_closed_within_step_ca_patience(inventory: Path) -> None:
    """The decision budget defaults to 8 s (step-ca waits 10) and failures deny by default."""
    settings = make_settings(config(inventory))
    assert settings.server.decision_budget == 8.0
    assert {h.on_provider_failure for h in settings.webhooks} == {"deny"}


@pytest.mark.parametrize(
    ("section", "value"),
    [("server", {"decision_budget": 0}), ("server", {"decision_budget": 10})],
    ids=["zero-budget", "budget-past-step-ca"],
)
def test_budget_must_fit_step_ca(inventory: Path, section: str, value: dict[str, Any]) -> None:
    """A budget of 0 or one step-ca would not wait for is refused at load."""
    mapping = config(inventory)
    mapping[section] = {**mapping[section], **value}
    with pytest.raises(ConfigError) as caught:
        make_settings(mapping)
    assert [p.split(": ")[1] for p in caught.value.problems] == ["server.decision_budget"]


def test_unknown_failover_mode_is_refused(inventory: Path) -> None:
    """on_provider_failure accepts only "deny" and "next"."""
    with pytest.raises(ConfigError) as caught:
        make_settings(config(inventory, webhooks=[webhook(on_provider_failure="allow")]))
    assert [p.split(": ")[1] for p in caught.value.problems] == ["webhooks[0].on_provider_failure"]
