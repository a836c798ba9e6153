"""The Fleet provider against the fake Fleet server (tests/fakes/fleet.py) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from structlog.testing import capture_logs

from connector.sync import PagedLister
from providers import build_provider
from providers.base import (
    DeviceLister,
    DeviceRecord,
    GroupRef,
    ProviderError,
    ProviderNotReady,
    UserRecord,
)
from providers.fleet import FleetProvider, FleetSettings
from providers.identifiers import DeviceIdentifier, IdentifierKind, classify
from tests.fakes.fleet import TOKEN, FakeFleet, create_app
from tests.fakes.provider_hooks import RecordingHook
from tests.provider_webhook import (
    GATE,
    PEOPLE,
    assert_denied,
    assert_fails_closed_until_cleared,
    assert_not_ready_without_secret,
    call,
    cli_allowed_and_denied,
    example_config,
    provider_config,
    start_service,
    sync_and_find,
)
from tests.vendor_support import providers_made, served_url

MAC = "C02FLT0MAC01"
CRITICAL = "C02FLT0CRIT1"
PENDING = "C02FLT0PEND1"
UNMANAGED = "C02FLT0OFF01"
VICTIM = "C02FLT0VICT1"
IPHONE = "F17FLT0IPH01"
IPHONE_UDID = "00008110-000A1C2E3F40F001"
BY_IDENTIFIER = "/api/v1/fleet/hosts/identifier/"

MakeProvider = Callable[..., Awaitable[FleetProvider]]


@pytest.fixture
def fake() -> FakeFleet:
    return FakeFleet.from_file()


@pytest.fixture
async def fleet_url(aiohttp_server: Any, fake: FakeFleet) -> str:
    return await served_url(aiohttp_server, create_app(fake))


def fleet_settings(url: str, **overrides: Any) -> FleetSettings:
    base: dict[str, Any] = {"kind": "fleet", "url": url, "api_token": TOKEN, "backoff": 0.01}
    return FleetSettings.model_validate({**base, **overrides})


@pytest.fixture
async def make_provider(fleet_url: str) -> AsyncIterator[MakeProvider]:
    """Build (and by default start) a provider against the fake; closed after the test."""
    async with providers_made(
        lambda **overrides: FleetProvider("fleet", fleet_settings(fleet_url, **overrides))
    ) as make:
        yield make


# --- what a lookup answers ------------------------------------------------------------------------


async def test_managed_mac_maps_every_field(make_provider: MakeProvider) -> None:
    """A Mac carries team, labels, IdP groups and its failing policy as groups, and its user."""
    provider = await make_provider()
    record = await provider.lookup(classify(MAC))
    assert record == DeviceRecord(
        provider="fleet",
        record_id="11",
        serial=MAC,
        udid="A1B2C3D4-0000-4000-8000-00000000F001",
        name="Anika's MacBook Pro",
        model="MacBookPro18,3",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        owner_type="company",
        last_contact=datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC),
        user=UserRecord(
            username="anika.sharma@example.com",
            email="anika.sharma@example.com",
            full_name="Anika Sharma",
            department="Platform Engineering",
            id="u-1001",
        ),
        groups=(
            GroupRef(name="Engineering"),
            GroupRef(name="All Hosts", id="6", smart=True),
            GroupRef(name="macOS", id="12", smart=True),
            GroupRef(name="MDA Pilot", id="42", smart=False),
            GroupRef(name="mda-pilot-users", directory=True),
            GroupRef(name="fleet-policy-failing:Screen lock"),
            GroupRef(name="fleet-policies-not-passing"),
        ),
    )


async def test_one_request_by_identifier_without_software(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """A lookup is one GET by identifier that asks Fleet to leave the software list out."""
    provider = await make_provider()
    await provider.lookup(classify(MAC))
    lookups = [r for r in fake.requests if r.path.startswith(BY_IDENTIFIER)]
    assert [(r.path, dict(r.query)) for r in lookups] == [
        (BY_IDENTIFIER + MAC, {"exclude_software": "true"})
    ]


async def test_host_named_after_the_serial_fails_closed(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """Fleet answers a host whose hostname is the serial: never that host, and no guess either."""
    provider = await make_provider()
    with capture_logs() as logs, pytest.raises(ProviderError, match="not the identifier"):
        await provider.lookup(classify(VICTIM))
    warning = next(e for e in logs if e["event"] == "provider.unmatched_records")
    assert warning["record_id"] == "7"


async def test_unknown_device_is_none(make_provider: MakeProvider) -> None:
    """A serial Fleet does not know (404) is an answer (None), not an error."""
    provider = await make_provider()
    assert await provider.lookup(classify("ZZZZ99999999")) is None


async def test_iphone_found_by_udid(make_provider: MakeProvider) -> None:
    """An iPhone attests the UDID Fleet keeps as its UUID; its contact is the MDM refetch."""
    provider = await make_provider()
    record = await provider.lookup(classify(IPHONE_UDID))
    assert record is not None
    assert (record.serial, record.platform, record.os_version, record.last_contact) == (
        IPHONE,
        "iOS",
        "18.3.1",
        datetime(2025, 3, 14, 7, 12, 9, tzinfo=UTC),
    )


async def test_mac_provisioning_udid_is_not_found_and_explained_once(
    make_provider: MakeProvider,
) -> None:
    """A UDID Fleet lacks (a Mac's provisioning UDID) is not found; the reason is logged once."""
    provider = await make_provider()
    with capture_logs() as logs:
        assert await provider.lookup(classify("00008103-001B2C3D4E5F6A7B")) is None
        assert await provider.lookup(classify("00008103-001B2C3D4E5F6A7C")) is None
    hints = [e for e in logs if e["event"] == "provider.provisioning_udid_unsupported"]
    assert len(hints) == 1
    assert "attest the serial number" in hints[0]["reason"]


async def test_non_apple_identifier_is_not_searched(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """A YubiKey serial is nothing Fleet looks up: None without a request."""
    provider = await make_provider()
    before = len(fake.requests)
    yubikey = DeviceIdentifier("12345678", IdentifierKind.YUBIKEY_SERIAL)
    assert await provider.lookup(yubikey) is None
    assert len(fake.requests) == before


async def test_unsafe_identifier_never_reaches_a_path(make_provider: MakeProvider) -> None:
    """An identifier with path characters (bypassing classify) fails before any request."""
    provider = await make_provider()
    with pytest.raises(ProviderError, match="unexpected shape"):
        await provider.lookup(DeviceIdentifier("../../me", IdentifierKind.SERIAL))


# --- credentials and roles ------------------------------------------------------------------------


async def test_refused_token_makes_start_fail_without_leaking(fleet_url: str) -> None:
    """A wrong token leaves the provider not ready, reports the refusal, never shows the token."""
    hook = RecordingHook()
    provider = FleetProvider(
        "fleet", fleet_settings(fleet_url, api_token="wrong-token-value"), hooks=hook
    )
    try:
        with capture_logs() as logs, pytest.raises(ProviderNotReady, match="refused the API token"):
            await provider.start()
    finally:
        await provider.aclose()
    assert provider.ready is False
    assert [(t.outcome, t.detail) for t in hook.tokens] == [
        ("refused", "HTTP 401 on /api/v1/fleet/me")
    ]
    assert "wrong-token-value" not in repr(logs)


async def test_revoked_token_fails_lookups_until_it_works_again(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """A token revoked after start fails lookups and readiness; a restart recovers both."""
    provider = await make_provider()
    fake.tokens.clear()
    with pytest.raises(ProviderError, match="HTTP 401"):
        await provider.lookup(classify(MAC))
    assert provider.ready is False
    fake.tokens.add(TOKEN)
    await provider.start()
    assert await provider.lookup(classify(MAC)) is not None


async def test_team_scoped_token_fails_closed_on_other_teams(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """A host outside the token's teams (403) is an error naming the role, never "not found"."""
    provider = await make_provider()
    fake.teams = {2}
    with pytest.raises(ProviderError, match="global Observer"):
        await provider.lookup(classify(MAC))
    assert await provider.lookup(classify(IPHONE)) is not None


# --- failures, retries, limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "retry_after"),
    [("429", "0"), ("429", None), ("502", None), ("503", "0"), ("504", None), ("reset", None)],
    ids=["429-retry-after", "429-bare", "502", "503-retry-after", "504", "connection-reset"],
)
async def test_transient_faults_are_retried(
    make_provider: MakeProvider, fake: FakeFleet, kind: Any, retry_after: str | None
) -> None:
    """Throttling, gateway errors and dropped connections are retried, then the lookup works."""
    provider = await make_provider()
    fake.inject(kind, path=BY_IDENTIFIER, retry_after=retry_after)
    assert await provider.lookup(classify(MAC)) is not None
    assert fake.count(BY_IDENTIFIER) == 2


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("500", "unexpected HTTP 500: Unknown Error"),
        ("malformed", "malformed JSON"),
        ("html", "malformed JSON"),
    ],
)
async def test_hard_faults_fail_without_retry(
    make_provider: MakeProvider, fake: FakeFleet, kind: Any, message: str
) -> None:
    """A 500, cut JSON or an HTML page is a ProviderError at once."""
    provider = await make_provider()
    fake.inject(kind, path=BY_IDENTIFIER)
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(classify(MAC))
    assert fake.count(BY_IDENTIFIER) == 1


async def test_retries_are_bounded(make_provider: MakeProvider, fake: FakeFleet) -> None:
    """A Fleet that keeps answering 503 gets `retries` extra attempts, then a ProviderError."""
    provider = await make_provider(retries=2)
    fake.inject("503", path=BY_IDENTIFIER, times=None)
    with pytest.raises(ProviderError, match="503"):
        await provider.lookup(classify(MAC))
    assert fake.count(BY_IDENTIFIER) == 3


async def test_rate_limit_past_the_budget_fails_at_once(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """A retry-after longer than the remaining budget is not waited for."""
    provider = await make_provider(budget=1.0)
    fake.inject("429", path=BY_IDENTIFIER, retry_after="30")
    with pytest.raises(ProviderError, match="429"):
        await provider.lookup(classify(MAC))
    assert fake.count(BY_IDENTIFIER) == 1


async def test_slow_fleet_exceeds_the_lookup_budget(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """An answer slower than the whole-lookup budget becomes a ProviderError naming the budget."""
    provider = await make_provider(budget=0.3, read_timeout=5)
    fake.inject("slow", path=BY_IDENTIFIER, delay=1.0)
    with pytest.raises(ProviderError, match=r"exceeded its 0\.3s budget"):
        await provider.lookup(classify(MAC))


async def test_concurrency_limit_is_never_exceeded(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """However many lookups run at once, Fleet never sees more than max_connections requests."""
    provider = await make_provider(max_connections=2, budget=8)
    fake.inject("slow", path="/api/", times=None, delay=0.05)
    fake.max_in_flight = 0
    serials = [MAC, CRITICAL, PENDING, UNMANAGED, IPHONE, IPHONE_UDID] * 2
    records = await asyncio.gather(*(provider.lookup(classify(s)) for s in serials))
    assert all(r is not None for r in records)
    assert fake.max_in_flight == 2


async def test_hooks_see_routes_without_identifiers(fleet_url: str, fake: FakeFleet) -> None:
    """Hooks given to build_provider see route templates, never a serial."""
    hook = RecordingHook()
    provider = build_provider("fleet", fleet_settings(fleet_url), hooks=hook)
    try:
        await provider.start()
        fake.inject("429", path=BY_IDENTIFIER, retry_after="0")
        assert await provider.lookup(classify(MAC)) is not None
    finally:
        await provider.aclose()
    assert {(c.method, c.route) for c in hook.calls} == {
        ("GET", "/api/v1/fleet/me"),
        ("GET", "/api/v1/fleet/hosts/identifier/{identifier}"),
    }
    assert [(r.route, r.rate_limited) for r in hook.retries] == [
        ("/api/v1/fleet/hosts/identifier/{identifier}", True)
    ]


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"api_token": None}, "api_token"),
        ({"url": "http://fleet.example.com"}, "plain http is allowed only"),
        ({"url": "fleet.example.com"}, "https"),
        ({"page_size": 0}, "page_size"),
    ],
    ids=["no-token", "plain-http", "no-scheme", "page-size"],
)
def test_invalid_settings_are_rejected(overrides: dict[str, Any], problem: str) -> None:
    """Settings name the key at fault."""
    data = {"kind": "fleet", "url": "https://fleet.example.com", "api_token": "t", **overrides}
    with pytest.raises(ValidationError, match=problem):
        FleetSettings.model_validate({k: v for k, v in data.items() if v is not None})


