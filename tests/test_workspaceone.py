"""The Workspace ONE provider against the fake UEM API: auth, lookups, faults, listing, webhook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from providers.base import DeviceLister, ProviderError, ProviderNotReady
from providers.identifiers import IdentifierKind, classify
from providers.workspaceone import WorkspaceOneProvider, WorkspaceOneSettings
from tests.example_configs import localized, lookup
from tests.fakes.provider_hooks import RecordingHook
from tests.fakes.workspaceone import (
    ADMIN,
    ADMIN_PASSWORD,
    CLIENT_ID,
    CLIENT_SECRET,
    IPAD,
    IPHONE,
    IPHONE_UDID,
    MAC,
    ODD_COMPLIANCE,
    PENDING,
    TENANT_CODE,
    UNENROLLED,
    FakeWorkspaceOne,
)
from tests.fakes.workspaceone import create_app as fake_app
from tests.helpers import AUTH_ID, FIXED_NOW, authorize, config, enrich, make_settings, signed
from tests.helpers import webhook as webhook_entry
from tests.provider_webhook import sync_and_find
from tests.vendor_support import providers_made, serial, served_url

MAC_UDID_DASHED = "4A0C2B7E-9A41-4D8C-B3E2-71A9C0D4E812"
MakeProvider = Callable[..., Awaitable[WorkspaceOneProvider]]


@pytest.fixture
def fake() -> FakeWorkspaceOne:
    """A fresh fake tenant."""
    return FakeWorkspaceOne()


@pytest.fixture
async def ws1_url(aiohttp_server: Any, fake: FakeWorkspaceOne) -> str:
    """The fake on 127.0.0.1, port 0."""
    return await served_url(aiohttp_server, fake_app(fake))


def ws1_table(url: str, *, basic: bool = False, **overrides: Any) -> dict[str, Any]:
    """A ``[providers.ws1]`` table pointing at the fake (OAuth unless `basic`)."""
    table: dict[str, Any] = {"kind": "workspaceone", "url": url, "budget": 3.0, "backoff": 0.01}
    if basic:
        table |= {"username": ADMIN, "password": ADMIN_PASSWORD, "tenant_code": TENANT_CODE}
    else:
        table |= {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "token_url": f"{url}/connect/token",
        }
    return table | overrides


@pytest.fixture
async def make_provider(ws1_url: str) -> AsyncIterator[MakeProvider]:
    """Build providers against the fake; closed after the test."""

    def build(*, hooks: RecordingHook | None = None, **overrides: Any) -> WorkspaceOneProvider:
        settings = WorkspaceOneSettings.model_validate(ws1_table(ws1_url, **overrides))
        return WorkspaceOneProvider("ws1", settings, hooks=hooks or RecordingHook())

    async with providers_made(build) as make:
        yield make


def udid(value: str) -> Any:
    """A UDID identifier as the webhook passes it."""
    return classify(value, frozenset({IdentifierKind.UDID}))


# -- settings ------------------------------------------------------------------------------------


def test_region_name_expands_to_omnissas_token_url() -> None:
    """``token_url = "emea"`` is the EMEA token service; the API url keeps only its origin."""
    settings = WorkspaceOneSettings.model_validate(
        ws1_table("https://as1506.awmdm.com/", token_url="emea")
    )
    assert settings.token_url == "https://emea.uemauth.workspaceone.com/connect/token"
    assert settings.url == "https://as1506.awmdm.com"


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"token_url": "http://na.uemauth.workspaceone.com/connect/token"}, "plain http"),
        ({"token_url": None}, "needs token_url"),
        ({"client_secret": None}, "go together"),
        ({"username": ADMIN, "password": ADMIN_PASSWORD}, "either"),
        ({"client_id": None, "client_secret": None, "username": ADMIN}, "go together"),
        (
            {"client_id": None, "client_secret": None, "username": ADMIN, "password": "x"},
            "tenant_code",
        ),
    ],
    ids=["http-token-url", "no-token-url", "half-oauth", "two-credentials", "half-basic", "no-key"],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any], problem: str) -> None:
    """Settings that would send credentials in clear or cannot authenticate do not load."""
    with pytest.raises(ValidationError, match=problem):
        WorkspaceOneSettings.model_validate(ws1_table("https://as1506.awmdm.com", **overrides))


def test_secrets_stay_out_of_repr() -> None:
    """The client secret, password and tenant code never show in a repr."""
    oauth = WorkspaceOneSettings.model_validate(ws1_table("https://as1.awmdm.com"))
    basic = WorkspaceOneSettings.model_validate(ws1_table("https://as1.awmdm.com", basic=True))
    for secret in (CLIENT_SECRET, ADMIN_PASSWORD, TENANT_CODE):
        assert secret not in repr(oauth) + repr(basic)


# -- lookups -------------------------------------------------------------------------------------


async def test_managed_mac_is_found_by_serial_with_groups(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A Mac is found by serial; its smart groups and organisation group come along."""
    provider = await make_provider()
    record = await provider.lookup(serial(MAC))
    assert record is not None
    assert (record.managed, record.compliance, record.platform) == (True, "compliant", "macOS")
    assert [g.name for g in record.groups] == ["og:Engineering", "All Corporate Macs", "MDA Pilot"]
    lookups = fake.board.logged("/API/mdm/devices")[-2:]
    assert lookups[0].query == (("searchby", "Serialnumber"), ("id", MAC))
    assert lookups[1].path == "/API/mdm/devices/362501/smartgroups"
    assert lookups[0].headers["accept"] == "application/json;version=1"


