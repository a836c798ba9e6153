"""The Jamf Pro provider against the fake Jamf (tests/fakes/jamf.py) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler
from pydantic import ValidationError
from structlog.testing import capture_logs

from connector import create_app as connector_app
from connector.app import PROVIDERS_STARTED
from providers import FileProvider, build_provider
from providers.base import (
    DeviceLister,
    DeviceRecord,
    GroupRef,
    Provider,
    ProviderError,
    ProviderNotReady,
    UserRecord,
)
from providers.identifiers import DeviceIdentifier, IdentifierKind, classify
from providers.jamf import JamfProvider, JamfSettings
from providers.jamf._api import MAX_PAGES
from providers.jamf._models import parse_jamf_time
from tests.fakes.jamf import FakeJamf, create_app, jamf_computer
from tests.fakes.provider_hooks import RecordingHook
from tests.helpers import (
    AUTH_ID,
    FIXED_NOW,
    authorize,
    config,
    enrich,
    make_settings,
    signed,
    webhook,
)
from tests.pki import TestCA
from tests.vendor_support import served_url

DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"
MAC = "C02FK3Q7MD6T"
MAC_UDID = "5F0C2B7E-9A41-4D8C-B3E2-71A9C0D4E812"
IPHONE = "F17ZK8XJN72Q"
IPHONE_UDID = "00008110-000A1C2E3F40801E"
IPAD_UDID = "00008103-001B2C3D4E5F6A7B"
REENROLLED = "C02DUP0REEN1"
BARE_MAC = "C02NULLSECT1"
SECRET = "fake-secret"

MakeProvider = Callable[..., Awaitable[JamfProvider]]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeJamf:
    return FakeJamf.from_file(DEVICES)


@pytest.fixture
async def jamf_url(aiohttp_server: Any, fake: FakeJamf) -> str:
    server = await aiohttp_server(create_app(fake))
    return str(server.make_url("")).rstrip("/")


def jamf_settings(url: str, **overrides: Any) -> JamfSettings:
    base: dict[str, Any] = {
        "kind": "jamf",
        "url": url,
        "client_id": "posture-connector",
        "client_secret": SECRET,
        "backoff": 0.01,
    }
    if "username" in overrides:
        del base["client_id"], base["client_secret"]
    return JamfSettings.model_validate({**base, **overrides})


@pytest.fixture
async def make_provider(jamf_url: str) -> AsyncIterator[MakeProvider]:
    """Build (and by default start) a provider against the fake; closed after the test."""
    made: list[JamfProvider] = []

    async def make(
        *, start: bool = True, clock: Callable[[], float] | None = None, **overrides: Any
    ) -> JamfProvider:
        provider = JamfProvider(
            "jamf", jamf_settings(jamf_url, **overrides), clock=clock or time.monotonic
        )
        made.append(provider)
        if start:
            await provider.start()
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def inventory_requests(fake: FakeJamf) -> list[Any]:
    return [
        r for r in fake.requests if "computers-inventory" in r.path or "mobile-devices" in r.path
    ]


def searches(fake: FakeJamf) -> list[Any]:
    """Inventory requests that carried a filter (so not the start-up version probe)."""
    return [r for r in inventory_requests(fake) if "filter" in dict(r.query)]


# --- mapping -------------------------------------------------------------------------------------


async def test_managed_mac_maps_every_field(make_provider: MakeProvider) -> None:
    """A Mac found by serial carries Jamf's user, resolved department, groups and record id."""
    provider = await make_provider()
    record = await provider.lookup(classify(MAC))
    assert record == DeviceRecord(
        provider="jamf",
        record_id="417",
        serial=MAC,
        udid=MAC_UDID,
        name="MBP-ASHARMA",
        model="MacBook Pro (14-inch, 2023)",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        supervised=True,
        last_contact=datetime(2025, 3, 14, 9, 26, 41, 207000, tzinfo=UTC),
        user=UserRecord(
            username="asharma",
            email="anika.sharma@example.com",
            full_name="Anika Sharma",
            department="Platform Engineering",
            title="Site Reliability Engineer",
        ),
        groups=(
            GroupRef(name="All Managed Clients", id="1", smart=True),
            GroupRef(name="MDA Pilot", id="42", smart=False),
        ),
    )


async def test_iphone_maps_mobile_field_names(make_provider: MakeProvider) -> None:
    """Mobile records use realName/emailAddress, a department name, `smart` and general.udid."""
    provider = await make_provider()
    record = await provider.lookup(classify(IPHONE))
    assert record is not None
    assert (record.record_id, record.platform, record.udid, record.os_version) == (
        "88",
        "iOS",
        IPHONE_UDID,
        "18.3.1",
    )
    assert record.user == UserRecord(
        username="asharma",
        email="anika.sharma@example.com",
        full_name="Anika Sharma",
        department="Platform Engineering",
        title="Site Reliability Engineer",
    )
    assert record.groups == (
        GroupRef(name="Corporate iPhones", id="12", smart=True),
        GroupRef(name="MDA Pilot", id="43", smart=False),
    )
    assert record.last_contact == datetime(2025, 3, 14, 7, 12, 9, 441000, tzinfo=UTC)


async def test_ipad_by_udid_is_ipados_and_unmanaged(make_provider: MakeProvider) -> None:
    """An iPad reported as deviceType "ios" maps to iPadOS, with its managed flag false."""
    provider = await make_provider()
    record = await provider.lookup(classify(IPAD_UDID))
    assert record is not None
    assert (record.platform, record.managed, record.user, record.groups) == (
        "iPadOS",
        False,
        None,
        (),
    )


async def test_null_sections_and_bad_dates_are_tolerated(make_provider: MakeProvider) -> None:
    """Null sections and an unreadable timestamp leave fields None instead of failing."""
    provider = await make_provider()
    record = await provider.lookup(classify(BARE_MAC))
    assert record is not None
    assert (record.managed, record.os_version, record.user, record.groups, record.last_contact) == (
        None,
        None,
        None,
        (),
        None,
    )


