"""The Google provider against the fake token endpoint and Directory API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from providers import preflight_problems
from providers.base import DeviceLister, ProviderError, ProviderNotReady
from providers.google import GoogleProvider, GoogleSettings
from providers.google._settings import SCOPE
from providers.identifiers import IdentifierKind, classify
from tests.example_configs import localized, lookup
from tests.fakes.google import (
    ANDROID,
    BLOCKED,
    CUSTOMER,
    DUPLICATE,
    EXCHANGE,
    IPAD,
    IPHONE,
    NEVER_SYNCED,
    NON_ADMIN,
    SUBJECT,
    FakeGoogle,
)
from tests.fakes.google import create_app as fake_app
from tests.fakes.provider_hooks import RecordingHook
from tests.helpers import AUTH_ID, FIXED_NOW, authorize, config, make_settings, signed
from tests.helpers import webhook as webhook_entry
from tests.vendor_support import providers_made, serial, served_url

MakeProvider = Callable[..., Awaitable[GoogleProvider]]


@pytest.fixture(scope="module")
def fake_key() -> FakeGoogle:
    """One fake (and its 2048-bit key) per module; tests reset what they change."""
    return FakeGoogle()


@pytest.fixture
def fake(fake_key: FakeGoogle) -> FakeGoogle:
    """A fresh fake customer that reuses the module's key."""
    return FakeGoogle(key=fake_key.key, key_id=fake_key.key_id)


@pytest.fixture
async def google_url(aiohttp_server: Any, fake: FakeGoogle) -> str:
    """The fake on 127.0.0.1, port 0."""
    return await served_url(aiohttp_server, fake_app(fake))


@pytest.fixture
def key_file(tmp_path: Path, fake: FakeGoogle) -> Path:
    """The service account's JSON key, as downloaded from the Cloud console."""
    return fake.key_file(tmp_path)


def google_table(url: str, key: Path, **overrides: Any) -> dict[str, Any]:
    """A ``[providers.google]`` table pointing at the fake."""
    table = {
        "kind": "google",
        "service_account_file": str(key),
        "subject": SUBJECT,
        "token_url": f"{url}/token",
        "api_url": url,
        "budget": 3.0,
        "backoff": 0.01,
    }
    return table | overrides


@pytest.fixture
async def make_provider(google_url: str, key_file: Path) -> AsyncIterator[MakeProvider]:
    """Build providers against the fake; closed after the test."""

    def build(*, hooks: RecordingHook | None = None, **overrides: Any) -> GoogleProvider:
        settings = GoogleSettings.model_validate(google_table(google_url, key_file, **overrides))
        return GoogleProvider("google", settings, hooks=hooks or RecordingHook())

    async with providers_made(build) as make:
        yield make


# -- settings ------------------------------------------------------------------------------------


def test_defaults_are_googles_endpoints_and_my_customer(tmp_path: Path) -> None:
    """Without overrides the provider talks to Google's token endpoint and Admin SDK host."""
    settings = GoogleSettings.model_validate(
        {"kind": "google", "service_account_file": str(tmp_path / "k.json"), "subject": SUBJECT}
    )
    assert settings.token_url == "https://oauth2.googleapis.com/token"
    assert (settings.api_url, settings.customer_id) == (
        "https://admin.googleapis.com",
        "my_customer",
    )
    assert preflight_problems(settings) == [
        f"service_account_file: no such file: {tmp_path / 'k.json'}"
    ]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"token_url": "http://oauth2.example.com/token"}, "plain http"),
        ({"api_url": "https://admin.googleapis.com/admin"}, "no path"),
        ({"subject": "not-an-email"}, "subject"),
        ({"customer_id": "../other"}, "customer_id"),
        ({"page_size": 500}, "page_size"),
    ],
    ids=["http-remote", "api-with-path", "subject", "customer", "page-size"],
)
def test_invalid_settings_are_refused(
    tmp_path: Path, overrides: dict[str, Any], problem: str
) -> None:
    """Settings that would leak a token, hit a wrong path or break paging do not load."""
    with pytest.raises(ValidationError, match=problem):
        GoogleSettings.model_validate(
            google_table("https://oauth2.googleapis.com", tmp_path / "k.json", **overrides)
        )


# -- lookups -------------------------------------------------------------------------------------