async def test_iphone_and_ipad_split_apple_by_model(make_provider: MakeProvider) -> None:
    """Workspace ONE's "Apple" platform becomes iOS or iPadOS; the iPad is personal."""
    provider = await make_provider()
    iphone = await provider.lookup(serial(IPHONE))
    ipad = await provider.lookup(serial(IPAD))
    assert iphone is not None
    assert ipad is not None
    assert (iphone.platform, ipad.platform) == ("iOS", "iPadOS")
    assert (ipad.owner_type, ipad.compliance, ipad.supervised) == (
        "personal",
        "noncompliant",
        False,
    )


async def test_unenrolled_device_is_unmanaged(make_provider: MakeProvider) -> None:
    """A device Workspace ONE lists as Unenrolled is found but not managed."""
    record = await (await make_provider()).lookup(serial(UNENROLLED))
    assert record is not None
    assert record.managed is False


async def test_shared_device_without_user_or_check_in(make_provider: MakeProvider) -> None:
    """A shared device pending compliance has no user, no last contact and compliance unknown."""
    record = await (await make_provider()).lookup(serial(PENDING))
    assert record is not None
    assert (record.user, record.last_contact) == (None, None)
    assert (record.compliance, record.owner_type) == ("unknown", "company")


async def test_unlisted_compliance_state_is_unreported_and_logged(
    make_provider: MakeProvider,
) -> None:
    """A compliance state Workspace ONE does not document is None, with a warning."""
    provider = await make_provider()
    with capture_logs() as logs:
        record = await provider.lookup(serial(ODD_COMPLIANCE))
    assert record is not None
    assert record.compliance is None
    assert [e["value"] for e in logs if e["event"] == "provider.unknown_compliance_state"] == [
        "Quarantined"
    ]


async def test_unknown_serial_is_none(make_provider: MakeProvider) -> None:
    """Workspace ONE's JSON 404 means "not in this inventory"."""
    assert await (await make_provider()).lookup(serial("ZZZZ00000000")) is None