def test_a_path_prefix_is_kept_and_the_token_stays_out_of_repr() -> None:
    """A Fleet served under a path prefix keeps it; the token never shows in a repr."""
    settings = FleetSettings.model_validate(
        {"kind": "fleet", "url": "https://example.com/fleet/", "api_token": "s3cr3t-fleet"}
    )
    assert settings.url == "https://example.com/fleet"
    assert "s3cr3t-fleet" not in repr(settings)


# --- listing for sync mode ------------------------------------------------------------------------


async def test_listing_reads_every_host_in_full(
    make_provider: MakeProvider, fake: FakeFleet
) -> None:
    """`iter_devices` pages host ids and reads each host, labels and policies included."""
    provider = await make_provider(page_size=3)
    records = {r.serial: r for r in [r async for r in provider.iter_devices()]}
    assert len(records) == len(fake.hosts)
    assert "fleet-critical-policies-not-passing" in {g.name for g in records[CRITICAL].groups}
    pages = [dict(r.query)["page"] for r in fake.requests if r.path == "/api/v1/fleet/hosts"]
    assert pages == ["0", "1", "2"]


async def test_list_page_resumes_from_its_cursor(make_provider: MakeProvider) -> None:
    """A page's cursor (the next page number) leads on; the last page has none."""
    provider = await make_provider(page_size=5)
    first = await provider.list_page(None)
    second = await provider.list_page(first.next_cursor)
    assert (len(first.records), first.next_cursor) == (5, "1")
    assert (len(second.records), second.next_cursor) == (3, None)