async def test_unknown_device_is_none(make_provider: MakeProvider) -> None:
    """A serial Jamf does not know is an answer (None), not an error."""
    provider = await make_provider()
    assert await provider.lookup(classify("ZZZZ99999999")) is None


async def test_server_ignoring_the_filter_never_yields_another_device(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Records that do not carry the identifier are dropped; none left fails closed."""
    fake.ignore_filter = True
    provider = await make_provider()
    with capture_logs() as logs, pytest.raises(ProviderError, match="do not match"):
        await provider.lookup(classify("ZZZZ99999999"))
    assert "provider.unmatched_records" in [e["event"] for e in logs]
    record = await provider.lookup(classify("C02FK3Q7MD6T"))
    assert record is not None
    assert record.serial == "C02FK3Q7MD6T"


async def test_reenrolled_device_newest_contact_wins_with_warning(
    make_provider: MakeProvider,
) -> None:
    """Two records for one serial: the most recent contact wins and a warning is logged."""
    provider = await make_provider()
    with capture_logs() as logs:
        record = await provider.lookup(classify(REENROLLED))
    assert record is not None
    assert (record.record_id, record.managed) == ("502", True)
    warning = next(e for e in logs if e["event"] == "provider.duplicate_records")
    assert warning == {
        "event": "provider.duplicate_records",
        "log_level": "warning",
        "provider": "jamf",
        "kind": "serial",
        "identifier": REENROLLED,
        "record_ids": ["501", "502"],
        "chosen": "502",
        "count": 2,
    }


async def test_empty_strings_and_unknown_department_become_none(
    make_provider: MakeProvider,
) -> None:
    """Jamf's "" fields and a department id that 404s leave those user fields None."""
    provider = await make_provider()
    record = await provider.lookup(classify(REENROLLED))
    assert record is not None
    assert record.user == UserRecord(username="kiosk")


async def test_pagination_collects_every_page(make_provider: MakeProvider, fake: FakeJamf) -> None:
    """With one result per page, the provider reads page 1 too and still sees both records."""
    provider = await make_provider(page_size=1, device_classes="computers")
    record = await provider.lookup(classify(REENROLLED))
    assert record is not None
    assert record.record_id == "502"
    pages = [dict(r.query).get("page") for r in searches(fake)]
    assert pages == ["0", "1"]


def _mac(serial: str, number: int, *, managed: bool, contact: str | None) -> dict[str, Any]:
    """One of several records of `serial`, named in order (Jamf sorts a search by name)."""
    computer = jamf_computer(serial, number)
    computer["general"].update(
        name=f"MAC-{number:03d}", remoteManagement={"managed": managed}, lastContactTime=contact
    )
    return computer


async def test_more_matches_than_the_pages_read_fail_instead_of_choosing_among_some(
    aiohttp_server: Any,
) -> None:
    """The newest of a serial's records decides, and Jamf sorts them by name: with more
    matches than `MAX_PAGES` pages hold, the newest (here unmanaged, named last) may be unread,
    so the lookup fails rather than allow on an older record that still says managed."""

    old = [
        _mac("C02TRUNC0001", i, managed=True, contact=f"2024-01-{i + 1:02d}T00:00:00Z")
        for i in range(MAX_PAGES)
    ]
    newest = _mac("C02TRUNC0001", MAX_PAGES, managed=False, contact="2025-03-14T00:00:00Z")
    fake = FakeJamf.from_document({"computers": [*old, newest]})
    url = await served_url(aiohttp_server, create_app(fake))
    settings = jamf_settings(url, page_size=1, device_classes="computers")
    provider = JamfProvider("jamf", settings)
    try:
        with pytest.raises(ProviderError, match="more than 10 devices match one identifier"):
            await provider.lookup(classify("C02TRUNC0001"))
        settings = jamf_settings(url, page_size=2, device_classes="computers")
        wider = JamfProvider("jamf", settings)
        try:  # with every match read, the newest decides
            record = await wider.lookup(classify("C02TRUNC0001"))
        finally:
            await wider.aclose()
    finally:
        await provider.aclose()
    assert record is not None
    assert (record.record_id, record.managed) == (newest["id"], False)


async def test_records_tied_on_the_latest_contact_fail_the_lookup(aiohttp_server: Any) -> None:
    """Two records of one serial that share the latest contact (both never reported one):
    which is current cannot be told, and Jamf's order chose between managed and not."""

    twins = [_mac("C02TIED00001", n, managed=n == 1, contact=None) for n in (1, 2)]
    fake = FakeJamf(computers=twins)
    url = await served_url(aiohttp_server, create_app(fake))
    provider = JamfProvider("jamf", jamf_settings(url, device_classes="computers"))
    try:
        with pytest.raises(ProviderError, match="share the latest contact"):
            await provider.lookup(classify("C02TIED00001"))
    finally:
        await provider.aclose()


# --- identifiers and device classes ----------------------------------------------------------------


async def test_lookup_by_udid_filters_on_udid(make_provider: MakeProvider, fake: FakeJamf) -> None:
    """A UDID is searched with `udid==` on computers and mobile devices alike."""
    provider = await make_provider()
    record = await provider.lookup(classify(MAC_UDID))
    assert record is not None
    assert record.serial == MAC
    filters = sorted(dict(r.query)["filter"] for r in searches(fake))
    assert f'udid=="{MAC_UDID}"' in filters
    assert all("serialNumber" not in f for f in filters)


async def test_lowercase_udid_matches_case_insensitively(make_provider: MakeProvider) -> None:
    """Jamf compares strings case-insensitively, so a lower-case UDID still finds the device."""
    provider = await make_provider()
    record = await provider.lookup(classify(IPHONE_UDID.lower()))
    assert record is not None
    assert record.record_id == "88"


@pytest.mark.parametrize(
    ("classes", "serial", "expected"),
    [
        ("computers", IPHONE, None),
        ("mobile", MAC, None),
        ("mobile", IPHONE, "88"),
        ("computers", MAC, "417"),
    ],
    ids=["computers-only-misses-iphone", "mobile-only-misses-mac", "mobile", "computers"],
)
async def test_device_classes_limit_the_search(
    make_provider: MakeProvider,
    fake: FakeJamf,
    classes: str,
    serial: str,
    expected: str | None,
) -> None:
    """Only the configured device classes are queried."""
    provider = await make_provider(device_classes=classes)
    record = await provider.lookup(classify(serial))
    assert (record.record_id if record else None) == expected
    searched = "computers-inventory" if classes == "computers" else "mobile-devices"
    assert {searched} == {
        "computers-inventory" if "computers" in r.path else "mobile-devices"
        for r in inventory_requests(fake)
    }


async def test_both_classes_are_searched_concurrently(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Computers and mobile devices are asked at the same time, not one after the other."""
    provider = await make_provider(computers_api_version="v3")
    fake.inject("slow", path="/api/v3/computers-inventory", delay=0.2)
    fake.inject("slow", path="/api/v2/mobile-devices", delay=0.2)
    fake.max_in_flight = 0
    await provider.lookup(classify(IPHONE))
    assert fake.max_in_flight == 2


async def test_non_apple_identifier_is_not_searched(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A YubiKey serial is not something Jamf knows: None without a request."""
    provider = await make_provider()
    before = len(fake.requests)
    yubikey = classify("12345678", frozenset({IdentifierKind.YUBIKEY_SERIAL}))
    assert await provider.lookup(yubikey) is None
    assert len(fake.requests) == before


async def test_unsafe_identifier_never_reaches_a_filter(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """An identifier with quote characters (bypassing classify) fails before any request."""
    provider = await make_provider()
    before = len(fake.requests)
    with pytest.raises(ProviderError, match="unsafe"):
        await provider.lookup(DeviceIdentifier('C02"||id!="0', IdentifierKind.SERIAL))
    assert len(fake.requests) == before


# --- API versions and the Classic fallback ------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "v4"])
async def test_each_computers_api_version_maps_last_contact(
    make_provider: MakeProvider, fake: FakeJamf, version: str
) -> None:
    """v1-v3 `lastContactTime` and v4 `lastContact` both become last_contact."""
    provider = await make_provider(computers_api_version=version, device_classes="computers")
    record = await provider.lookup(classify(MAC))
    assert record is not None
    assert record.last_contact == datetime(2025, 3, 14, 9, 26, 41, 207000, tzinfo=UTC)
    assert {r.path for r in inventory_requests(fake)} == {f"/api/{version}/computers-inventory"}


@pytest.mark.parametrize(
    ("served", "chosen"),
    [({"v1", "v3", "v4"}, "v4"), ({"v1", "v3"}, "v3"), ({"v1"}, "v1")],
    ids=["v4", "v3", "v1"],
)
async def test_auto_version_picks_newest_served(
    make_provider: MakeProvider, fake: FakeJamf, served: set[str], chosen: str
) -> None:
    """`computers_api_version = "auto"` probes once at start and keeps the newest that exists."""
    fake.computer_versions = served
    provider = await make_provider(device_classes="computers")
    await provider.lookup(classify(MAC))
    await provider.lookup(classify(MAC))
    searched = [r.path for r in searches(fake)]
    assert searched == [f"/api/{chosen}/computers-inventory"] * 2


async def test_missing_version_without_fallback_fails(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A configured version the server lacks is a ProviderError that names the path."""
    fake.computer_versions = {"v1"}
    provider = await make_provider(computers_api_version="v4", device_classes="computers")
    with pytest.raises(ProviderError, match="/api/v4/computers-inventory does not exist"):
        await provider.lookup(classify(MAC))


async def test_classic_fallback_serves_old_servers(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Without the Pro inventory endpoints, `classic_fallback` finds devices via /JSSResource."""
    fake.computer_versions = set()
    fake.mobile_enabled = False
    with capture_logs() as logs:
        provider = await make_provider(classic_fallback=True)
        mac = await provider.lookup(classify(MAC))
        iphone = await provider.lookup(classify(IPHONE_UDID))
        unknown = await provider.lookup(classify("ZZZZ99999999"))
    assert mac is not None
    assert iphone is not None
    assert unknown is None
    assert (mac.record_id, mac.managed, mac.os_version, mac.last_contact) == (
        "417",
        True,
        "15.3.2",
        datetime(2025, 3, 14, 9, 26, 41, 207000, tzinfo=UTC),
    )
    assert mac.user is not None
    assert mac.user.department == "Platform Engineering"
    assert [g.name for g in mac.groups] == ["All Managed Clients", "MDA Pilot"]
    assert (iphone.record_id, iphone.platform, iphone.serial) == ("88", "iOS", IPHONE)
    assert [(g.name, g.id) for g in iphone.groups] == [
        ("Corporate iPhones", "12"),
        ("MDA Pilot", "43"),
    ]
    assert {e["device_class"] for e in logs if e["event"] == "provider.classic_fallback"} == {
        "computers",
        "mobile",
    }
    assert fake.count("/JSSResource/computers/udid/") == 1


# --- departments --------------------------------------------------------------------------------


async def test_department_names_are_cached_until_ttl(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A department is fetched once per TTL, however many lookups need it."""
    clock = Clock()
    provider = await make_provider(clock=clock, department_ttl=60)
    for _ in range(3):
        await provider.lookup(classify(MAC))
    assert fake.count("/api/v1/departments/7") == 1
    clock.now += 61
    await provider.lookup(classify(MAC))
    assert fake.count("/api/v1/departments/7") == 2


async def test_concurrent_lookups_share_one_department_request(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Two Macs of one uncached department, looked up at once, cause one department request."""
    provider = await make_provider(device_classes="computers")
    fake.inject("slow", path="/api/v1/departments/", times=None, delay=0.2)
    unmanaged, outside = await asyncio.gather(
        provider.lookup(classify("C02XL0UNMGD1")), provider.lookup(classify("C02NOTPILOT1"))
    )
    assert unmanaged is not None
    assert outside is not None
    assert unmanaged.user is not None
    assert outside.user is not None
    assert unmanaged.user.department == outside.user.department == "Finance"
    assert fake.count("/api/v1/departments/3") == 1


# --- authentication -----------------------------------------------------------------------------


async def test_token_is_reused_across_lookups(make_provider: MakeProvider, fake: FakeJamf) -> None:
    """One token serves many lookups while it is fresh."""
    provider = await make_provider()
    for serial in (MAC, IPHONE, REENROLLED):
        await provider.lookup(classify(serial))
    assert fake.token_requests == 1


async def test_expired_token_is_refreshed_once_for_concurrent_lookups(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """When the token nears expiry, ten concurrent lookups cause exactly one token fetch."""
    clock = Clock()
    provider = await make_provider(clock=clock)
    assert fake.token_requests == 1
    clock.now += 599 - 29  # inside the 30 s refresh margin
    with capture_logs() as logs:
        records = await asyncio.gather(*(provider.lookup(classify(MAC)) for _ in range(10)))
    assert all(r is not None and r.record_id == "417" for r in records)
    assert fake.token_requests == 2
    assert [e["event"] for e in logs].count("provider.token_refreshed") == 1


async def test_rejected_token_is_replaced_and_request_retried_once(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A 401 (token revoked upstream) gets one fresh token and one retry, then succeeds."""
    provider = await make_provider(device_classes="computers")
    fake.expire_tokens()
    record = await provider.lookup(classify(MAC))
    assert record is not None
    assert fake.token_requests == 2
    statuses = [r.status for r in searches(fake)]
    assert statuses == [401, 200]


async def test_injected_401_once_is_retried(make_provider: MakeProvider, fake: FakeJamf) -> None:
    """The fake's 401-once switch is survived with exactly one extra token fetch."""
    provider = await make_provider(device_classes="computers")
    fake.inject("401")
    assert await provider.lookup(classify(MAC)) is not None
    assert fake.token_requests == 2


async def test_persistent_401_fails_after_one_retry(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """If a fresh token is refused too, the lookup fails instead of looping."""
    provider = await make_provider(device_classes="computers")
    fake.inject("401", times=None)
    with pytest.raises(ProviderError, match="refused a fresh token"):
        await provider.lookup(classify(MAC))
    assert len(searches(fake)) == 2


async def test_oauth_path_fallback_is_remembered(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """On a server without /api/v1/oauth/token, /api/oauth/token is found once and kept."""
    fake.oauth_paths = {"/api/oauth/token"}
    provider = await make_provider()
    fake.expire_tokens()
    assert await provider.lookup(classify(MAC)) is not None
    posts = [(r.path, r.status) for r in fake.requests if r.method == "POST"]
    assert posts == [
        ("/api/v1/oauth/token", 404),
        ("/api/oauth/token", 200),
        ("/api/oauth/token", 200),
    ]


async def test_oauth_fallback_survives_401_for_a_missing_path(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A server answering 401 (not 404) for the path it lacks still gets the other path tried."""
    fake.oauth_paths = {"/api/oauth/token"}
    fake.oauth_missing_status = 401
    provider = await make_provider()
    assert provider.ready
    posts = [(r.path, r.status) for r in fake.requests if r.method == "POST"]
    assert posts == [("/api/v1/oauth/token", 401), ("/api/oauth/token", 200)]


async def test_current_oauth_path_is_tried_first(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Where both paths exist, the current /api/v1/oauth/token is used and nothing else."""
    await make_provider()
    assert [r.path for r in fake.requests if r.method == "POST"] == ["/api/v1/oauth/token"]


async def test_fixed_oauth_path_does_not_fall_back(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A configured token path is the only one tried; its absence is a clear start failure."""
    fake.oauth_paths = {"/api/v1/oauth/token"}
    provider = await make_provider(start=False, oauth_token_path="/api/oauth/token")
    with pytest.raises(
        ProviderNotReady, match=r"no OAuth token endpoint.*tried /api/oauth/token\)"
    ):
        await provider.start()
    assert [r.path for r in fake.requests] == ["/api/oauth/token"]


async def test_user_bearer_token_from_basic_credentials(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A Jamf user account gets its bearer token from /api/v1/auth/token with Basic auth."""
    provider = await make_provider(username="api-reader", password="fake-password")
    assert await provider.lookup(classify(MAC)) is not None
    token_calls = [r for r in fake.requests if r.path == "/api/v1/auth/token"]
    assert [(r.auth, r.status) for r in token_calls] == [("basic", 200)]
    assert {r.auth for r in inventory_requests(fake)} == {"bearer"}


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (
            {"client_secret": "wrong-secret-value"},
            "OAuth client credentials.*HTTP 401.*invalid_client",
        ),
        (
            {"username": "api-reader", "password": "wrong-secret-value"},
            "username and password.*HTTP 401.*INVALID_CREDENTIALS",
        ),
    ],
    ids=["oauth", "user"],
)
async def test_bad_credentials_make_start_fail_without_leaking(
    make_provider: MakeProvider, credentials: dict[str, str], message: str
) -> None:
    """Refused credentials raise ProviderNotReady, log token_failed, and never show the secret."""
    provider = await make_provider(start=False, **credentials)
    with capture_logs() as logs, pytest.raises(ProviderNotReady, match=message) as caught:
        await provider.start()
    assert not provider.ready
    assert "wrong-secret-value" not in str(caught.value)
    assert "wrong-secret-value" not in repr(logs)
    assert any(e["event"] == "provider.token_failed" and e["status"] == 401 for e in logs)


async def test_already_expired_user_token_is_not_used(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A token Jamf issues already expired leaves the provider not ready instead of looping."""
    fake.token_lifetime = -60
    provider = await make_provider(start=False, username="api-reader", password="fake-password")
    with pytest.raises(ProviderNotReady, match="already expired"):
        await provider.start()
    assert not provider.ready


async def test_start_failure_is_left_to_the_service_to_log(make_provider: MakeProvider) -> None:
    """A failed start raises with its reason and logs nothing above debug on the provider side."""
    provider = await make_provider(start=False, client_secret="wrong-secret-value")
    with capture_logs() as logs, pytest.raises(ProviderNotReady):
        await provider.start()
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == []


async def test_unreachable_jamf_makes_start_fail(make_provider: MakeProvider) -> None:
    """A server that refuses connections leaves the provider not ready."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = JamfProvider("jamf", jamf_settings(f"http://127.0.0.1:{port}", retries=0))
    try:
        with pytest.raises(ProviderNotReady, match="connection failed"):
            await provider.start()
        assert not provider.ready
    finally:
        await provider.aclose()


async def test_tls_is_verified_and_a_ca_bundle_trusts_a_private_ca(
    aiohttp_server: Any, fake: FakeJamf, tmp_path: Path
) -> None:
    """An HTTPS Jamf with a private CA is refused by default and accepted with `ca_bundle`."""
    ca = TestCA(tmp_path / "pki", "jamf test CA")
    leaf = ca.issue("jamf", ip="127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    server = await aiohttp_server(create_app(fake), ssl=context)
    url = f"https://127.0.0.1:{server.port}"
    untrusted = JamfProvider("jamf", jamf_settings(url, retries=0))
    trusted = JamfProvider("jamf", jamf_settings(url, ca_bundle=str(ca.cert_path)))
    try:
        with pytest.raises(ProviderNotReady, match="connection failed"):
            await untrusted.start()
        await trusted.start()
        assert await trusted.lookup(classify(MAC)) is not None
    finally:
        await untrusted.aclose()
        await trusted.aclose()


async def test_ready_after_start(make_provider: MakeProvider) -> None:
    """A provider whose credentials Jamf accepts reports ready."""
    provider = await make_provider()
    assert provider.ready


# --- upstream faults ----------------------------------------------------------------------------


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
    make_provider: MakeProvider, fake: FakeJamf, kind: Any, retry_after: str | None
) -> None:
    """Throttling, gateway errors and dropped connections are retried, then the lookup works."""
    provider = await make_provider(device_classes="computers")
    fake.inject(kind, path="/api/v4/computers-inventory", retry_after=retry_after)
    record = await provider.lookup(classify(MAC))
    assert record is not None
    assert fake.count("/api/v4/computers-inventory") == 1 + 2  # probe, fault, retry


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("500", "unexpected HTTP 500"),
        ("malformed", "malformed JSON"),
        ("wrongshape", "unexpected JSON shape at totalCount, results"),
        ("badgzip", "could not be decoded"),
        ("html403", "HTML 403"),
    ],
)
async def test_hard_faults_fail_without_retry(
    make_provider: MakeProvider, fake: FakeJamf, kind: Any, message: str
) -> None:
    """A 500, malformed JSON or a firewall's HTML 403 is a ProviderError at once."""
    provider = await make_provider(device_classes="computers")
    fake.inject(kind, path="/api/v4/computers-inventory")
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(classify(MAC))
    assert fake.count("/api/v4/computers-inventory") == 1 + 1


async def test_body_that_is_not_the_gzip_it_claims_is_a_provider_error(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A `Content-Encoding: gzip` body that is not gzip fails the lookup as ProviderError."""
    provider = await make_provider()
    fake.inject("badgzip", path="/api/v4/computers-inventory")
    with pytest.raises(ProviderError, match="could not be decoded"):
        await provider.lookup(classify(MAC))


async def test_retries_are_bounded(make_provider: MakeProvider, fake: FakeJamf) -> None:
    """A server that keeps answering 503 gets `retries` extra attempts, then a ProviderError."""
    provider = await make_provider(device_classes="computers", retries=2)
    fake.inject("503", path="/api/v4/computers-inventory", times=None)
    with pytest.raises(ProviderError, match="503"):
        await provider.lookup(classify(MAC))
    assert fake.count("/api/v4/computers-inventory") == 1 + 3


async def test_retry_after_past_the_budget_fails_at_once(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """A Retry-After longer than the remaining budget is not waited for."""
    provider = await make_provider(device_classes="computers", budget=1.0)
    fake.inject("429", path="/api/v4/computers-inventory", retry_after="30")
    with pytest.raises(ProviderError, match="429"):
        await provider.lookup(classify(MAC))
    assert fake.count("/api/v4/computers-inventory") == 1 + 1


async def test_slow_jamf_exceeds_the_lookup_budget(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """An answer slower than the whole-lookup budget becomes a ProviderError naming the budget."""
    provider = await make_provider(device_classes="computers", budget=0.3, read_timeout=5)
    fake.inject("slow", path="/api/v4/computers-inventory", delay=1.0)
    with pytest.raises(ProviderError, match=r"exceeded its 0\.3s budget"):
        await provider.lookup(classify(MAC))


@web.middleware
async def _drip_departments(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Department answers trickle in, one blank a tenth of a second, for ever."""
    if not request.path.startswith("/api/v1/departments/"):
        return await handler(request)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        await response.write(b" ")
        await asyncio.sleep(0.1)


async def test_a_trickling_department_does_not_keep_the_connections(
    aiohttp_server: Any, fake: FakeJamf
) -> None:
    """A shared department fetch whose answer trickles in ends with its lookup's budget: its
    connection serves the next lookup, which would otherwise wait for it and fail."""
    app = create_app(fake)
    app.middlewares.append(_drip_departments)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    settings = jamf_settings(url, device_classes="computers", max_connections=2, budget=1.0)
    provider = JamfProvider("jamf", settings)
    await provider.start()
    try:
        for serial in (MAC, "C02XL0UNMGD1"):  # in two departments: two fetches, two connections
            with pytest.raises(ProviderError, match=r"exceeded its 1s budget"):
                await provider.lookup(classify(serial))
        await asyncio.sleep(0.1)
        record = await provider.lookup(classify(BARE_MAC))  # no department to fetch
        assert record is not None
        assert record.serial == BARE_MAC
    finally:
        async with asyncio.timeout(5):
            await provider.aclose()


async def test_read_timeout_is_a_provider_error(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """An answer slower than the read timeout fails (and is not waited out)."""
    provider = await make_provider(
        device_classes="computers", read_timeout=0.1, retries=0, budget=5
    )
    fake.inject("slow", path="/api/v4/computers-inventory", delay=1.0)
    with pytest.raises(ProviderError, match="timed out"):
        await provider.lookup(classify(MAC))


async def test_failure_in_one_device_class_fails_the_lookup(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """Fail closed: an error on mobile devices fails the lookup even if computers answered."""
    provider = await make_provider()
    fake.inject("500", path="/api/v2/mobile-devices")
    with pytest.raises(ProviderError, match="mobile-devices"):
        await provider.lookup(classify(MAC))


async def test_concurrency_limit_is_never_exceeded(
    make_provider: MakeProvider, fake: FakeJamf
) -> None:
    """However many lookups run at once, Jamf never sees more than max_connections requests."""
    provider = await make_provider(max_connections=3, budget=8)
    fake.inject("slow", path="/api/", times=None, delay=0.05)
    fake.max_in_flight = 0
    serials = [MAC, IPHONE, REENROLLED, BARE_MAC, MAC_UDID, IPAD_UDID] * 3
    records = await asyncio.gather(*(provider.lookup(classify(s)) for s in serials))
    assert all(r is not None for r in records)
    assert fake.max_in_flight == 3


# --- settings, listing, timestamps --------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"client_id": None, "client_secret": None}, "either client_id and client_secret"),
        ({"client_secret": None}, "go together"),
        ({"username": "u", "password": "p"}, "either client_id"),
        ({"url": "jamf.example.com"}, "http"),
        ({"url": "http://jamf.example.com"}, "plain http is allowed only"),
        ({"device_classes": "tv"}, "device_classes"),
        ({"computers_api_version": "v9"}, "computers_api_version"),
        ({"max_connections": 0}, "max_connections"),
        ({"page_size": 0}, "page_size"),
    ],
    ids=[
        "no-credentials",
        "half-oauth",
        "both-credentials",
        "bad-url",
        "plain-http-remote",
        "classes",
        "version",
        "conns",
        "page",
    ],
)
def test_invalid_settings_are_rejected(overrides: dict[str, Any], problem: str) -> None:
    """Settings name the key at fault."""
    data = {
        "kind": "jamf",
        "url": "https://example.jamfcloud.com",
        "client_id": "id",
        "client_secret": "s",
        **overrides,
    }
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ValidationError, match=problem):
        JamfSettings.model_validate(data)


def test_secret_comes_from_env_and_stays_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """`client_secret = { env = ... }` is read from the environment and never shown."""
    monkeypatch.setenv("JAMF_TEST_SECRET", "s3cr3t-value")
    settings = JamfSettings.model_validate(
        {
            "kind": "jamf",
            "url": "https://example.jamfcloud.com/",
            "client_id": "id",
            "client_secret": {"env": "JAMF_TEST_SECRET"},
        }
    )
    assert settings.client_secret is not None
    assert settings.client_secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)
    assert settings.url == "https://example.jamfcloud.com"
    assert (settings.budget, settings.max_connections, settings.verify_tls) == (4.0, 5, True)


async def test_iter_devices_lists_every_record(make_provider: MakeProvider) -> None:
    """Listing pages through computers and mobile devices."""
    provider = await make_provider(list_page_size=2)
    records = [r async for r in provider.iter_devices()]
    assert sorted(r.record_id or "" for r in records) == [
        "417",
        "418",
        "419",
        "501",
        "502",
        "503",
        "88",
        "89",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-03-14T09:26:41.207Z", datetime(2025, 3, 14, 9, 26, 41, 207000, tzinfo=UTC)),
        ("2024-11-02T16:05:12.3Z", datetime(2024, 11, 2, 16, 5, 12, 300000, tzinfo=UTC)),
        ("2025-03-14T09:26:41.123456789Z", datetime(2025, 3, 14, 9, 26, 41, 123456, tzinfo=UTC)),
        ("2025-03-14T09:26:41Z", datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        ("2025-03-14T09:26:41.207+0000", datetime(2025, 3, 14, 9, 26, 41, 207000, tzinfo=UTC)),
        ("2025-03-14T10:26:41+01:00", datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        ("2025-03-14 09:26:41", datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_jamf_timestamps_parse_leniently(raw: str | None, expected: datetime | None) -> None:
    """Jamf's varying fraction digits and offset forms all give aware datetimes."""
    assert parse_jamf_time(raw) == expected


def test_jamf_and_files_list_devices_outside_the_provider_seam() -> None:
    """Jamf and file inventories are DeviceListers; the Provider seam itself asks for no listing."""
    assert issubclass(JamfProvider, DeviceLister)
    assert issubclass(FileProvider, DeviceLister)
    assert not hasattr(Provider, "iter_devices")


async def test_hooks_see_each_exchange_by_route_and_the_token(
    jamf_url: str, fake: FakeJamf
) -> None:
    """Hooks given to build_provider get bounded routes (no identifiers) and token events."""
    hook = RecordingHook()
    provider = build_provider("jamf", jamf_settings(jamf_url), hooks=hook)
    try:
        await provider.start()
        fake.inject("503", path="/api/v2/mobile-devices", retry_after="0")
        assert await provider.lookup(classify(MAC)) is not None
    finally:
        await provider.aclose()
    routes = {(c.method, c.route) for c in hook.calls}
    assert routes == {
        ("POST", "/api/v1/oauth/token"),
        ("GET", "/api/v4/computers-inventory"),
        ("GET", "/api/v2/mobile-devices/detail"),
        ("GET", "/api/v1/departments/{id}"),
    }
    assert all(MAC not in c.route and "7" not in c.route for c in hook.calls)
    assert [(r.route, r.wait, r.rate_limited) for r in hook.retries] == [
        ("/api/v2/mobile-devices/detail", 0.0, True)
    ]
    assert [(t.outcome, t.expires_in) for t in hook.tokens] == [("refreshed", 599.0)]


async def test_refused_token_is_reported_without_the_secret(jamf_url: str) -> None:
    """A refusal reaches the hook with the status and Jamf's code, never the secret."""
    hook = RecordingHook()
    provider = JamfProvider(
        "jamf", jamf_settings(jamf_url, client_secret="wrong-secret-value"), hooks=hook
    )
    try:
        with pytest.raises(ProviderNotReady):
            await provider.start()
    finally:
        await provider.aclose()
    assert [(t.outcome, t.detail) for t in hook.tokens] == [
        ("refused", "HTTP 401 on /api/v1/oauth/token, invalid_client")
    ]


async def test_a_refusal_naming_the_secret_is_reported_without_it(aiohttp_server: Any) -> None:
    """A server that answers ``{"error": <the secret it refused>}``: an error code shaped like
    a code was shown as one, the whole secret in the log, the hook and the admin page."""
    fake = FakeJamf(echo_refused_secret=True)
    url = await served_url(aiohttp_server, create_app(fake))
    hook = RecordingHook()
    secret = "WrongSecret0123456789"
    provider = JamfProvider("jamf", jamf_settings(url, client_secret=secret), hooks=hook)
    try:
        with pytest.raises(ProviderNotReady) as info:
            await provider.start()
    finally:
        await provider.aclose()
    assert secret not in str(info.value)
    assert [(t.outcome, t.detail) for t in hook.tokens] == [
        ("refused", "HTTP 401 on /api/v1/oauth/token")
    ]


# --- the fake itself ----------------------------------------------------------------------------


async def test_fake_rejects_unfilterable_fields_and_mismatched_quotes(jamf_url: str) -> None:
    """The fake answers 400 for RSQL Jamf would reject, so provider bugs cannot hide."""
    async with httpx.AsyncClient(base_url=jamf_url) as client:
        token = (
            await client.post(
                "/api/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "posture-connector",
                    "client_secret": SECRET,
                },
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        path = "/api/v1/computers-inventory"
        bad_field = await client.get(
            path, params={"filter": 'general.secret=="x"'}, headers=headers
        )
        bad_quotes = await client.get(
            path, params={"filter": "hardware.serialNumber==\"C02FK3Q7MD6T'"}, headers=headers
        )
        single = await client.get(
            path, params={"filter": "hardware.serialNumber=='c02fk3q7md6t'"}, headers=headers
        )
    assert (bad_field.status_code, bad_quotes.status_code) == (400, 400)
    assert single.json()["totalCount"] == 1
    assert single.json()["results"][0]["hardware"] is None  # only GENERAL by default


# --- through the whole webhook ------------------------------------------------------------------

PEOPLE = "/webhooks/people"
GATE = "/webhooks/gate"
PILOT = {"managed": True, "groups": {"any_of": ["MDA Pilot"]}}


def jamf_config(url: str, **provider: Any) -> dict[str, Any]:
    """A service config with one Jamf provider behind an ENRICHING and an AUTHORIZING webhook."""
    jamf = {
        "kind": "jamf",
        "url": url,
        "client_id": "posture-connector",
        "client_secret": SECRET,
        "backoff": 0.01,
        **provider,
    }
    return config(
        Path("unused.csv"),
        providers={"jamf": jamf},
        webhooks=[
            webhook(providers=("jamf",), policy=PILOT),
            webhook("gate", "AUTHORIZING", providers=("jamf",), policy=PILOT),
        ],
    )


@pytest.fixture
def service(aiohttp_client: Any, jamf_url: str) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """Start the real app with the Jamf provider pointed at the fake."""

    async def start(url: str | None = None, **provider: Any) -> TestClient[Any, Any]:
        settings = make_settings(jamf_config(url or jamf_url, **provider))
        app = connector_app(settings, clock=lambda: FIXED_NOW)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        await app[PROVIDERS_STARTED].wait()
        return client

    return start


async def call(
    client: TestClient[Any, Any], identifier: str, *, path: str = PEOPLE
) -> dict[str, Any]:
    """Send a signed step-ca request and return the JSON answer (always HTTP 200)."""
    if path == PEOPLE:
        body = enrich(identifier)
        headers = signed(body)
    else:
        body = authorize(identifier)
        headers = signed(body, webhook_id=AUTH_ID)
    response = await client.post(
        path, data=body, headers=headers, skip_auto_headers=["Content-Type"]
    )
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def test_webhook_allows_managed_pilot_mac_with_jamf_user(service: Any) -> None:
    """A managed Mac in the required group is allowed and carries its Jamf user and groups."""
    client = await service()
    answer = await call(client, MAC)
    assert answer["allow"] is True
    assert answer["data"]["user"] == {
        "username": "asharma",
        "department": "Platform Engineering",
        "title": "Site Reliability Engineer",
    }
    assert answer["data"]["groups"] == ["All Managed Clients", "MDA Pilot"]
    assert answer["data"]["device"]["udid"] == MAC_UDID
    assert answer["data"]["provider"] == "jamf"


async def test_text_with_a_lone_surrogate_escape_is_answered_with_u_fffd(
    service: Any, fake: FakeJamf
) -> None:
    """Jamf's JSON may carry a ``\\udc80`` escape, which Python keeps as a lone surrogate: the
    answer is cached, enriched and sent with U+FFFD in its place, as step-ca (Go) reads it."""
    [department] = [d for d, name in fake.departments.items() if name == "Platform Engineering"]
    fake.departments[department] = "Platform\udc80Engineering"
    client = await service()
    for _ in range(2):  # live, then from the cache
        answer = await call(client, MAC)
        assert answer["allow"] is True
        assert answer["data"]["user"]["department"] == "Platform\ufffdEngineering"


@pytest.mark.parametrize(
    ("identifier", "path", "platform"),
    [
        (IPHONE_UDID, PEOPLE, "iOS"),
        (IPHONE, GATE, None),
        (MAC_UDID, GATE, None),
    ],
    ids=["iphone-udid-enriching", "iphone-serial-authorizing", "mac-udid-authorizing"],
)
async def test_webhook_allows_by_serial_and_udid_for_both_classes(
    service: Any, identifier: str, path: str, platform: str | None
) -> None:
    """Mobile devices and Macs are allowed whether attested by serial or by UDID."""
    client = await service()
    answer = await call(client, identifier, path=path)
    assert answer["allow"] is True
    if platform is not None:
        assert answer["data"]["device"]["platform"] == platform


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        ("C02XL0UNMGD1", "device-unmanaged"),
        (IPAD_UDID, "device-unmanaged"),
        ("C02NOTPILOT1", "group-required"),
        ("ZZZZ99999999", "device-not-found"),
    ],
    ids=["unmanaged-mac", "unmanaged-ipad", "out-of-group", "unknown"],
)
async def test_webhook_denies_with_distinct_codes(service: Any, identifier: str, code: str) -> None:
    """Unmanaged, out-of-group and unknown devices are denied, each with its own code."""
    client = await service()
    answer = await call(client, identifier)
    assert answer["allow"] is False
    assert answer["error"]["code"] == code


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("500", {}),
        ("html403", {}),
        ("malformed", {}),
        ("badgzip", {}),
        ("503", {"retries": 1}),
        ("slow", {"budget": 0.3}),
    ],
)
async def test_webhook_fails_closed_while_jamf_fails(
    service: Any, fake: FakeJamf, kind: Any, options: dict[str, Any]
) -> None:
    """Any Jamf failure denies with inventory-unavailable, and recovery allows again."""
    client = await service(**options)
    delay = 1.0 if kind == "slow" else 0.0
    fake.inject(kind, path="/api/v4/computers-inventory", times=None, delay=delay)
    answer = await call(client, MAC)
    assert (answer["allow"], answer["error"]["code"]) == (False, "inventory-unavailable")
    fake.clear_faults()
    assert (await call(client, MAC))["allow"] is True


async def test_webhook_survives_token_revocation(service: Any, fake: FakeJamf) -> None:
    """A token Jamf stopped accepting is replaced once and the request still succeeds."""
    client = await service()
    fake.expire_tokens()
    assert (await call(client, MAC))["allow"] is True
    assert fake.token_requests == 2


async def test_readyz_fails_with_bad_jamf_credentials(aiohttp_client: Any, jamf_url: str) -> None:
    """Refused Jamf credentials make /readyz answer 503 and log no secret."""
    mapping = jamf_config(jamf_url)
    mapping["providers"]["jamf"]["client_secret"] = "wrong-secret-value"
    with capture_logs() as logs:
        app = connector_app(make_settings(mapping))
        client = await aiohttp_client(app)
        await app[PROVIDERS_STARTED].wait()
        response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["providers"] == {"jamf": False}
    assert "wrong-secret-value" not in repr(logs)
    assert any(e["event"] == "provider.token_failed" for e in logs)


async def test_readyz_passes_with_good_credentials(service: Any) -> None:
    """Accepted credentials make the Jamf provider ready."""
    client = await service()
    response = await client.get("/readyz")
    assert response.status == 200


async def test_webhook_load_never_exceeds_jamf_connection_limit(
    service: Any, fake: FakeJamf
) -> None:
    """Many concurrent webhook calls never put more than max_connections requests on Jamf."""
    client = await service(max_connections=2, budget=8)
    fake.inject("slow", path="/api/", times=None, delay=0.05)
    fake.max_in_flight = 0
    identifiers = [MAC, IPHONE, REENROLLED, BARE_MAC, MAC_UDID, IPAD_UDID, "C02NOTPILOT1"]
    identifiers += [f"ZZZZ9999{n:04d}" for n in range(8)]
    answers = await asyncio.gather(*(call(client, i) for i in identifiers))
    assert all("error" not in a or a["error"]["code"] != "inventory-unavailable" for a in answers)
    assert fake.max_in_flight == 2


# --- the CLI against the fake -------------------------------------------------------------------


async def test_cli_lookup_with_example_config(tmp_path: Path, jamf_url: str) -> None:
    """`posture-connector lookup --config examples/jamf.toml` decides against the fake Jamf."""
    example = Path(__file__).parent.parent / "examples" / "jamf.toml"
    text = example.read_text(encoding="utf-8").replace("http://127.0.0.1:9443", jamf_url)
    for name in ("quickstart.secret", "quickstart-gate.secret"):
        secret_file = (example.parent / name).resolve()
        text = text.replace(f'{{ file = "{name}" }}', f'{{ file = "{secret_file}" }}')
    text = text.replace("dev_certificate = true", "plain_http = true")
    config_path = tmp_path / "jamf.toml"
    config_path.write_text(text, encoding="utf-8")
    cli = Path(sys.executable).parent / "posture-connector"

    async def lookup(identifier: str) -> tuple[int, dict[str, Any]]:
        process = await asyncio.create_subprocess_exec(
            str(cli),
            "lookup",
            "--json",
            "--config",
            str(config_path),
            "--webhook",
            "people",
            identifier,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "JAMF_CLIENT_SECRET": SECRET},
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        assert out, err.decode()
        return process.returncode, json.loads(out)

    allowed, denied = await asyncio.gather(lookup(MAC), lookup("C02NOTPILOT1"))
    assert allowed[0] == 0, allowed[1]
    assert allowed[1]["reply"]["data"]["groups"] == ["All Managed Clients", "MDA Pilot"]
    assert denied[0] != 0
    assert denied[1]["reply"]["error"]["code"] == "group-required"
