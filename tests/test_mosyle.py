"""The Mosyle Manager provider against the fake Mosyle API (tests/fakes/mosyle.py) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import time
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
from providers.mosyle import MosyleProvider, MosyleSettings
from tests.fakes.mosyle import ACCESS_TOKEN, EMAIL, PASSWORD, FakeMosyle, create_app
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
from tests.vendor_support import providers_made

MAC = "C02MSY0MAC01"
IPHONE = "F17MSY0IPH01"
IPHONE_UDID = "00008110-000A1C2E3F40A001"
IPAD = "DMPMSY0IPD01"
LIMBO = "C02MSY0LMB01"
DELETED = "C02MSY0DEL01"
LIST = "/v2/listdevices"
GROUPS = "/v2/listdevicegroupsdevices"

MakeProvider = Callable[..., Awaitable[MosyleProvider]]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeMosyle:
    return FakeMosyle.from_file()


@pytest.fixture
async def mosyle_url(aiohttp_server: Any, fake: FakeMosyle) -> str:
    server = await aiohttp_server(create_app(fake))
    return str(server.make_url("/v2")).rstrip("/")


def mosyle_settings(url: str, **overrides: Any) -> MosyleSettings:
    base: dict[str, Any] = {
        "kind": "mosyle",
        "url": url,
        "access_token": ACCESS_TOKEN,
        "email": EMAIL,
        "password": PASSWORD,
        "backoff": 0.01,
    }
    return MosyleSettings.model_validate({**base, **overrides})


@pytest.fixture
async def make_provider(mosyle_url: str) -> AsyncIterator[MakeProvider]:
    """Build (and by default start) a provider against the fake; closed after the test."""

    def build(*, clock: Callable[[], float] | None = None, **overrides: Any) -> MosyleProvider:
        settings = mosyle_settings(mosyle_url, **overrides)
        return MosyleProvider("mosyle", settings, clock=clock or time.monotonic)

    async with providers_made(build) as make:
        yield make


def bodies(fake: FakeMosyle, path: str) -> list[Any]:
    return [r.body for r in fake.requests if r.path == path]


# --- what a lookup answers ------------------------------------------------------------------------


async def test_managed_mac_maps_every_field(make_provider: MakeProvider) -> None:
    """A Mac carries its tags and device groups, its Mosyle user, heartbeat and supervision."""
    provider = await make_provider()
    record = await provider.lookup(classify(MAC))
    assert record == DeviceRecord(
        provider="mosyle",
        record_id="9F2E4C11-0000-5000-8000-00000000A001",
        serial=MAC,
        udid="9F2E4C11-0000-5000-8000-00000000A001",
        name="MBP-ASHARMA",
        model="MacBook Pro (14-inch, 2021)",
        platform="macOS",
        os_version="15.3.2",
        managed=True,
        supervised=True,
        last_contact=datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC),
        user=UserRecord(
            username="asharma",
            email="anika.sharma@example.com",
            full_name="Anika Sharma",
            id="asharma",
        ),
        groups=(
            GroupRef(name="engineering"),
            GroupRef(name="mda"),
            GroupRef(name="All Macs", id="209"),
            GroupRef(name="MDA Pilot", id="210"),
        ),
    )


async def test_every_family_is_searched_by_serial_with_the_token_in_the_body(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """One listdevices per family, each with the API token, the family and the serial."""
    provider = await make_provider(device_groups=False)
    await provider.lookup(classify(IPHONE))
    assert sorted(b["options"]["os"] for b in bodies(fake, LIST)) == [
        "ios",
        "mac",
        "tvos",
        "visionos",
    ]
    assert all(
        b["accessToken"] == ACCESS_TOKEN and b["options"]["serial_numbers"] == [IPHONE]
        for b in bodies(fake, LIST)
    )


async def test_login_takes_the_jwt_from_the_response_header(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """``/login`` gets the token and the admin login in its body; later calls carry the JWT."""
    provider = await make_provider()
    await provider.lookup(classify(MAC))
    assert bodies(fake, "/v2/login") == [
        {"accessToken": ACCESS_TOKEN, "email": EMAIL, "password": PASSWORD}
    ]
    assert fake.logins == 1


@pytest.mark.parametrize("envelope", ["object", "list"])
async def test_not_found_marker_is_none(
    make_provider: MakeProvider, fake: FakeMosyle, envelope: Any
) -> None:
    """Mosyle's 200 DEVICES_NOTFOUND answer, in either envelope, is "not in this inventory"."""
    fake.envelope = envelope
    provider = await make_provider()
    assert await provider.lookup(classify("ZZZZ99999999")) is None
    assert (await provider.lookup(classify(MAC))) is not None


