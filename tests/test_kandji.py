"""The Kandji provider against the fake Kandji API (tests/fakes/kandji.py) on 127.0.0.1."""

from __future__ import annotations

import asyncio
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
from providers.identifiers import DeviceIdentifier, IdentifierKind, classify
from providers.kandji import KandjiProvider, KandjiSettings
from tests.fakes.kandji import TOKEN, FakeKandji, create_app
from tests.fakes.provider_hooks import RecordingHook
from tests.provider_webhook import (
    GATE,
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

MAC = "FVHHFKF7Q6L4"
MAC_UDID = "3c976d96-08a0-5014-89e4-66259ab79fe6"
IPAD = "GG7FF8QSQ1GH"
IPAD_UDID = "00008020-0015308C11A1402E"
REMOVED = "F4KJ1REMOVED"
NO_MDM = "C02KJNOMDM01"
REENROLLED = "C02KJREENR01"
DEVICES = "/api/v1/devices"

MakeProvider = Callable[..., Awaitable[KandjiProvider]]


@pytest.fixture
def fake() -> FakeKandji:
    return FakeKandji.from_file()


@pytest.fixture
async def kandji_url(aiohttp_server: Any, fake: FakeKandji) -> str:
    return await served_url(aiohttp_server, create_app(fake))


def kandji_settings(url: str, **overrides: Any) -> KandjiSettings:
    base: dict[str, Any] = {"kind": "kandji", "url": url, "api_token": TOKEN, "backoff": 0.01}
    return KandjiSettings.model_validate({**base, **overrides})


@pytest.fixture
async def make_provider(kandji_url: str) -> AsyncIterator[MakeProvider]:
    """Build (and by default start) a provider against the fake; closed after the test."""
    async with providers_made(
        lambda **overrides: KandjiProvider("kandji", kandji_settings(kandji_url, **overrides))
    ) as make:
        yield make


def searches(fake: FakeKandji) -> list[dict[str, str]]:
    """The query of every device-list request after the start-up probe."""
    return [dict(r.query) for r in fake.requests if r.path == DEVICES][1:]


# --- what a lookup answers ------------------------------------------------------------------------


async def test_managed_mac_maps_every_field(make_provider: MakeProvider) -> None:
    """A Mac found by serial carries its blueprint and tags as groups, user, UDID, supervision."""
    provider = await make_provider()
    record = await provider.lookup(classify(MAC))
    assert record == DeviceRecord(
        provider="kandji",
        record_id="2b7c1e9a-4f0d-4a55-9b1e-6f3c2d8a1e01",
        serial=MAC,
        udid=MAC_UDID,
        name="MBA-ASHARMA",
        model="MacBook Air (M1, 2020)",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        supervised=True,
        last_contact=datetime(2025, 3, 14, 9, 26, 41, 166267, tzinfo=UTC),
        user=UserRecord(
            email="anika.sharma@example.com",
            full_name="Anika Sharma",
            id="5344c996-8823-4b37-8d6e-8515fc7c3a0a",
        ),
        groups=(
            GroupRef(name="MDA Pilot", id="a3b1c2d4-1111-4a2b-8c3d-000000000042"),
            GroupRef(name="engineering"),
            GroupRef(name="mda"),
        ),
    )


async def test_search_asks_by_serial_and_reads_the_details(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """One filtered list request and one details request per lookup, nothing else."""
    provider = await make_provider()
    await provider.lookup(classify(IPAD))
    assert searches(fake) == [{"limit": "300", "offset": "0", "serial_number": IPAD}]
    assert fake.count("/api/v1/devices/4820db3b-dec7-40b2-9c8f-eb771ac1a250/details") == 1


async def test_substring_matches_never_answer_another_device(make_provider: MakeProvider) -> None:
    """Kandji's serial filter matches substrings: FVHHFKF7Q6L4X never answers for FVHHFKF7Q6L4."""
    provider = await make_provider()
    record = await provider.lookup(classify(MAC))
    assert record is not None
    assert record.serial == MAC


async def test_server_ignoring_the_serial_filter_never_yields_another_device(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """When Kandji answers every device, only the exact serial counts, or none."""
    provider = await make_provider()
    fake.ignore_serial_filter = True
    assert (await provider.lookup(classify(IPAD))).serial == IPAD  # type: ignore[union-attr]
    assert await provider.lookup(classify("ZZZZ99999999")) is None


async def test_unknown_device_is_none(make_provider: MakeProvider) -> None:
    """A serial Kandji does not know is an answer (None), not an error."""
    provider = await make_provider()
    assert await provider.lookup(classify("ZZZZ99999999")) is None


async def test_removed_device_is_unmanaged(make_provider: MakeProvider) -> None:
    """A device Kandji marks removed is reported unmanaged even with MDM enabled."""
    provider = await make_provider()
    record = await provider.lookup(classify(REMOVED))
    assert record is not None
    assert (record.managed, record.platform, record.udid) == (
        False,
        "iOS",
        "00008110-000A1C2E3F40801F",
    )


async def test_reenrolled_serial_newest_check_in_wins_with_warning(
    make_provider: MakeProvider,
) -> None:
    """Two records for one serial: the newest check-in wins and the duplicate is logged."""
    provider = await make_provider()
    with capture_logs() as logs:
        record = await provider.lookup(classify(REENROLLED))
    assert record is not None
    assert (record.record_id, record.groups[0].name) == (
        "0f0f0f0f-3333-4444-8555-666666666603",
        "MDA Pilot",
    )
    duplicates = [e for e in logs if e["event"] == "provider.duplicate_records"]
    assert duplicates[0]["chosen"] == "0f0f0f0f-3333-4444-8555-666666666603"


async def test_udid_is_not_in_this_inventory_and_said_once(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """Kandji cannot search by UDID: None without a request, the reason logged only once."""
    provider = await make_provider()
    before = len(fake.requests)
    with capture_logs() as logs:
        assert await provider.lookup(classify(IPAD_UDID)) is None
        assert await provider.lookup(classify("00008103-001B2C3D4E5F6A7B")) is None
    assert len(fake.requests) == before
    hints = [e for e in logs if e["event"] == "provider.udid_not_searchable"]
    assert len(hints) == 1
    assert "serial" in hints[0]["reason"]


async def test_non_apple_identifier_is_not_searched(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """A YubiKey serial is nothing Kandji knows: None without a request."""
    provider = await make_provider()
    before = len(fake.requests)
    yubikey = DeviceIdentifier("12345678", IdentifierKind.YUBIKEY_SERIAL)
    assert await provider.lookup(yubikey) is None
    assert len(fake.requests) == before


async def test_unsafe_identifier_never_reaches_a_query(make_provider: MakeProvider) -> None:
    """A serial with query characters (bypassing classify) fails before any request."""
    provider = await make_provider()
    with pytest.raises(ProviderError, match="unexpected shape"):
        await provider.lookup(DeviceIdentifier("C02&limit=1", IdentifierKind.SERIAL))


async def test_without_details_one_request_and_no_udid(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """`fetch_details = false` makes one request per lookup and leaves UDID and supervision out."""
    provider = await make_provider(fetch_details=False)
    record = await provider.lookup(classify(MAC))
    assert record is not None
    assert (record.udid, record.supervised, record.managed) == (None, None, True)
    assert fake.count("/api/v1/devices/") == 0


async def test_device_gone_before_its_details_is_not_found(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """A device deleted between the search and the details (404) is not in the inventory."""
    provider = await make_provider()
    fake.inject("404", path="/api/v1/devices/4820db3b")
    assert await provider.lookup(classify(IPAD)) is None


async def test_more_matches_than_the_bound_fail_closed(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """A serial matching more than 900 substrings is a broken search, not a partial answer."""
    fake.devices += [
        {"device_id": f"bulk-{n}", "serial_number": f"C02BULKSER{n:04d}"} for n in range(901)
    ]
    provider = await make_provider()
    with pytest.raises(ProviderError, match="more than 900 devices"):
        await provider.lookup(classify("C02BULKSER"))


# --- credentials and permissions ------------------------------------------------------------------


async def test_refused_token_makes_start_fail_without_leaking(kandji_url: str) -> None:
    """A wrong token leaves the provider not ready, reports the refusal, never shows the token."""
    hook = RecordingHook()
    provider = KandjiProvider(
        "kandji", kandji_settings(kandji_url, api_token="wrong-token-value"), hooks=hook
    )
    try:
        with capture_logs() as logs, pytest.raises(ProviderNotReady, match="refused the API token"):
            await provider.start()
    finally:
        await provider.aclose()
    assert provider.ready is False
    assert [(t.outcome, t.detail) for t in hook.tokens] == [
        ("refused", "HTTP 401 on /api/v1/devices")
    ]
    assert "wrong-token-value" not in repr(logs)


async def test_revoked_token_fails_lookups_until_it_works_again(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """A token revoked after start fails lookups and readiness; a restart recovers both."""
    provider = await make_provider()
    fake.tokens.clear()
    with pytest.raises(ProviderError, match="HTTP 401"):
        await provider.lookup(classify(MAC))
    assert provider.ready is False
    fake.tokens.add(TOKEN)
    await provider.start()
    assert provider.ready is True
    assert await provider.lookup(classify(MAC)) is not None


@pytest.mark.parametrize(
    ("denied", "message"),
    [("Device list", "'Device list' permission"), ("Device details", "'Device details'")],
)
async def test_missing_permission_is_named(
    make_provider: MakeProvider, fake: FakeKandji, denied: str, message: str
) -> None:
    """A 403 says which endpoint permission the API token lacks."""
    provider = await make_provider()
    fake.denied.add(denied)
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(classify(MAC))


# --- failures, retries, limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "retry_after"),
    [
        ("429", "0"),
        ("429", None),
        ("502", None),
        ("503", "0"),
        ("504", None),
        ("reset", None),
    ],
    ids=["429-retry-after", "429-bare", "502", "503-retry-after", "504", "connection-reset"],
)
async def test_transient_faults_are_retried(
    make_provider: MakeProvider, fake: FakeKandji, kind: Any, retry_after: str | None
) -> None:
    """Throttling, gateway errors and dropped connections are retried, then the lookup works."""
    provider = await make_provider()
    fake.inject(kind, path=DEVICES, retry_after=retry_after)
    assert await provider.lookup(classify(MAC)) is not None
    assert len(searches(fake)) == 2


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("500", "unexpected HTTP 500"),
        ("404", "unexpected HTTP 404"),
        ("malformed", "malformed JSON"),
        ("html", "malformed JSON"),
    ],
)
async def test_hard_faults_fail_without_retry(
    make_provider: MakeProvider, fake: FakeKandji, kind: Any, message: str
) -> None:
    """A 500, a 404 on the list, cut JSON or an HTML page is a ProviderError at once."""
    provider = await make_provider()
    fake.inject(kind, path=DEVICES)
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(classify(MAC))
    assert len(searches(fake)) == 1


async def test_retries_are_bounded(make_provider: MakeProvider, fake: FakeKandji) -> None:
    """A Kandji that keeps answering 503 gets `retries` extra attempts, then a ProviderError."""
    provider = await make_provider(retries=2)
    fake.inject("503", path=DEVICES, times=None)
    with pytest.raises(ProviderError, match="503"):
        await provider.lookup(classify(MAC))
    assert len(searches(fake)) == 3


async def test_rate_limit_past_the_budget_fails_at_once(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """A Retry-After longer than the remaining budget is not waited for."""
    provider = await make_provider(budget=1.0)
    fake.inject("429", path=DEVICES, retry_after="30")
    with pytest.raises(ProviderError, match="429"):
        await provider.lookup(classify(MAC))
    assert len(searches(fake)) == 1


async def test_slow_kandji_exceeds_the_lookup_budget(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """An answer slower than the whole-lookup budget becomes a ProviderError naming the budget."""
    provider = await make_provider(budget=0.3, read_timeout=5)
    fake.inject("slow", path="/api/v1/devices/", delay=1.0)
    with pytest.raises(ProviderError, match=r"exceeded its 0\.3s budget"):
        await provider.lookup(classify(MAC))


async def test_concurrency_limit_is_never_exceeded(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """However many lookups run at once, Kandji never sees more than max_connections requests."""
    provider = await make_provider(max_connections=2, budget=8)
    fake.inject("slow", path="/api/", times=None, delay=0.05)
    fake.max_in_flight = 0
    serials = [MAC, IPAD, REMOVED, NO_MDM, REENROLLED, "TDGQWKQ5WT"] * 2
    records = await asyncio.gather(*(provider.lookup(classify(s)) for s in serials))
    assert all(r is not None for r in records)
    assert fake.max_in_flight == 2


async def test_hooks_see_routes_without_identifiers(kandji_url: str, fake: FakeKandji) -> None:
    """Hooks given to build_provider see route templates, never a serial or device id."""
    hook = RecordingHook()
    provider = build_provider("kandji", kandji_settings(kandji_url), hooks=hook)
    try:
        await provider.start()
        fake.inject("503", path="/api/v1/devices/", retry_after="0")
        assert await provider.lookup(classify(MAC)) is not None
    finally:
        await provider.aclose()
    assert {(c.method, c.route) for c in hook.calls} == {
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/devices/{id}/details"),
    }
    assert [(r.route, r.rate_limited) for r in hook.retries] == [
        ("/api/v1/devices/{id}/details", True)
    ]


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"api_token": None}, "api_token"),
        ({"url": "https://acme.api.kandji.io/api/v1"}, "scheme and host only"),
        ({"url": "http://acme.api.kandji.io"}, "plain http is allowed only"),
        ({"page_size": 301}, "page_size"),
        ({"api_key": "x"}, "api_key"),
    ],
    ids=["no-token", "path", "plain-http", "page-size", "unknown-key"],
)
def test_invalid_settings_are_rejected(overrides: dict[str, Any], problem: str) -> None:
    """Settings name the key at fault."""
    data = {"kind": "kandji", "url": "https://acme.api.kandji.io", "api_token": "t", **overrides}
    with pytest.raises(ValidationError, match=problem):
        KandjiSettings.model_validate({k: v for k, v in data.items() if v is not None})


def test_token_comes_from_env_and_stays_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """`api_token = { env = ... }` is read from the environment and never shown; EU hosts work."""
    monkeypatch.setenv("KANDJI_TEST_TOKEN", "s3cr3t-kandji")
    settings = KandjiSettings.model_validate(
        {
            "kind": "kandji",
            "url": "https://acme.api.eu.kandji.io/",
            "api_token": {"env": "KANDJI_TEST_TOKEN"},
        }
    )
    assert settings.api_token.get_secret_value() == "s3cr3t-kandji"
    assert "s3cr3t-kandji" not in repr(settings)
    assert settings.url == "https://acme.api.eu.kandji.io"


# --- listing for sync mode ------------------------------------------------------------------------


async def test_listing_pages_through_every_device_with_details(
    make_provider: MakeProvider, fake: FakeKandji
) -> None:
    """`iter_devices` pages with limit/offset and completes each device with its details."""
    provider = await make_provider(page_size=3)
    records = [r async for r in provider.iter_devices()]
    assert len(records) == len(fake.devices)
    assert all(r.udid is not None for r in records)
    offsets = [dict(r.query)["offset"] for r in fake.requests if r.path == DEVICES][1:]
    assert offsets == ["0", "3", "6"]


async def test_list_page_resumes_from_its_cursor(make_provider: MakeProvider) -> None:
    """A page's cursor leads to the next page; the last page has none."""
    provider = await make_provider(page_size=5)
    first = await provider.list_page(None)
    second = await provider.list_page(first.next_cursor)
    assert (len(first.records), first.next_cursor) == (5, "5")
    assert (len(second.records), second.next_cursor) == (3, None)


def test_kandji_lists_for_sync_mode_and_resumes_by_page() -> None:
    """The provider is a DeviceLister and, with list_page, a resumable PagedLister."""
    assert issubclass(KandjiProvider, DeviceLister)
    assert issubclass(KandjiProvider, PagedLister)


async def test_sync_engine_copies_kandji_into_the_store(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """A sync lists Kandji page by page; the stored copy answers by UDID, which live cannot."""
    provider = await make_provider(page_size=3)
    devices, found = await sync_and_find("kandji", provider, tmp_path, IPAD_UDID)
    assert devices == 8
    assert found is not None
    assert found.serial == IPAD


# --- through the whole webhook --------------------------------------------------------------------

PILOT = {"managed": True, "groups": {"any_of": ["MDA Pilot"]}}


@pytest.fixture
def service(aiohttp_client: Any, kandji_url: str) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """Start the real app with the Kandji provider pointed at the fake."""

    async def start(**provider: Any) -> TestClient[Any, Any]:
        kandji = {"kind": "kandji", "url": kandji_url, "api_token": TOKEN, "backoff": 0.01}
        mapping = provider_config("kandji", {**kandji, **provider}, PILOT)
        return await start_service(aiohttp_client, mapping)

    return start


async def test_webhook_allows_managed_pilot_mac_with_kandji_data(service: Any) -> None:
    """A managed Mac in the pilot blueprint is allowed and carries its Kandji groups and UDID."""
    client = await service()
    answer = await call(client, MAC)
    assert answer["allow"] is True
    assert answer["data"]["groups"] == ["engineering", "mda", "MDA Pilot"]
    assert answer["data"]["device"]["udid"] == MAC_UDID
    assert (await call(client, MAC, path=GATE))["allow"] is True


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        (REMOVED, "device-unmanaged"),
        (NO_MDM, "device-unmanaged"),
        (IPAD, "group-required"),
        ("ZZZZ99999999", "device-not-found"),
        (IPAD_UDID, "device-not-found"),
    ],
    ids=["removed", "mdm-off", "out-of-blueprint", "unknown", "udid"],
)
async def test_webhook_denies_with_distinct_codes(service: Any, identifier: str, code: str) -> None:
    """Removed, unmanaged, out-of-group, unknown and UDID-attested devices are denied."""
    await assert_denied(await service(), identifier, code)


async def test_webhook_fails_closed_while_kandji_fails(service: Any, fake: FakeKandji) -> None:
    """Any Kandji failure denies with inventory-unavailable, and recovery allows again."""
    client = await service(retries=1)
    fake.inject("503", path=DEVICES, times=None)
    await assert_fails_closed_until_cleared(client, fake, MAC)


async def test_readyz_fails_with_a_refused_token(aiohttp_client: Any, kandji_url: str) -> None:
    """A refused API token makes /readyz answer 503 and logs no token."""
    kandji = {"kind": "kandji", "url": kandji_url, "api_token": "wrong-token-value"}
    await assert_not_ready_without_secret(
        aiohttp_client, "kandji", kandji, PILOT, kandji["api_token"]
    )


async def test_cli_lookup_with_example_config(tmp_path: Path, kandji_url: str) -> None:
    """`posture-connector lookup --config examples/kandji.toml` decides against the fake Kandji."""
    path = example_config(tmp_path, "kandji", "http://127.0.0.1:9444", kandji_url)
    env = {"KANDJI_API_TOKEN": TOKEN}
    allowed, denied = await cli_allowed_and_denied(path, env, MAC, REMOVED)
    assert allowed["data"]["groups"] == ["engineering", "mda", "MDA Pilot"]
    assert denied["error"]["code"] == "device-unmanaged"