def test_fleet_lists_for_sync_mode_and_resumes_by_page() -> None:
    """The provider is a DeviceLister and, with list_page, a resumable PagedLister."""
    assert issubclass(FleetProvider, DeviceLister)
    assert issubclass(FleetProvider, PagedLister)


async def test_sync_engine_copies_fleet_into_the_store(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """A sync lists Fleet page by page; the stored copy answers by serial and UUID."""
    provider = await make_provider(page_size=3)
    devices, found = await sync_and_find("fleet", provider, tmp_path, IPHONE_UDID)
    assert devices == 8
    assert found is not None
    assert found.serial == IPHONE


# --- through the whole webhook --------------------------------------------------------------------

POLICY = {
    "managed": True,
    "groups": {
        "any_of": ["MDA Pilot"],
        "none_of": ["fleet-critical-policies-not-passing"],
    },
}


@pytest.fixture
def service(aiohttp_client: Any, fleet_url: str) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """Start the real app with the Fleet provider pointed at the fake."""

    async def start(**provider: Any) -> TestClient[Any, Any]:
        fleet = {"kind": "fleet", "url": fleet_url, "api_token": TOKEN, "backoff": 0.01}
        return await start_service(
            aiohttp_client, provider_config("fleet", {**fleet, **provider}, POLICY)
        )

    return start


@pytest.mark.parametrize(
    ("identifier", "path"),
    [(MAC, PEOPLE), (MAC, GATE), (IPHONE_UDID, PEOPLE)],
    ids=["mac-enriching", "mac-authorizing", "iphone-udid"],
)
async def test_webhook_allows_managed_pilot_devices_whose_critical_policies_pass(
    service: Any, identifier: str, path: str
) -> None:
    """A non-critical failing policy does not block; managed pilot devices are allowed."""
    client = await service()
    answer = await call(client, identifier, path=path)
    assert answer["allow"] is True


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        (CRITICAL, "group-forbidden"),
        (PENDING, "group-forbidden"),
        (UNMANAGED, "device-unmanaged"),
        ("ZZZZ99999999", "device-not-found"),
        (VICTIM, "inventory-unavailable"),
    ],
    ids=["critical-failing", "critical-pending", "mdm-off", "unknown", "hostname-collision"],
)
async def test_webhook_denies_with_distinct_codes(service: Any, identifier: str, code: str) -> None:
    """Critical policies failing or pending, MDM off, unknown and ambiguous hosts are denied."""
    await assert_denied(await service(), identifier, code)