async def test_dashed_udid_is_retried_without_dashes(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A UUID-form UDID stored without dashes is found on the second, dash-free search."""
    record = await (await make_provider()).lookup(udid(MAC_UDID_DASHED))
    assert record is not None
    assert record.serial == MAC
    searches = [
        r.query
        for r in fake.board.logged("/API/mdm/devices")
        if r.query[:1] == (("searchby", "Udid"),)
    ]
    assert [dict(q)["id"] for q in searches] == [MAC_UDID_DASHED, MAC_UDID_DASHED.replace("-", "")]


async def test_udid_stored_with_dashes_is_found_at_once(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """An iPhone UDID that Workspace ONE keeps as attested needs one search."""
    record = await (await make_provider()).lookup(udid(IPHONE_UDID))
    assert record is not None
    assert record.serial == IPHONE
    assert len([r for r in fake.board.logged("/API/mdm/devices") if "Udid" in str(r.query)]) == 1


async def test_answer_for_another_device_fails_closed(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A search that answers a different device than asked is an error, never a match."""
    provider = await make_provider()
    fake.other_device = True
    with capture_logs() as logs, pytest.raises(ProviderError, match="another device"):
        await provider.lookup(serial(MAC))
    assert any(e["event"] == "provider.unmatched_records" for e in logs)


async def test_smart_groups_off_asks_nothing_more(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """With smart_groups off, one request per lookup and only the organisation group."""
    provider = await make_provider(smart_groups=False)
    record = await provider.lookup(serial(MAC))
    assert record is not None
    assert [g.name for g in record.groups] == ["og:Engineering"]
    assert not fake.board.logged("/API/mdm/devices/362501")


async def test_yubikey_serial_is_not_searched(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """Only Apple serials and UDIDs reach Workspace ONE."""
    provider = await make_provider()
    before = len(fake.board.requests)
    identifier = classify("12345678", frozenset({IdentifierKind.YUBIKEY_SERIAL}))
    assert await provider.lookup(identifier) is None
    assert len(fake.board.requests) == before


# -- credentials ---------------------------------------------------------------------------------


async def test_basic_credentials_send_the_tenant_code(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """Basic authentication works with the aw-tenant-code header and fetches no token."""
    provider = await make_provider(basic=True)
    assert provider.ready
    assert await provider.lookup(serial(MAC)) is not None
    assert fake.token_requests == 0
    last = fake.board.requests[-1]
    assert (last.authorization, last.headers["aw-tenant-code"]) == ("basic", TENANT_CODE)


async def test_wrong_basic_password_makes_start_fail_without_leaking(
    make_provider: MakeProvider,
) -> None:
    """A refused password leaves the provider not ready; the message names no secret."""
    with pytest.raises(ProviderNotReady) as info:
        await make_provider(basic=True, password="wrong-password-value")
    assert "wrong-password-value" not in str(info.value)
    assert "user name, password or tenant_code" in str(info.value)


async def test_wrong_client_secret_makes_start_fail_without_leaking(
    make_provider: MakeProvider,
) -> None:
    """A refused OAuth client is not ready, with the OAuth error code and without the secret."""
    hooks = RecordingHook()
    with pytest.raises(ProviderNotReady) as info:
        await make_provider(client_secret="wrong-secret-value", hooks=hooks)
    assert "invalid_client" in str(info.value)
    assert "wrong-secret-value" not in str(info.value) + repr(hooks.tokens)
    assert [t.outcome for t in hooks.tokens] == ["refused"]


@pytest.mark.parametrize(
    ("secret", "at"),
    [("wrong-secret-value-0123456789abcdef", 175), ("wrong+secret/value=0123456789ab", 20)],
)
async def test_a_refusal_that_echoes_the_secret_never_shows_it(
    make_provider: MakeProvider, fake: FakeWorkspaceOne, secret: str, at: int
) -> None:
    """A token service that quotes the refused form (here URL-encoded, near where the message
    is cut to 200 characters) shows the refusal, never any part of the secret."""
    fake.refusal_description = "x" * at + " client_secret={secret} is not valid"
    hooks = RecordingHook()
    with pytest.raises(ProviderNotReady) as info:
        await make_provider(client_secret=secret, hooks=hooks)
    shown = str(info.value) + repr(hooks.tokens)
    assert "invalid_client" in shown
    assert "[redacted]" in str(info.value)
    assert secret[:12] not in shown
    assert quote_plus(secret)[:12] not in shown


async def test_token_is_reused_and_renewed_once_after_expiry(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """One token serves many lookups; a token the server dropped is renewed once."""
    provider = await make_provider()
    for _ in range(3):
        await provider.lookup(serial(MAC))
    assert fake.token_requests == 1
    fake.expire_tokens()
    assert await provider.lookup(serial(MAC)) is not None
    assert fake.token_requests == 2


async def test_persistent_401_fails_after_one_renewal(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A 401 even for a fresh token is an error, not a loop."""
    provider = await make_provider()
    fake.board.inject("401", "/API/mdm/devices", times=None)
    with pytest.raises(ProviderError, match="refused a fresh token"):
        await provider.lookup(serial(MAC))
    assert fake.token_requests == 2


# -- faults --------------------------------------------------------------------------------------


async def test_rate_limit_waits_retry_after_then_succeeds(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A 429 with Retry-After is retried after exactly that wait, reported as rate limited."""
    hooks = RecordingHook()
    provider = await make_provider(hooks=hooks)
    fake.board.inject("429", "/API/mdm/devices", retry_after="0")
    assert await provider.lookup(serial(MAC)) is not None
    assert [(r.reason, r.rate_limited, r.wait) for r in hooks.retries] == [
        ("status 429", True, 0.0)
    ]


async def test_retry_after_beyond_the_budget_fails_at_once(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A Retry-After longer than the budget fails now instead of sleeping past it."""
    provider = await make_provider()
    fake.board.inject("429", "/API/mdm/devices", retry_after="30")
    with pytest.raises(ProviderError, match="429"):
        await provider.lookup(serial(MAC))


async def test_server_errors_are_retried_within_the_budget(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A 503 is retried; a 500 is not (it is no transient overload)."""
    provider = await make_provider(retries=2)
    fake.board.inject("503", "/API/mdm/devices", times=2)
    assert await provider.lookup(serial(MAC)) is not None
    fake.board.inject("500", "/API/mdm/devices")
    with pytest.raises(ProviderError, match="unexpected HTTP 500"):
        await provider.lookup(serial(MAC))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("403", "needs read access to devices"),
        ("404", "unexpected HTTP 404"),
        ("malformed", "malformed JSON"),
    ],
    ids=["forbidden", "plain-404", "malformed"],
)
async def test_hard_faults_fail_closed(
    make_provider: MakeProvider, fake: FakeWorkspaceOne, kind: Any, message: str
) -> None:
    """A refusal, a smart-group 404 for a found device or a cut body is a ProviderError."""
    provider = await make_provider()
    path = "/API/mdm/devices/362501" if kind == "404" else "/API/mdm/devices"
    fake.board.inject(kind, path)
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(serial(MAC))


async def test_html_404_from_a_wrong_host_is_not_a_missing_device(
    aiohttp_server: Any, make_provider: MakeProvider
) -> None:
    """A 404 that is not Workspace ONE's JSON (a web server at the wrong url) is an error."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<h1>Not Found</h1>", content_type="text/html")

    other = web.Application()
    other.router.add_get("/{tail:.*}", page)
    server = await aiohttp_server(other)
    settings = WorkspaceOneSettings.model_validate(
        ws1_table(str(server.make_url("")).rstrip("/"), basic=True)
    )
    provider = WorkspaceOneProvider("ws1", settings)
    try:
        with pytest.raises(ProviderError, match="not Workspace ONE's"):
            await provider.lookup(serial(MAC))
    finally:
        await provider.aclose()


async def test_slow_server_exceeds_the_budget(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A server slower than the budget fails the lookup at the budget."""
    provider = await make_provider(budget=0.3)
    fake.board.inject("slow", "/API/mdm/devices", delay=1.0)
    with pytest.raises(ProviderError, match="budget"):
        await provider.lookup(serial(MAC))


# -- listing -------------------------------------------------------------------------------------


async def test_listing_pages_through_every_device(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """iter_devices reads every search page and each device's smart groups."""
    provider = await make_provider(page_size=4)
    assert isinstance(provider, DeviceLister)
    records = [r async for r in provider.iter_devices()]
    assert len(records) == len(fake.devices)
    assert {r.serial for r in records} == {d["SerialNumber"] for d in fake.devices}
    pages = [dict(r.query)["page"] for r in fake.board.logged("/API/mdm/devices/search")]
    assert pages[-2:] == ["0", "1"]
    assert any("MDA Pilot" in (g.name for g in r.groups) for r in records)


async def test_listing_pages_without_a_total_reads_every_page(
    make_provider: MakeProvider, fake: FakeWorkspaceOne
) -> None:
    """A search page without ``Total`` ended the listing after the first page, and a sync
    committed that page as the whole inventory (every later device "not found")."""
    fake.omit_total = True
    provider = await make_provider(page_size=4)
    records = [r async for r in provider.iter_devices()]
    assert len(fake.devices) > 4
    assert {r.serial for r in records} == {d["SerialNumber"] for d in fake.devices}


async def test_a_synced_udid_is_found_with_or_without_dashes(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """Workspace ONE keeps the Mac's UUID-form UDID without dashes; the live lookup finds it
    by the attested (dashed) form, and so does the synced copy."""
    provider = await make_provider(page_size=4)
    devices, found = await sync_and_find("ws1", provider, tmp_path, MAC_UDID_DASHED)
    assert devices == len(FakeWorkspaceOne().devices)
    assert found is not None
    assert found.serial == MAC


async def test_listing_failure_raises(make_provider: MakeProvider, fake: FakeWorkspaceOne) -> None:
    """A page that fails ends the listing with ProviderError (a sync keeps its last copy)."""
    provider = await make_provider(page_size=2)
    fake.board.inject("500", "/API/mdm/devices/search")
    with pytest.raises(ProviderError):
        _ = [r async for r in provider.iter_devices()]


# -- the whole webhook ---------------------------------------------------------------------------


@pytest.fixture
async def service(aiohttp_client: Any, ws1_url: str) -> TestClient[Any, Any]:
    """The real app with a Workspace ONE provider behind both webhooks."""
    policy = {"managed": True, "compliance": ["compliant"], "groups": {"any_of": ["MDA Pilot"]}}
    mapping = config(
        Path("unused.csv"),
        providers={"ws1": ws1_table(ws1_url)},
        webhooks=[
            webhook_entry(providers=("ws1",), policy=policy),
            webhook_entry("gate", "AUTHORIZING", providers=("ws1",), policy=policy),
        ],
    )
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    return client


async def post(client: TestClient[Any, Any], identifier: str, *, gate: bool = False) -> Any:
    """One signed step-ca call; the JSON answer."""
    body = authorize(identifier) if gate else enrich(identifier)
    headers = signed(body, webhook_id=AUTH_ID) if gate else signed(body)
    path = "/webhooks/gate" if gate else "/webhooks/people"
    response = await client.post(path, data=body, headers=headers)
    assert response.status == 200
    return await response.json()


async def test_webhook_allows_the_managed_pilot_mac(service: TestClient[Any, Any]) -> None:
    """A compliant, enrolled Mac in the pilot smart group is allowed, with its user."""
    answer = await post(service, MAC)
    assert answer["allow"] is True
    assert answer["data"]["groups"] == ["All Corporate Macs", "MDA Pilot", "og:Engineering"]
    assert answer["data"]["user"]["username"] == "asharma"


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        (UNENROLLED, "device-unmanaged"),
        (IPAD, "compliance-not-allowed"),
        ("ZZZZ00000000", "device-not-found"),
    ],
)
async def test_webhook_denies_with_distinct_codes(
    service: TestClient[Any, Any], identifier: str, code: str
) -> None:
    """Unenrolled, noncompliant and unknown devices are denied, each with its code."""
    answer = await post(service, identifier, gate=True)
    assert (answer["allow"], answer["error"]["code"]) == (False, code)


async def test_webhook_fails_closed_while_workspace_one_fails(
    service: TestClient[Any, Any], fake: FakeWorkspaceOne
) -> None:
    """While Workspace ONE answers 500 the device is denied as inventory-unavailable."""
    fake.board.inject("500", "/API/mdm/devices", times=None)
    answer = await post(service, MAC)
    assert (answer["allow"], answer["error"]["code"]) == (False, "inventory-unavailable")
    fake.board.clear_faults()
    assert (await post(service, MAC))["allow"] is True


async def test_example_config_decides_against_the_fake(tmp_path: Path, ws1_url: str) -> None:
    """examples/workspaceone.toml, pointed at the fake, allows the pilot Mac and denies others."""
    config_path = localized("workspaceone.toml", tmp_path, {"http://127.0.0.1:9445": ws1_url})
    env = {"WS1_CLIENT_SECRET": CLIENT_SECRET}
    allowed, unenrolled, noncompliant = await asyncio.gather(
        lookup(config_path, "people", MAC, env),
        lookup(config_path, "people", UNENROLLED, env),
        lookup(config_path, "people", IPAD, env),
    )
    assert allowed[0] == 0, allowed[1]
    assert allowed[1]["reply"]["data"]["user"]["username"] == "asharma"
    assert unenrolled[1]["reply"]["error"]["code"] == "device-unmanaged"
    assert noncompliant[1]["reply"]["error"]["code"] == "compliance-not-allowed"