async def test_ipad_is_ipados_and_userless(make_provider: MakeProvider) -> None:
    """A shared iPad listed under ``ios`` is iPadOS and has no user."""
    provider = await make_provider()
    record = await provider.lookup(classify(IPAD))
    assert record is not None
    assert (record.platform, record.user, [g.name for g in record.groups]) == (
        "iPadOS",
        None,
        ["cart-a", "Carts"],
    )


@pytest.mark.parametrize("serial", [LIMBO, DELETED], ids=["limbo", "deleted"])
async def test_limbo_and_deleted_devices_are_unmanaged(
    make_provider: MakeProvider, serial: str
) -> None:
    """A status other than the enrolled ones, or ``is_deleted``, means not managed."""
    provider = await make_provider()
    record = await provider.lookup(classify(serial))
    assert record is not None
    assert record.managed is False


async def test_enrolled_statuses_are_configurable(make_provider: MakeProvider) -> None:
    """`enrolled_statuses` decides which ``status`` values count as managed."""
    provider = await make_provider(enrolled_statuses=["IN", "LIMBO"])
    assert (await provider.lookup(classify(LIMBO))).managed is True  # type: ignore[union-attr]


async def test_server_ignoring_the_serial_filter_fails_closed(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Devices that are not the serial never answer, and never pass for "not found"."""
    fake.ignore_serial_filter = True
    provider = await make_provider()
    assert (await provider.lookup(classify(MAC))).serial == MAC  # type: ignore[union-attr]
    with capture_logs() as logs, pytest.raises(ProviderError, match="not the serial"):
        await provider.lookup(classify("ZZZZ99999999"))
    assert any(e["event"] == "provider.unmatched_records" for e in logs)


async def test_udid_is_not_in_this_inventory_and_said_once(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Mosyle cannot search by UDID: None without a request, the reason logged only once."""
    provider = await make_provider()
    before = len(fake.requests)
    with capture_logs() as logs:
        assert await provider.lookup(classify(IPHONE_UDID)) is None
        assert await provider.lookup(classify("00008103-001B2C3D4E5F6A7B")) is None
    assert len(fake.requests) == before
    hints = [e for e in logs if e["event"] == "provider.udid_not_searchable"]
    assert len(hints) == 1


async def test_non_apple_and_unsafe_identifiers(make_provider: MakeProvider) -> None:
    """A YubiKey serial is not searched; a serial with odd characters fails before a request."""
    provider = await make_provider()
    assert (
        await provider.lookup(DeviceIdentifier("12345678", IdentifierKind.YUBIKEY_SERIAL)) is None
    )
    with pytest.raises(ProviderError, match="unexpected shape"):
        await provider.lookup(DeviceIdentifier('C02"}', IdentifierKind.SERIAL))


# --- device groups ----------------------------------------------------------------------------------


async def test_device_groups_are_read_once_per_family_until_the_ttl(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Group membership is read once per family and reused until `group_ttl` passes."""
    clock = Clock()
    provider = await make_provider(clock=clock, group_ttl=300)
    await provider.lookup(classify(MAC))
    await provider.lookup(classify(LIMBO))
    await provider.lookup(classify(IPHONE))
    assert sorted(b["options"]["os"] for b in bodies(fake, GROUPS)) == ["ios", "mac"]
    clock.now += 301
    await provider.lookup(classify(MAC))
    assert len(bodies(fake, GROUPS)) == 3


async def test_concurrent_lookups_share_one_group_read(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Lookups that need the same uncached family at once cause one group read."""
    provider = await make_provider()
    fake.inject("slow", path=GROUPS, delay=0.1)
    await asyncio.gather(*(provider.lookup(classify(s)) for s in (MAC, LIMBO, DELETED)))
    assert len(bodies(fake, GROUPS)) == 1


async def test_every_group_page_is_read_from_page_one(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Group pages count from 1 and are read until Mosyle's row count is reached."""
    fake.group_page_size = 1
    provider = await make_provider()
    record = await provider.lookup(classify(LIMBO))
    assert [b["options"]["page"] for b in bodies(fake, GROUPS)] == [1, 2, 3]
    assert record is not None
    assert [g.name for g in record.groups] == ["All Macs", "Quarantine"]


async def test_too_many_group_pages_fail_closed(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Truncated membership would let a none_of rule pass: more pages than allowed is an error."""
    fake.group_page_size = 1
    provider = await make_provider(max_group_pages=2)
    with pytest.raises(ProviderError, match="raise max_group_pages"):
        await provider.lookup(classify(LIMBO))


# --- the JWT ----------------------------------------------------------------------------------------


async def test_token_is_renewed_before_it_expires(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """A JWT is reused until `token_margin` before its ``exp``, then a new login follows."""
    clock = Clock()
    fake.token_lifetime = 1000
    provider = await make_provider(clock=clock, token_margin=300)
    await provider.lookup(classify(MAC))
    clock.now += 650
    await provider.lookup(classify(MAC))
    assert fake.logins == 1
    clock.now += 100
    await provider.lookup(classify(MAC))
    assert fake.logins == 2


async def test_jwt_without_exp_lives_the_documented_day(mosyle_url: str, fake: FakeMosyle) -> None:
    """Without an ``exp`` claim the token is kept for Mosyle's documented 24 hours."""
    fake.jwt_exp = False
    hook = RecordingHook()
    provider = build_provider("mosyle", mosyle_settings(mosyle_url), hooks=hook)
    try:
        await provider.start()
    finally:
        await provider.aclose()
    assert [(t.outcome, t.expires_in) for t in hook.tokens] == [("refreshed", 86400.0)]


async def test_rejected_jwt_is_replaced_once(make_provider: MakeProvider, fake: FakeMosyle) -> None:
    """A 401 on a call drops the JWT, logs in once more and repeats the call."""
    provider = await make_provider()
    fake.expire_tokens()
    assert await provider.lookup(classify(MAC)) is not None
    assert fake.logins == 2


@pytest.mark.parametrize(
    ("connections", "families", "lookups"),
    [(1, ["mac"], 1), (5, None, 2)],
    ids=["one-connection", "defaults-two-lookups"],
)
async def test_expired_jwt_in_a_busy_pool_is_renewed_without_deadlock(
    make_provider: MakeProvider,
    fake: FakeMosyle,
    connections: int,
    families: list[str] | None,
    lookups: int,
) -> None:
    """The login a rejected JWT needs never waits for a connection slot: the lookups waiting
    for the token hold them all (one connection; or two lookups of four families on five)."""
    families_set = {"os_families": families} if families else {}
    provider = await make_provider(max_connections=connections, budget=2, **families_set)
    fake.expire_tokens()
    results = await asyncio.wait_for(
        asyncio.gather(*(provider.lookup(classify(MAC)) for _ in range(lookups))), 1.5
    )
    assert all(r is not None for r in results)


async def test_persistent_401_fails_after_one_new_login(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """If a fresh JWT is refused too, the lookup fails instead of looping."""
    provider = await make_provider(os_families=["mac"])
    fake.inject("401", path=LIST, times=None)
    with pytest.raises(ProviderError, match="fresh token"):
        await provider.lookup(classify(MAC))
    assert fake.logins == 2


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"access_token": "wrong-access-token"}, "HTTP 401 on /login, Invalid accessToken"),
        (
            {"password": "wrong-password-value"},
            "HTTP 200 on /login, Invalid credentials, no token in the Authorization header",
        ),
    ],
    ids=["access-token", "password"],
)
async def test_refused_login_makes_start_fail_without_leaking(
    mosyle_url: str, overrides: dict[str, str], detail: str
) -> None:
    """A refused login leaves the provider not ready, says why, and never shows a secret."""
    hook = RecordingHook()
    provider = MosyleProvider("mosyle", mosyle_settings(mosyle_url, **overrides), hooks=hook)
    try:
        with capture_logs() as logs, pytest.raises(ProviderNotReady, match="refused the login"):
            await provider.start()
    finally:
        await provider.aclose()
    assert provider.ready is False
    assert [(t.outcome, t.detail) for t in hook.tokens] == [("refused", detail)]
    assert "wrong-" not in repr(logs)


async def test_access_token_revoked_after_login_is_an_error(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Mosyle's 200 answer with an ERROR status fails the lookup with Mosyle's code."""
    provider = await make_provider(os_families=["mac"])
    fake.access_tokens.clear()
    with pytest.raises(ProviderError, match=r"Mosyle answered 'ERROR' \(Invalid accessToken\)"):
        await provider.lookup(classify(MAC))


# --- failures, retries, limits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "retry_after"),
    [("429", "0"), ("429", None), ("502", None), ("503", "0"), ("504", None), ("reset", None)],
    ids=["429-retry-after", "429-bare", "502", "503-retry-after", "504", "connection-reset"],
)
async def test_transient_faults_are_retried(
    make_provider: MakeProvider, fake: FakeMosyle, kind: Any, retry_after: str | None
) -> None:
    """Throttling, gateway errors and dropped connections are retried, then the lookup works."""
    provider = await make_provider(os_families=["mac"])
    fake.inject(kind, path=LIST, retry_after=retry_after)
    assert await provider.lookup(classify(MAC)) is not None
    assert len(bodies(fake, LIST)) == 2


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("500", "unexpected HTTP 500"),
        ("404", "unexpected HTTP 404"),
        ("403", "may not read devices"),
        ("malformed", "malformed JSON"),
        ("html", "malformed JSON"),
    ],
)
async def test_hard_faults_fail_without_retry(
    make_provider: MakeProvider, fake: FakeMosyle, kind: Any, message: str
) -> None:
    """A 500, 404, 403, cut JSON or an HTML page is a ProviderError at once."""
    provider = await make_provider(os_families=["mac"])
    fake.inject(kind, path=LIST)
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(classify(MAC))
    assert len(bodies(fake, LIST)) == 1


async def test_failure_in_one_family_fails_the_lookup(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """Fail closed: an error on any family fails the lookup even if another found the device."""
    provider = await make_provider()
    fake.inject("500", path=LIST)
    with pytest.raises(ProviderError, match="500"):
        await provider.lookup(classify(MAC))


async def test_retries_are_bounded(make_provider: MakeProvider, fake: FakeMosyle) -> None:
    """A Mosyle that keeps answering 503 gets `retries` extra attempts, then a ProviderError."""
    provider = await make_provider(os_families=["mac"], retries=2)
    fake.inject("503", path=LIST, times=None)
    with pytest.raises(ProviderError, match="503"):
        await provider.lookup(classify(MAC))
    assert len(bodies(fake, LIST)) == 3


async def test_rate_limit_past_the_budget_fails_at_once(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """A Retry-After longer than the remaining budget is not waited for."""
    provider = await make_provider(os_families=["mac"], budget=1.0)
    fake.inject("429", path=LIST, retry_after="30")
    with pytest.raises(ProviderError, match="429"):
        await provider.lookup(classify(MAC))
    assert len(bodies(fake, LIST)) == 1


async def test_slow_mosyle_exceeds_the_lookup_budget(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """An answer slower than the whole-lookup budget becomes a ProviderError naming the budget."""
    provider = await make_provider(budget=0.3, read_timeout=5)
    fake.inject("slow", path=LIST, delay=1.0)
    with pytest.raises(ProviderError, match=r"exceeded its 0\.3s budget"):
        await provider.lookup(classify(MAC))


async def test_concurrency_limit_is_never_exceeded(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """However many lookups run at once, Mosyle never sees more than max_connections requests."""
    provider = await make_provider(max_connections=2, budget=8)
    fake.inject("slow", path="/v2/list", times=None, delay=0.05)
    fake.max_in_flight = 0
    serials = [MAC, IPHONE, IPAD, LIMBO, DELETED, "TVMSY0ATV01"]
    records = await asyncio.gather(*(provider.lookup(classify(s)) for s in serials))
    assert all(r is not None for r in records)
    assert fake.max_in_flight == 2


async def test_hooks_see_routes_and_the_token(mosyle_url: str, fake: FakeMosyle) -> None:
    """Hooks see route templates (never a serial) and the JWT's refresh with its lifetime."""
    hook = RecordingHook()
    provider = build_provider("mosyle", mosyle_settings(mosyle_url), hooks=hook)
    try:
        await provider.start()
        assert await provider.lookup(classify(MAC)) is not None
    finally:
        await provider.aclose()
    assert {(c.method, c.route) for c in hook.calls} == {
        ("POST", "/login"),
        ("POST", "/listdevices"),
        ("POST", "/listdevicegroupsdevices"),
    }
    assert [t.outcome for t in hook.tokens] == ["refreshed"]
    assert 86000 < (hook.tokens[0].expires_in or 0) <= 86400


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": None}, "password"),
        ({"os_families": []}, "os_families"),
        ({"os_families": ["watchos"]}, "os_families"),
        ({"url": "http://managerapi.mosyle.com/v2"}, "plain http is allowed only"),
        ({"enrolled_statuses": []}, "enrolled_statuses"),
    ],
    ids=["email", "no-password", "no-family", "bad-family", "plain-http", "no-status"],
)
def test_invalid_settings_are_rejected(overrides: dict[str, Any], problem: str) -> None:
    """Settings name the key at fault."""
    data = {
        "kind": "mosyle",
        "access_token": "a",
        "email": "api@example.com",
        "password": "p",
        **overrides,
    }
    with pytest.raises(ValidationError, match=problem):
        MosyleSettings.model_validate({k: v for k, v in data.items() if v is not None})