async def test_approved_iphone_is_found_by_serial(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """An approved iPhone is found with its owner, from a FULL serial search."""
    provider = await make_provider()
    record = await provider.lookup(serial(IPHONE))
    assert record is not None
    assert (record.serial, record.managed, record.platform) == (IPHONE, True, "iOS")
    assert record.user is not None
    assert record.user.email == "anika.sharma@example.com"
    query = dict(fake.board.logged("/admin/")[-1].query)
    assert (query["query"], query["projection"]) == (f"serial:{IPHONE}", "FULL")


async def test_loose_search_never_returns_a_longer_serial(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """The search also finds a serial that starts alike; only the exact one is answered."""
    provider = await make_provider()
    record = await provider.lookup(serial(IPHONE))
    assert record is not None
    assert record.user is not None
    assert record.user.full_name == "Anika Sharma"
    fake.devices = [d for d in fake.devices if d["serialNumber"] != IPHONE]
    assert await provider.lookup(serial(IPHONE)) is None


@pytest.mark.parametrize(
    ("identifier", "managed", "platform"),
    [
        (BLOCKED, False, "iOS"),
        (EXCHANGE, False, "iOS"),
        (IPAD, True, "iPadOS"),
        (ANDROID, True, "Android"),
    ],
    ids=["blocked", "exchange-only", "ipad", "android"],
)
async def test_status_and_type_decide_managed(
    make_provider: MakeProvider, identifier: str, managed: bool, platform: str
) -> None:
    """Blocked and Exchange-only devices are unmanaged; approved ones managed."""
    record = await (await make_provider()).lookup(serial(identifier))
    assert record is not None
    assert (record.managed, record.platform) == (managed, platform)


async def test_reregistered_device_latest_sync_wins(make_provider: MakeProvider) -> None:
    """Two records for one serial resolve to the latest sync, with a warning."""
    provider = await make_provider()
    with capture_logs() as logs:
        record = await provider.lookup(serial(DUPLICATE))
    assert record is not None
    assert record.record_id == "AFiQxQ80008"
    assert any(e["event"] == "provider.duplicate_records" for e in logs)


async def test_never_synced_device_has_no_last_contact(make_provider: MakeProvider) -> None:
    """A lastSync at the epoch means never synced: last_contact is None."""
    record = await (await make_provider()).lookup(serial(NEVER_SYNCED))
    assert record is not None
    assert record.last_contact is None


async def test_unknown_serial_is_none(make_provider: MakeProvider) -> None:
    """A search without matches (no mobiledevices key at all) is "not in this inventory"."""
    assert await (await make_provider()).lookup(serial("ZZZZ00000000")) is None


async def test_udid_is_never_searched(make_provider: MakeProvider, fake: FakeGoogle) -> None:
    """Google has no UDIDs: a UDID is answered "not found" without a request."""
    provider = await make_provider()
    before = len(fake.board.requests)
    with capture_logs() as logs:
        found = await provider.lookup(
            classify("00008110-000A1C2E3F40801E", frozenset({IdentifierKind.UDID}))
        )
    assert found is None
    assert len(fake.board.requests) == before
    assert any(e["event"] == "provider.udid_not_searchable" for e in logs)


async def test_too_many_pages_of_matches_fail_closed(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """A serial search running past max_pages is an error, never a truncated answer."""
    provider = await make_provider(page_size=1, max_pages=1)
    with pytest.raises(ProviderError, match="more than 1 pages"):
        await provider.lookup(serial(IPHONE))


async def test_customer_id_is_used_in_the_path(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """A configured customer id replaces my_customer in the request path."""
    provider = await make_provider(customer_id=CUSTOMER)
    assert await provider.lookup(serial(IPHONE)) is not None
    assert fake.board.requests[-1].path.startswith(f"/admin/directory/v1/customer/{CUSTOMER}/")


# -- credentials ---------------------------------------------------------------------------------


async def test_assertion_names_the_subject_scope_and_key(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """The token request is a JWT-bearer grant the fake verified (signature, kid, sub, scope)."""
    provider = await make_provider()
    assert provider.ready
    assert fake.token_requests == 1
    assert set(fake.valid_tokens.values()) == {SUBJECT}


async def test_undelegated_scope_makes_start_fail(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """Without the scope delegated, Google answers unauthorized_client: not ready, explained."""
    fake.delegated_scopes = set()
    hooks = RecordingHook()
    with pytest.raises(ProviderNotReady, match="unauthorized_client") as info:
        await make_provider(hooks=hooks)
    assert "not authorized for any of the scopes" in str(info.value)
    assert [t.outcome for t in hooks.tokens] == ["refused"]


async def test_unknown_subject_makes_start_fail(make_provider: MakeProvider) -> None:
    """A subject Google does not know is invalid_grant."""
    with pytest.raises(ProviderNotReady, match="Invalid email or User ID"):
        await make_provider(subject="nobody@example.com")


async def test_subject_without_admin_role_is_refused_by_the_api(
    make_provider: MakeProvider,
) -> None:
    """A token for a non-admin is granted, but start fails on the 403 with a hint."""
    with pytest.raises(ProviderNotReady, match="admin privilege"):
        await make_provider(subject=NON_ADMIN)


async def test_other_key_is_refused_without_leaking_it(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """A key the service account does not have is refused; no key material in the message."""
    stranger = FakeGoogle()
    path = stranger.key_file(tmp_path, "other.json")
    with pytest.raises(ProviderNotReady, match="Invalid JWT Signature") as info:
        await make_provider(service_account_file=str(path))
    assert "PRIVATE KEY" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "is not JSON"),
        (json.dumps({"type": "service_account"}), "lacks"),
        (
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_email": "a",
                    "private_key_id": "b",
                    "private_key": "c",
                }
            ),
            "not a service_account key",
        ),
        (
            json.dumps(
                {
                    "type": "service_account",
                    "client_email": "a",
                    "private_key_id": "b",
                    "private_key": "c",
                }
            ),
            "not a PEM private key",
        ),
    ],
    ids=["garbage", "fields-missing", "user-credentials", "bad-pem"],
)
async def test_unusable_key_file_is_not_ready(
    make_provider: MakeProvider, tmp_path: Path, content: str, problem: str
) -> None:
    """A key file that is not a service account key leaves the provider not ready."""
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ProviderNotReady, match=problem):
        await make_provider(service_account_file=str(path))


async def test_expired_token_is_renewed_once(make_provider: MakeProvider, fake: FakeGoogle) -> None:
    """A token Google dropped is renewed once and the lookup succeeds."""
    provider = await make_provider()
    fake.expire_tokens()
    assert await provider.lookup(serial(IPHONE)) is not None
    assert fake.token_requests == 2


# -- throttling and faults -----------------------------------------------------------------------


async def test_403_rate_limit_is_retried_like_a_429(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """Google's 403 userRateLimitExceeded is throttling: retried with backoff, then found."""
    hooks = RecordingHook()
    provider = await make_provider(hooks=hooks)
    fake.rate_limited = 2
    assert await provider.lookup(serial(IPHONE)) is not None
    assert [r.reason for r in hooks.retries] == ["status 403", "status 403"]


async def test_429_with_retry_after_is_honoured(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """A 429 with Retry-After waits exactly that long, reported as rate limited."""
    hooks = RecordingHook()
    provider = await make_provider(hooks=hooks)
    fake.board.inject("429", "/admin/", retry_after="0")
    assert await provider.lookup(serial(IPHONE)) is not None
    assert [(r.rate_limited, r.wait) for r in hooks.retries] == [(True, 0.0)]


async def test_persistent_rate_limit_fails_within_the_budget(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """Throttling that does not end fails after the configured retries."""
    provider = await make_provider(retries=1)
    fake.rate_limited = 5
    with pytest.raises(ProviderError, match="403"):
        await provider.lookup(serial(IPHONE))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("403", "admin privilege"),
        ("404", "customer_id"),
        ("500", "unexpected HTTP 500"),
        ("malformed", "malformed JSON"),
        ("401", "refused a fresh token"),
    ],
)
async def test_hard_faults_fail_closed(
    make_provider: MakeProvider, fake: FakeGoogle, kind: Any, message: str
) -> None:
    """Refusals, server errors and cut bodies are ProviderErrors with a readable reason."""
    provider = await make_provider()
    fake.board.inject(kind, "/admin/", times=None)
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(serial(IPHONE))


async def test_slow_api_exceeds_the_budget(make_provider: MakeProvider, fake: FakeGoogle) -> None:
    """A Directory API slower than the budget fails the lookup at the budget."""
    provider = await make_provider(budget=0.3)
    fake.board.inject("slow", "/admin/", delay=1.0)
    with pytest.raises(ProviderError, match="budget"):
        await provider.lookup(serial(IPHONE))


# -- listing -------------------------------------------------------------------------------------


async def test_listing_follows_page_tokens(make_provider: MakeProvider, fake: FakeGoogle) -> None:
    """iter_devices reads every page of the customer's devices, without a query."""
    provider = await make_provider(page_size=4)
    assert isinstance(provider, DeviceLister)
    records = [r async for r in provider.iter_devices()]
    assert len(records) == len(fake.devices)
    listed = [r for r in fake.board.logged("/admin/") if "query" not in dict(r.query)]
    assert len(listed) == 1 + 3  # start's probe, then three pages of 4, 4 and 3


async def test_a_listing_whose_page_tokens_loop_fails(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """A nextPageToken that repeats an earlier one would list forever (and the same devices
    again and again): the listing fails after one round instead."""
    fake.looping_pages = True
    provider = await make_provider(page_size=4)
    assert isinstance(provider, DeviceLister)
    with pytest.raises(ProviderError, match="pages loop"):
        _ = [r async for r in provider.iter_devices()]
    listed = [r for r in fake.board.logged("/admin/") if "query" not in dict(r.query)]
    assert len(listed) == 1 + 2  # start's probe, then the first page and the second once


# -- the whole webhook ---------------------------------------------------------------------------


async def test_webhook_allows_approved_iphone_and_denies_blocked(
    aiohttp_client: Any, google_url: str, key_file: Path, fake: FakeGoogle
) -> None:
    """Through step-ca's AUTHORIZING call: approved allowed, blocked denied, outage fails closed."""
    mapping = config(
        Path("unused.csv"),
        providers={"google": google_table(google_url, key_file)},
        webhooks=[
            webhook_entry(providers=("google",)),
            webhook_entry(
                "gate", "AUTHORIZING", providers=("google",), identifier_kinds=["serial"]
            ),
        ],
    )
    app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()

    async def gate(identifier: str) -> Any:
        body = authorize(identifier)
        response = await client.post(
            "/webhooks/gate", data=body, headers=signed(body, webhook_id=AUTH_ID)
        )
        return await response.json()

    assert (await gate(IPHONE))["allow"] is True
    assert (await gate(BLOCKED))["error"]["code"] == "device-unmanaged"
    fake.board.inject("503", "/admin/", times=None)
    assert (await gate(IPAD))["error"]["code"] == "inventory-unavailable"


def test_scope_is_the_read_only_mobile_device_scope() -> None:
    """The provider asks for read-only mobile devices and nothing else."""
    assert SCOPE == "https://www.googleapis.com/auth/admin.directory.device.mobile.readonly"


async def test_example_config_decides_against_the_fake(
    tmp_path: Path, google_url: str, key_file: Path
) -> None:
    """examples/google.toml, pointed at the fake, allows the approved iPhone only."""
    config_path = localized(
        "google.toml",
        tmp_path,
        {"http://127.0.0.1:9446": google_url, '".google-sa.json"': f'"{key_file}"'},
    )
    allowed, blocked, mail_only = await asyncio.gather(
        lookup(config_path, "people", IPHONE),
        lookup(config_path, "people", BLOCKED),
        lookup(config_path, "people", EXCHANGE),
    )
    assert allowed[0] == 0, allowed[1]
    assert allowed[1]["reply"]["data"]["device"]["platform"] == "iOS"
    assert blocked[1]["reply"]["error"]["code"] == "device-unmanaged"
    assert mail_only[1]["reply"]["error"]["code"] == "device-unmanaged"


async def test_non_apple_identifier_is_not_searched(
    make_provider: MakeProvider, fake: FakeGoogle
) -> None:
    """A YubiKey serial never reaches Google."""
    provider = await make_provider()
    before = len(fake.board.requests)
    assert (
        await provider.lookup(classify("12345678", frozenset({IdentifierKind.YUBIKEY_SERIAL})))
        is None
    )
    assert len(fake.board.requests) == before
