"""The Apple Business Manager provider against the fake API, and the ownership webhook design."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from providers import preflight_problems
from providers.abm import AbmProvider, AbmSettings
from providers.base import DeviceLister, ProviderError, ProviderNotReady
from providers.identifiers import IdentifierKind, classify
from tests.example_configs import localized, lookup
from tests.fakes.abm import (
    APPLE_TV,
    CLIENT_ID,
    IPAD,
    IPHONE,
    JAMF_SERVER,
    KEY_ID,
    MAC,
    RELEASED,
    UNASSIGNED,
    FakeAbm,
)
from tests.fakes.abm import create_app as fake_app
from tests.fakes.provider_hooks import RecordingHook
from tests.helpers import AUTH_ID, FIXED_NOW, authorize, config, enrich, make_settings, signed
from tests.helpers import webhook as webhook_entry
from tests.vendor_support import providers_made, serial, served_url

OURS = "Jamf Pro Production"
MakeProvider = Callable[..., Awaitable[AbmProvider]]


@pytest.fixture
def fake() -> FakeAbm:
    """A fresh fake organisation."""
    return FakeAbm()


@pytest.fixture
async def abm_url(aiohttp_server: Any, fake: FakeAbm) -> str:
    """The fake on 127.0.0.1, port 0."""
    return await served_url(aiohttp_server, fake_app(fake))


@pytest.fixture
def key_file(tmp_path: Path, fake: FakeAbm) -> Path:
    """The API account's private key."""
    return fake.key_file(tmp_path)


def abm_table(url: str, key: Path, **overrides: Any) -> dict[str, Any]:
    """A ``[providers.abm]`` table pointing at the fake."""
    table = {
        "kind": "abm",
        "client_id": CLIENT_ID,
        "key_id": KEY_ID,
        "private_key": str(key),
        "mdm_servers": [OURS],
        "token_url": f"{url}/auth/oauth2/token",
        "api_url": url,
        "budget": 3.0,
        "backoff": 0.01,
    }
    return table | overrides


@pytest.fixture
async def make_provider(abm_url: str, key_file: Path) -> AsyncIterator[MakeProvider]:
    """Build providers against the fake; closed after the test."""

    def build(*, hooks: RecordingHook | None = None, **overrides: Any) -> AbmProvider:
        settings = AbmSettings.model_validate(abm_table(abm_url, key_file, **overrides))
        return AbmProvider("abm", settings, hooks=hooks or RecordingHook())

    async with providers_made(build) as make:
        yield make


# -- settings ------------------------------------------------------------------------------------


def test_defaults_are_apples_hosts_and_scope(tmp_path: Path) -> None:
    """Business accounts talk to api-business with business.api; school ones to api-school."""
    table = {
        "kind": "abm",
        "client_id": CLIENT_ID,
        "key_id": KEY_ID,
        "private_key": str(tmp_path / "k.pem"),
    }
    business = AbmSettings.model_validate(table)
    school = AbmSettings.model_validate(table | {"client_id": "SCHOOLAPI.1234-abcd"})
    assert (business.api_base, business.scope) == ("https://api-business.apple.com", "business.api")
    assert (school.api_base, school.scope) == ("https://api-school.apple.com", "school.api")
    assert business.token_url == "https://account.apple.com/auth/oauth2/token"
    assert preflight_problems(business) == [f"private_key: no such file: {tmp_path / 'k.pem'}"]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"client_id": "my-app"}, "client_id"),
        ({"key_id": "../k"}, "key_id"),
        ({"token_url": "http://account.example.com/token"}, "plain http"),
        ({"mdm_servers": ["  "]}, "empty"),
    ],
)
def test_invalid_settings_are_refused(
    tmp_path: Path, overrides: dict[str, Any], problem: str
) -> None:
    """Malformed ids, plain-http token URLs and empty service names do not load."""
    with pytest.raises(ValidationError, match=problem):
        AbmSettings.model_validate(
            abm_table("https://api-business.apple.com", tmp_path / "k", **overrides)
        )


# -- lookups -------------------------------------------------------------------------------------


