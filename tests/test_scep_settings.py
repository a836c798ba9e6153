"""SCEP configuration: which kinds take which validator, and the challenge URL's own rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.scep import ChallengeValidatorSettings, IntuneValidatorSettings
from connector.settings import ConfigError, settings_from_mapping
from tests.helpers import config, webhook

CHALLENGE = {
    "kind": "challenge",
    "path": "/scep/challenge",
    "username": "fleet",
    "password": "sixteen-chars-at-least",
}
INTUNE_PROVIDER = {
    "kind": "intune",
    "tenant_id": "contoso.onmicrosoft.com",
    "client_id": "5d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a",
    "client_secret": "not-used-here",
}


def mapping(tmp_path: Path, *hooks: dict[str, Any]) -> dict[str, Any]:
    """A config with the CSV inventory, an Intune provider and `hooks`."""
    base = config(tmp_path / "inventory.csv")
    base["providers"] = base["providers"] | {"intune": INTUNE_PROVIDER}
    base["webhooks"] = list(hooks)
    return base


def problems(tmp_path: Path, *hooks: dict[str, Any]) -> list[str]:
    """Every problem `settings_from_mapping` finds."""
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(mapping(tmp_path, *hooks), source="cfg.toml")
    return info.value.problems


def scep(name: str = "wifi", kind: str = "SCEPCHALLENGE", **extra: Any) -> dict[str, Any]:
    """A SCEP webhook entry (a challenge validator unless `extra` says otherwise)."""
    fields: dict[str, Any] = {"validator": CHALLENGE, **extra}
    return webhook(name, kind, path=f"/webhooks/{name}", webhook_id=f"id-{name}", **fields)


def test_both_validator_kinds_load(tmp_path: Path) -> None:
    """A challenge and an Intune SCEPCHALLENGE webhook, and a NOTIFYING one without providers."""
    settings = settings_from_mapping(
        mapping(
            tmp_path,
            scep(),
            scep("intune", validator={"kind": "intune", "provider": "intune"}),
            scep(
                "notify",
                "NOTIFYING",
                providers=(),
                validator={"kind": "intune", "provider": "intune"},
            ),
        )
    )

    challenge, intune, notify = (h.validator for h in settings.webhooks)
    assert isinstance(challenge, ChallengeValidatorSettings)
    assert (challenge.ttl, challenge.unbound, challenge.timeout) == (3600.0, "probe", 3.0)
    assert isinstance(intune, IntuneValidatorSettings)
    assert intune.scope == "https://api.manage.microsoft.com//.default"
    assert isinstance(notify, IntuneValidatorSettings)
    assert settings.webhooks[2].providers == ()
    assert "sixteen-chars-at-least" not in repr(settings)


@pytest.mark.parametrize(
    ("hook", "problem"),
    [
        (scep(validator=None), "webhooks[0]: a SCEPCHALLENGE webhook needs [webhooks.validator]"),
        (
            scep(mode="shadow"),
            "webhooks[0]: a SCEPCHALLENGE webhook cannot run in shadow mode",
        ),
        (
            scep("notify", "NOTIFYING"),
            'webhooks[0]: a NOTIFYING webhook\'s validator can only be kind = "intune"',
        ),
        (
            webhook(validator=CHALLENGE),
            "webhooks[0]: validator belongs to SCEPCHALLENGE and NOTIFYING webhooks only",
        ),
        (
            scep(providers=()),
            "webhooks[0].providers: Tuple should have at least 1 item",
        ),
        (
            scep(validator=CHALLENGE | {"password": "short"}),
            "webhooks[0].validator.challenge.password: use at least 16 characters",
        ),
        (
            scep(validator=CHALLENGE | {"username": "a:b"}),
            "webhooks[0].validator.challenge.username: an HTTP Basic user name cannot contain",
        ),
        (
            scep(validator={"kind": "intune", "provider": "intune", "intune_resource": "http://x"}),
            "webhooks[0].validator.intune.intune_resource: expected an https:// resource URI",
        ),
        (
            scep(validator={"kind": "ndes"}),
            "webhooks[0].validator: Input tag 'ndes' found using 'kind' does not match",
        ),
    ],
    ids=[
        "no-validator",
        "shadow",
        "notify-challenge",
        "enriching-validator",
        "no-providers",
        "short-password",
        "colon-user",
        "http-resource",
        "unknown-kind",
    ],
)
def test_scep_webhook_mistakes_are_named(
    tmp_path: Path, hook: dict[str, Any], problem: str
) -> None:
    """Each misconfiguration is refused with its key path."""
    found = problems(tmp_path, hook)
    assert any(p.startswith(f"cfg.toml: {problem}") for p in found), found


@pytest.mark.parametrize(
    ("provider", "problem"),
    [
        ("jamf", "unknown provider jamf"),
        ("inventory", "inventory is not kind intune"),
    ],
    ids=["unknown", "not-intune"],
)
def test_intune_validator_needs_an_intune_provider(
    tmp_path: Path, provider: str, problem: str
) -> None:
    """The Intune validator signs in with an Intune provider's app registration."""
    hook = scep(validator={"kind": "intune", "provider": provider})
    assert problems(tmp_path, hook) == [f"cfg.toml: webhooks[0].validator.provider: {problem}"]


@pytest.mark.parametrize(
    "path",
    ["/webhooks/wifi", "/healthz", "/scep/challenge", "/metrics"],
    ids=["webhook", "health", "twice", "metrics"],
)
def test_challenge_url_must_be_its_own_path(tmp_path: Path, path: str) -> None:
    """A challenge URL may not reuse a webhook's, a health, the metrics (served on the service's
    listener by default) or another challenge URL's path: `serve` could not add its route."""
    other = scep("other", validator=CHALLENGE)
    hook = scep(validator=CHALLENGE | {"path": path})
    found = problems(tmp_path, other, hook)
    assert found == [f"cfg.toml: webhooks[1].validator.path: {path} is already served"]