def test_defaults_point_at_mosyle_manager_and_hide_secrets() -> None:
    """The default URL is Mosyle Manager's v2 API; secrets never show in a repr."""
    settings = MosyleSettings.model_validate(
        {
            "kind": "mosyle",
            "access_token": "s3cr3t-access",
            "email": "api@example.com",
            "password": "s3cr3t-password",
            "os_families": ["mac", "ios", "mac"],
        }
    )
    assert settings.url == "https://managerapi.mosyle.com/v2"
    assert settings.os_families == ("mac", "ios")
    assert "s3cr3t" not in repr(settings)


# --- listing for sync mode ------------------------------------------------------------------------


async def test_listing_pages_through_every_family(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """`iter_devices` pages each family from 0 until Mosyle's row count, then the next family."""
    fake.page_size = 2
    provider = await make_provider()
    records = [r async for r in provider.iter_devices()]
    assert sorted(r.serial or "" for r in records) == sorted(
        d["serial_number"] for d in fake.devices
    )
    listed = [(b["options"]["os"], b["options"]["page"]) for b in bodies(fake, LIST)]
    assert listed == [("mac", 0), ("mac", 1), ("ios", 0), ("tvos", 0), ("visionos", 0)]


async def test_list_page_resumes_from_its_cursor(
    make_provider: MakeProvider, fake: FakeMosyle
) -> None:
    """The cursor names family and page; the last family's last page has none."""
    fake.page_size = 2
    provider = await make_provider(os_families=["mac", "tvos"])
    first = await provider.list_page(None)
    second = await provider.list_page(first.next_cursor)
    third = await provider.list_page(second.next_cursor)
    assert [first.next_cursor, second.next_cursor, third.next_cursor] == ["mac:1", "tvos:0", None]
    assert [len(p.records) for p in (first, second, third)] == [2, 1, 1]
    with pytest.raises(ProviderError, match="out of range"):
        await provider.list_page("watchos:0")


def test_mosyle_lists_for_sync_mode_and_resumes_by_page() -> None:
    """The provider is a DeviceLister and, with list_page, a resumable PagedLister."""
    assert issubclass(MosyleProvider, DeviceLister)
    assert issubclass(MosyleProvider, PagedLister)


async def test_sync_engine_copies_mosyle_into_the_store(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """A sync lists Mosyle page by page; the stored copy answers by UDID, which live cannot."""
    provider = await make_provider()
    devices, found = await sync_and_find("mosyle", provider, tmp_path, IPHONE_UDID)
    assert devices == 6
    assert found is not None
    assert found.groups == (GroupRef(name="MDA Pilot", id="310"),)


# --- through the whole webhook --------------------------------------------------------------------

PILOT = {"managed": True, "groups": {"any_of": ["MDA Pilot"], "none_of": ["Quarantine"]}}


def mosyle_table(url: str, **provider: Any) -> dict[str, Any]:
    """The ``[providers.mosyle]`` table for the fake."""
    base = {"kind": "mosyle", "url": url, "access_token": ACCESS_TOKEN, "email": EMAIL}
    return {**base, "password": PASSWORD, "backoff": 0.01, **provider}


@pytest.fixture
def service(aiohttp_client: Any, mosyle_url: str) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """Start the real app with the Mosyle provider pointed at the fake."""

    async def start(**provider: Any) -> TestClient[Any, Any]:
        mapping = provider_config("mosyle", mosyle_table(mosyle_url, **provider), PILOT)
        return await start_service(aiohttp_client, mapping)

    return start


@pytest.mark.parametrize(
    ("identifier", "path"),
    [(MAC, PEOPLE), (MAC, GATE), (IPHONE, PEOPLE)],
    ids=["mac-enriching", "mac-authorizing", "iphone"],
)
async def test_webhook_allows_managed_pilot_devices(
    service: Any, identifier: str, path: str
) -> None:
    """Managed devices in the pilot device group are allowed."""
    client = await service()
    assert (await call(client, identifier, path=path))["allow"] is True


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        (LIMBO, "device-unmanaged"),
        (DELETED, "device-unmanaged"),
        (IPAD, "group-required"),
        ("ZZZZ99999999", "device-not-found"),
        (IPHONE_UDID, "device-not-found"),
    ],
    ids=["limbo", "deleted", "out-of-group", "unknown", "udid"],
)
async def test_webhook_denies_with_distinct_codes(service: Any, identifier: str, code: str) -> None:
    """Limbo, deleted, out-of-group, unknown and UDID-attested devices are denied."""
    await assert_denied(await service(), identifier, code)