async def test_owned_device_assigned_to_our_mdm_is_managed(
    make_provider: MakeProvider, fake: FakeAbm
) -> None:
    """A Mac assigned to our service: company-owned, managed, in group abm-server:<name>."""
    provider = await make_provider()
    record = await provider.lookup(serial(MAC))
    assert record is not None
    assert (record.owner_type, record.managed, record.platform) == ("company", True, "macOS")
    assert [g.name for g in record.groups] == [f"abm-server:{OURS}"]
    paths = [r.path for r in fake.board.logged("/v1/orgDevices")]
    assert paths[-2:] == [f"/v1/orgDevices/{MAC}", f"/v1/orgDevices/{MAC}/assignedServer"]


async def test_device_assigned_elsewhere_is_unmanaged(make_provider: MakeProvider) -> None:
    """An iPad assigned to another service is ours but not managed by our MDM."""
    record = await (await make_provider()).lookup(serial(IPAD))
    assert record is not None
    assert (record.owner_type, record.managed) == ("company", False)
    assert [g.name for g in record.groups] == ["abm-server:Legacy MDM"]


async def test_unassigned_device_asks_nothing_more(
    make_provider: MakeProvider, fake: FakeAbm
) -> None:
    """An UNASSIGNED device is unmanaged without asking for its service."""
    record = await (await make_provider()).lookup(serial(UNASSIGNED))
    assert record is not None
    assert (record.managed, record.groups) == (False, ())
    assert not fake.board.logged(f"/v1/orgDevices/{UNASSIGNED}/assignedServer")


async def test_released_device_is_not_the_organisations(make_provider: MakeProvider) -> None:
    """A device released from the organisation is answered as unknown, with a log line."""
    provider = await make_provider()
    with capture_logs() as logs:
        assert await provider.lookup(serial(RELEASED)) is None
    assert any(e["event"] == "provider.device_released" for e in logs)


async def test_unknown_serial_is_none(make_provider: MakeProvider) -> None:
    """Apple's 404 for a serial means the organisation does not hold it."""
    assert await (await make_provider()).lookup(serial("ZZZZ00000000")) is None


async def test_without_mdm_servers_managed_is_unreported(make_provider: MakeProvider) -> None:
    """With no service named, managed stays None and only the group tells the assignment."""
    record = await (await make_provider(mdm_servers=[])).lookup(serial(MAC))
    assert record is not None
    assert record.managed is None
    assert [g.name for g in record.groups] == [f"abm-server:{OURS}"]


async def test_udid_is_never_searched(make_provider: MakeProvider, fake: FakeAbm) -> None:
    """Apple Business Manager knows serials only: a UDID is "not found" without a request."""
    provider = await make_provider()
    before = len(fake.board.requests)
    found = await provider.lookup(
        classify("00008110-000A1C2E3F40801E", frozenset({IdentifierKind.UDID}))
    )
    assert found is None
    assert len(fake.board.requests) == before


async def test_unknown_configured_service_is_warned_at_start(make_provider: MakeProvider) -> None:
    """A name in mdm_servers that Apple does not list is logged at start (a likely typo)."""
    with capture_logs() as logs:
        await make_provider(mdm_servers=[OURS, "Jamf Pro Prodution"])
    unknown = [e["mdm_server"] for e in logs if e["event"] == "provider.mdm_server_unknown"]
    assert unknown == ["Jamf Pro Prodution"]


# -- credentials ---------------------------------------------------------------------------------


async def test_assertion_is_accepted_and_token_reused(
    make_provider: MakeProvider, fake: FakeAbm
) -> None:
    """The ES256 client assertion is accepted; one token serves many lookups."""
    provider = await make_provider()
    for identifier in (MAC, IPHONE, APPLE_TV):
        assert await provider.lookup(serial(identifier)) is not None
    assert fake.token_requests == 1


async def test_each_token_request_carries_a_fresh_assertion(
    make_provider: MakeProvider, fake: FakeAbm
) -> None:
    """After expiry the token is renewed with a new jti (Apple refuses a replayed one)."""
    provider = await make_provider()
    fake.expire_tokens()
    assert await provider.lookup(serial(MAC)) is not None
    assert (fake.token_requests, len(fake.used_jtis)) == (2, 2)