async def test_webhook_fails_closed_while_fleet_fails(service: Any, fake: FakeFleet) -> None:
    """Any Fleet failure denies with inventory-unavailable, and recovery allows again."""
    client = await service(retries=1)
    fake.inject("502", path=BY_IDENTIFIER, times=None)
    await assert_fails_closed_until_cleared(client, fake, MAC)


async def test_readyz_fails_with_a_refused_token(aiohttp_client: Any, fleet_url: str) -> None:
    """A refused API token makes /readyz answer 503 and logs no token."""
    fleet = {"kind": "fleet", "url": fleet_url, "api_token": "wrong-token-value"}
    await assert_not_ready_without_secret(
        aiohttp_client, "fleet", fleet, POLICY, fleet["api_token"]
    )


async def test_cli_lookup_with_example_config(tmp_path: Path, fleet_url: str) -> None:
    """`posture-connector lookup --config examples/fleet.toml` decides against the fake Fleet."""
    path = example_config(tmp_path, "fleet", "http://127.0.0.1:9445", fleet_url)
    env = {"FLEET_API_TOKEN": TOKEN}
    allowed, denied = await cli_allowed_and_denied(path, env, MAC, CRITICAL)
    assert "MDA Pilot" in allowed["data"]["groups"]
    assert denied["error"]["code"] == "group-forbidden"