async def test_webhook_fails_closed_while_mosyle_fails(service: Any, fake: FakeMosyle) -> None:
    """Any Mosyle failure denies with inventory-unavailable, and recovery allows again."""
    client = await service(retries=1)
    fake.inject("503", path=LIST, times=None)
    await assert_fails_closed_until_cleared(client, fake, MAC)


async def test_readyz_fails_with_a_refused_login(aiohttp_client: Any, mosyle_url: str) -> None:
    """A refused login makes /readyz answer 503 and logs no secret."""
    table = mosyle_table(mosyle_url, password="wrong-password-value")
    await assert_not_ready_without_secret(aiohttp_client, "mosyle", table, PILOT, table["password"])


async def test_cli_lookup_with_example_config(tmp_path: Path, mosyle_url: str) -> None:
    """`posture-connector lookup --config examples/mosyle.toml` decides against the fake Mosyle."""
    path = example_config(tmp_path, "mosyle", "http://127.0.0.1:9446/v2", mosyle_url)
    env = {"MOSYLE_ACCESS_TOKEN": ACCESS_TOKEN, "MOSYLE_PASSWORD": PASSWORD}
    allowed, denied = await cli_allowed_and_denied(path, env, MAC, LIMBO)
    assert "MDA Pilot" in allowed["data"]["groups"]
    assert denied["error"]["code"] == "device-unmanaged"


@pytest.mark.parametrize("live_first", [True, False])
async def test_a_deleted_record_tied_with_the_live_one_fails_the_lookup(
    make_provider: MakeProvider, fake: FakeMosyle, live_first: bool
) -> None:
    """Mosyle keeps a deleted record beside the device's new one, under the same UDID. With no
    contact on either, the order Mosyle listed them in decided: managed one way, unmanaged the
    other. Which is current cannot be told, so the lookup fails (closed)."""
    base = copy.deepcopy(fake.devices[0])
    base.update(
        serial_number="C02MSY0TIE01",
        deviceudid="9F2E4C11-0000-5000-8000-00000000AAAA",
        date_last_beat="0",
        date_info="",
        status="IN",
    )
    live, deleted = dict(base, is_deleted="0"), dict(base, is_deleted="1")
    fake.devices = [live, deleted] if live_first else [deleted, live]
    provider = await make_provider(device_groups=False)
    with pytest.raises(ProviderError, match="share the latest contact"):
        await provider.lookup(classify("C02MSY0TIE01"))