async def test_other_key_is_refused_without_leaking_it(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """An assertion signed by another key is invalid_client: not ready, no key material."""
    stranger = FakeAbm().key_file(tmp_path, "other.pem")
    hooks = RecordingHook()
    with pytest.raises(ProviderNotReady, match="invalid_client") as info:
        await make_provider(private_key=str(stranger), hooks=hooks)
    assert "PRIVATE KEY" not in str(info.value)
    assert [t.outcome for t in hooks.tokens] == ["refused"]


@pytest.mark.parametrize("kind", ["rsa", "p384", "garbage"])
async def test_key_that_is_not_p256_is_not_ready(
    make_provider: MakeProvider, tmp_path: Path, kind: str
) -> None:
    """Apple signs with ES256: an RSA key, another curve or a non-key leaves it not ready."""
    path = tmp_path / f"{kind}.pem"
    if kind == "garbage":
        path.write_text("not a key", encoding="utf-8")
    else:
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP384R1())
        )
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with pytest.raises(ProviderNotReady, match=r"P-256|PEM private key"):
        await make_provider(private_key=str(path))


# -- faults --------------------------------------------------------------------------------------


async def test_rate_limit_waits_retry_after(make_provider: MakeProvider, fake: FakeAbm) -> None:
    """A 429 with Retry-After is waited out once, reported as rate limited."""
    hooks = RecordingHook()
    provider = await make_provider(hooks=hooks)
    fake.board.inject("429", "/v1/orgDevices", retry_after="0")
    assert await provider.lookup(serial(MAC)) is not None
    assert [(r.rate_limited, r.wait) for r in hooks.retries] == [(True, 0.0)]


@pytest.mark.parametrize(
    ("kind", "path", "message"),
    [
        ("403", "/v1/orgDevices", "allowed to view devices"),
        ("500", "/v1/orgDevices", "unexpected HTTP 500"),
        ("malformed", "/v1/orgDevices", "malformed JSON"),
        ("401", "/v1/orgDevices", "refused a fresh token"),
        ("503", f"/v1/orgDevices/{MAC}/assignedServer", "503"),
    ],
    ids=["forbidden", "server-error", "malformed", "unauthorized", "assignment-down"],
)
async def test_faults_fail_closed(
    make_provider: MakeProvider, fake: FakeAbm, kind: Any, path: str, message: str
) -> None:
    """Any failure, also of the assignment request alone, is a ProviderError."""
    provider = await make_provider(retries=1)
    fake.board.inject(kind, path, times=None)
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(serial(MAC))


async def test_slow_api_exceeds_the_budget(make_provider: MakeProvider, fake: FakeAbm) -> None:
    """An API slower than the budget fails the lookup at the budget."""
    provider = await make_provider(budget=0.3)
    fake.board.inject("slow", "/v1/orgDevices", delay=1.0)
    with pytest.raises(ProviderError, match="budget"):
        await provider.lookup(serial(MAC))


# -- listing -------------------------------------------------------------------------------------


async def test_listing_pages_devices_and_assignments(
    make_provider: MakeProvider, fake: FakeAbm
) -> None:
    """iter_devices pages services, their devices and the organisation's devices; released skipped."""
    provider = await make_provider(page_size=2)
    assert isinstance(provider, DeviceLister)
    records = {r.serial: r async for r in provider.iter_devices()}
    assert set(records) == {MAC, IPHONE, IPAD, UNASSIGNED, APPLE_TV}
    assert (records[MAC].managed, records[IPAD].managed, records[UNASSIGNED].managed) == (
        True,
        False,
        False,
    )
    assert [g.name for g in records[APPLE_TV].groups] == [f"abm-server:{OURS}"]
    cursors = [dict(r.query).get("cursor") for r in fake.board.logged("/v1/orgDevices")]
    assert cursors == [None, "2", "4"]
    assert not fake.board.logged(f"/v1/orgDevices/{MAC}")


# -- the design: ABM alone behind its own AUTHORIZING webhook ------------------------------------