# --- an Apple identifier on a host that is not an Apple device ----------------------------------

PERSONAL_MAC = "C02PERSONAL1"
PERSONAL_IPHONE = "00008110-000A1C2E3F40F999"


def vm_claiming(host_id: int, serial: str, platform: str) -> dict[str, Any]:
    """A virtual machine enrolled in Fleet whose firmware reports `serial` (a VM's serial is
    whatever its settings say), under Fleet's MDM and in the pilot label: the managed Mac's
    host with another platform."""
    host = copy.deepcopy(next(h for h in FakeFleet.from_file().hosts if h["id"] == 11))
    name = f"vm-{host_id}"
    host.update(
        id=host_id,
        uuid=f"5A5A5A5A-0000-4000-8000-0000000000{host_id:02d}",
        osquery_host_id=name,
        node_key=name,
        hostname=name,
        display_name=name,
        computer_name=name,
        hardware_serial=serial,
        hardware_model="VMware Virtual Platform",
        platform=platform,
        os_version="Windows 11 Enterprise 23H2 10.0.22631.3447",
        policies=[],
    )
    return host


@pytest.mark.parametrize("platform", ["windows", "ubuntu", "rocky"])
async def test_an_apple_serial_on_another_platforms_host_is_denied(
    service: Any, fake: FakeFleet, platform: str
) -> None:
    """A personal Mac's serial set on a VM enrolled in Fleet (managed, in the pilot label) was
    allowed: the Mac got a certificate on the VM's standing. An Apple-attested identifier
    matches an Apple device only, also on a platform the vocabulary lacks ("rocky")."""
    fake.hosts.append(vm_claiming(90, PERSONAL_MAC, platform))
    client = await service()
    answer = await call(client, PERSONAL_MAC, path=GATE)
    assert answer["allow"] is False
    assert answer["error"]["code"] == "platform-mismatch"
    assert "Apple identifier" in answer["error"]["message"]


async def test_a_synced_udid_never_finds_a_host_by_its_serial(
    make_provider: MakeProvider, fake: FakeFleet, tmp_path: Path
) -> None:
    """The live lookup compares a UDID with the UUID only; the synced copy answered a UDID with
    the host whose serial had its characters (a Windows VM set to an iPhone's UDID)."""
    fake.hosts.append(vm_claiming(91, PERSONAL_IPHONE, "windows"))
    provider = await make_provider()
    with pytest.raises(ProviderError):
        await provider.lookup(classify(PERSONAL_IPHONE))
    devices, found = await sync_and_find("fleet", provider, tmp_path, PERSONAL_IPHONE)
    assert devices == 9
    assert found is None