async def test_ownership_webhook_next_to_the_mdm_webhook(
    aiohttp_client: Any, abm_url: str, key_file: Path, tmp_path: Path
) -> None:
    """step-ca asks both webhooks: the MDM one for posture, the ABM one for ownership.

    A device the MDM knows but the organisation does not own (or that is assigned to another
    MDM) passes the first and is denied by the second, so no certificate is issued.
    """
    inventory = tmp_path / "mdm.csv"
    inventory.write_text(
        f"serial,managed\n{MAC},true\n{IPAD},true\nC02NOTOURS01,true\n",
        encoding="utf-8",
    )
    mapping = config(
        inventory,
        providers={
            "mdm": {"kind": "csv", "path": str(inventory), "reload_interval": 0},
            "abm": abm_table(abm_url, key_file),
        },
        webhooks=[
            webhook_entry(providers=("mdm",)),
            webhook_entry(
                "owned",
                "AUTHORIZING",
                providers=("abm",),
                identifier_kinds=["serial"],
                policy={"managed": True, "owner_type": ["company"]},
            ),
        ],
    )
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()

    async def both(identifier: str) -> tuple[bool, Any]:
        body = enrich(identifier)
        people = await (
            await client.post("/webhooks/people", data=body, headers=signed(body))
        ).json()
        body = authorize(identifier)
        owned = await (
            await client.post(
                "/webhooks/owned", data=body, headers=signed(body, webhook_id=AUTH_ID)
            )
        ).json()
        return people["allow"], owned

    assert await both(MAC) == (True, {"allow": True})
    mdm_ok, owned = await both(IPAD)
    assert (mdm_ok, owned["error"]["code"]) == (True, "device-unmanaged")
    mdm_ok, owned = await both("C02NOTOURS01")
    assert (mdm_ok, owned["error"]["code"]) == (True, "device-not-found")


async def test_group_rule_expresses_owned_and_assigned(
    aiohttp_client: Any, abm_url: str, key_file: Path
) -> None:
    """Without mdm_servers, groups.any_of on abm-server:<name> says "ours, assigned to our MDM"."""
    mapping = config(
        Path("unused.csv"),
        providers={"abm": abm_table(abm_url, key_file, mdm_servers=[])},
        webhooks=[
            webhook_entry(
                "owned",
                "AUTHORIZING",
                providers=("abm",),
                policy={"managed": False, "groups": {"any_of": [f"abm-server:{JAMF_SERVER[0]}"]}},
            )
        ],
    )
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()

    async def gate(identifier: str) -> Any:
        body = authorize(identifier)
        response = await client.post(
            "/webhooks/owned", data=body, headers=signed(body, webhook_id=AUTH_ID)
        )
        return await response.json()

    assert (await gate(IPHONE))["allow"] is True
    assert (await gate(IPAD))["error"]["code"] == "group-required"
    assert (await gate(UNASSIGNED))["error"]["code"] == "group-required"


async def test_example_config_decides_against_the_fake(
    tmp_path: Path, abm_url: str, key_file: Path
) -> None:
    """examples/abm.toml, pointed at the fake: ours allowed; other MDM, released, unknown denied."""
    config_path = localized(
        "abm.toml",
        tmp_path,
        {"http://127.0.0.1:9447": abm_url, '".abm-key.pem"': f'"{key_file}"'},
    )
    ours, elsewhere, released, stranger = await asyncio.gather(
        lookup(config_path, "owned", MAC),
        lookup(config_path, "owned", IPAD),
        lookup(config_path, "owned", RELEASED),
        lookup(config_path, "owned", "C02QUICK0001"),
    )
    assert ours[0] == 0, ours[1]
    assert elsewhere[1]["reply"]["error"]["code"] == "device-unmanaged"
    assert released[1]["reply"]["error"]["code"] == "device-not-found"
    assert stranger[1]["reply"]["error"]["code"] == "device-not-found"
    people = await lookup(config_path, "people", "C02QUICK0001")
    assert people[0] == 0, people[1]


async def test_answer_for_another_serial_fails_closed(
    make_provider: MakeProvider, fake: FakeAbm
) -> None:
    """A device answered under another serial is an error, never an ownership proof."""
    provider = await make_provider()
    fake.devices[MAC] = fake.devices[IPHONE]
    with pytest.raises(ProviderError, match="another device"):
        await provider.lookup(serial(MAC))


async def test_non_apple_identifier_is_not_searched(
    make_provider: MakeProvider, fake: FakeAbm
) -> None:
    """A YubiKey serial never reaches Apple."""
    provider = await make_provider()
    before = len(fake.board.requests)
    assert (
        await provider.lookup(classify("12345678", frozenset({IdentifierKind.YUBIKEY_SERIAL})))
        is None
    )
    assert len(fake.board.requests) == before
