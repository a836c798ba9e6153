"""The Intune provider against the fake Graph: token, lookups, mapping, faults, whole webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from structlog.testing import capture_logs

from connector.settings import load_settings
from connector.sync import PagedLister
from providers import build_provider, preflight_problems
from providers.base import DeviceLister, GroupRef, ProviderError, ProviderNotReady, UserRecord
from providers.identifiers import DeviceIdentifier, IdentifierKind, classify
from providers.intune import IntuneProvider, IntuneSettings, odata_string
from tests.fakes.graph import FakeGraph, Fault, create_app
from tests.fakes.provider_hooks import RecordingHook
from tests.helpers import AUTH_ID, ENRICH_ID, authorize, enrich, signed, webhook
from tests.provider_webhook import sync_and_find

DEVICES = Path(__file__).parent / "fakes" / "graph_devices.json"
TENANT = "8a7f3c2e-1b4d-4e6f-9a0b-2c3d4e5f6a7b"
CLIENT_ID = "5d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a"
CLIENT_SECRET = "fake-graph-client-secret"
CERT_CLIENT_ID = "6e2f3a4b-5c6d-4e7f-9a8b-0c1d2e3f4a5b"

ANIKA_IPHONE = "F17ZK8XJN72Q"
BEN_MAC = "C02FK3Q7MD6T"
CHEN_IPAD = "DMPXK2Q1HJKT"
DANA_PERSONAL = "G6TZM9XQ0D4F"
LOBBY_IPAD = "H4KP7Q2XLMN8"
EAS_ONLY = "J9QW3E5R7T1Y"
DELETED_USER = "K2LM4N6P8Q0R"
REENROLLED = "L7MN2P4Q6R8S"
JAILBROKEN = "M3NB5V7C9X1Z"
ANIKA_GROUPS = ["MDA-Pilot-Users", "All Staff", "Engineering", "SRE On-Call", "VPN Users"]

MakeProvider = Callable[..., Awaitable[IntuneProvider]]


def serial(value: str) -> DeviceIdentifier:
    """A serial identifier as the webhook would pass it."""
    return classify(value, frozenset({IdentifierKind.SERIAL}))


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeGraph:
    """The tenant of ``graph_devices.json``."""
    return FakeGraph.from_file(DEVICES)


@pytest.fixture
async def graph_url(aiohttp_server: Any, fake: FakeGraph) -> str:
    """The fake Graph (and Entra token endpoint) on 127.0.0.1, port 0."""
    server = await aiohttp_server(create_app(fake))
    return str(server.make_url("")).rstrip("/")


def intune_table(url: str, **overrides: Any) -> dict[str, Any]:
    """A ``[providers.intune]`` table pointing at the fake, with fast retries."""
    return {
        "kind": "intune",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority_host": url,
        "graph_host": url,
        "budget": 3.0,
        "backoff": 0.01,
        **overrides,
    }


@pytest.fixture
async def make_provider(graph_url: str) -> AsyncIterator[MakeProvider]:
    """Build providers against the fake; closed after the test."""
    made: list[IntuneProvider] = []

    async def make(
        *,
        clock: Callable[[], float] | None = None,
        now: Callable[[], dt.datetime] | None = None,
        hooks: RecordingHook | None = None,
        **overrides: Any,
    ) -> IntuneProvider:
        settings = IntuneSettings.model_validate(intune_table(graph_url, **overrides))
        options: dict[str, Any] = {"clock": clock, "now": now, "hooks": hooks}
        provider = IntuneProvider(
            "intune", settings, **{k: v for k, v in options.items() if v is not None}
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def write_certificate(
    folder: Path, name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
) -> tuple[Path, Path, x509.Certificate]:
    """A self-signed certificate and its PEM key, as an admin uploads to the app registration."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"posture-connector {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    """Captured log events with this name."""
    return [e for e in logs if e["event"] == name]


# -- settings ------------------------------------------------------------------------------


def test_national_cloud_hosts_set_token_url_and_scope() -> None:
    """The authority and Graph hosts decide the token endpoint and the ``/.default`` scope."""
    settings = IntuneSettings.model_validate(
        intune_table(
            "https://login.microsoftonline.us/",
            graph_host="https://graph.microsoft.us",
        )
    )
    assert settings.token_url == f"https://login.microsoftonline.us/{TENANT}/oauth2/v2.0/token"
    assert settings.scope == "https://graph.microsoft.us/.default"


def test_default_hosts_are_the_global_cloud() -> None:
    """Without hosts the provider talks to login.microsoftonline.com and graph.microsoft.com."""
    settings = IntuneSettings(
        kind="intune", tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    assert settings.token_url.startswith("https://login.microsoftonline.com/")
    assert settings.scope == "https://graph.microsoft.com/.default"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"graph_host": "http://graph.example.com"}, "plain http"),
        ({"authority_host": "https://login.example.com/tenant"}, "no path"),
        ({"client_secret": None}, "give client_secret"),
        ({"certificate": "a.crt", "private_key": "a.key"}, "not both"),
        ({"client_secret": None, "certificate": "a.crt"}, "go together"),
        ({"tenant_id": "../other"}, "tenant_id"),
        ({"client_id": "not-a-guid"}, "client_id"),
        ({"budget": 12}, "budget"),
    ],
    ids=[
        "http-remote",
        "host-with-path",
        "no-credential",
        "two-credentials",
        "cert-without-key",
        "tenant-shape",
        "client-shape",
        "budget-over-9s",
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    """Settings that would leak a secret, hit the wrong URL or break the budget do not load."""
    with pytest.raises(ValidationError) as info:
        IntuneSettings.model_validate(intune_table("https://graph.microsoft.com", **overrides))
    assert message in str(info.value)


def test_settings_repr_hides_the_secret() -> None:
    """The client secret never shows in a repr."""
    settings = IntuneSettings.model_validate(intune_table("https://graph.microsoft.com"))
    assert CLIENT_SECRET not in repr(settings)


def test_odata_string_doubles_single_quotes() -> None:
    """OData string literals are single-quoted with embedded quotes doubled."""
    assert odata_string("C02FK3Q7MD6T") == "'C02FK3Q7MD6T'"
    assert odata_string("O'Brien''s") == "'O''Brien''''s'"


# -- token ---------------------------------------------------------------------------------


async def test_start_fetches_a_token_and_becomes_ready(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A granted token makes the provider ready and is logged without its value."""
    provider = await make_provider()
    assert provider.ready is False
    with capture_logs() as logs:
        await provider.start()
    assert provider.ready is True
    assert fake.token_fetches == 1
    assert events(logs, "provider.token_refreshed") == [
        {
            "event": "provider.token_refreshed",
            "log_level": "info",
            "provider": "intune",
            "expires_in": 3599,
            "credential": "secret",
        }
    ]


@pytest.mark.parametrize(
    ("overrides", "code", "error"),
    [
        ({"client_secret": "wrong-secret-value"}, "AADSTS7000215", "invalid_client"),
        ({"client_id": "00000000-1111-4222-8333-444444444444"}, "AADSTS700016", "unauthorized"),
        ({"tenant_id": "fabrikam.onmicrosoft.com"}, "AADSTS90002", "invalid_request"),
    ],
    ids=["wrong-secret", "unknown-app", "unknown-tenant"],
)
async def test_refused_credentials_make_start_not_ready(
    make_provider: MakeProvider, overrides: dict[str, Any], code: str, error: str
) -> None:
    """Entra's refusal is ProviderNotReady with the AADSTS text, no trace ids, no secret."""
    provider = await make_provider(**overrides)
    with capture_logs() as logs, pytest.raises(ProviderNotReady) as info:
        await provider.start()
    assert code in info.value.message
    assert error in info.value.message
    assert "Trace ID" not in info.value.message
    assert provider.ready is False
    (failed,) = events(logs, "provider.token_failed")
    assert code in failed["error"]
    assert "wrong-secret-value" not in repr(logs) + info.value.message


async def test_lookup_after_refused_credentials_fails_closed(make_provider: MakeProvider) -> None:
    """A lookup while Entra refuses the app raises ProviderError, never answers."""
    provider = await make_provider(client_secret="wrong-secret-value")
    with pytest.raises(ProviderError, match="AADSTS7000215"):
        await provider.lookup(serial(ANIKA_IPHONE))


async def test_token_endpoint_outage_at_start_is_not_ready(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A 503 from Entra at start is retried, then reported as ProviderNotReady."""
    fake.faults.extend([Fault(503, path="oauth2")] * 3)
    provider = await make_provider(retries=2)
    with pytest.raises(ProviderNotReady, match="503"):
        await provider.start()
    assert fake.token_fetches == 3


async def test_certificate_credential_gets_a_token(
    make_provider: MakeProvider, fake: FakeGraph, tmp_path: Path
) -> None:
    """A PS256 client assertion with the certificate's x5t#S256 is accepted by Entra."""
    cert_path, key_path, cert = write_certificate(tmp_path, "app")
    fake.certificates[CERT_CLIENT_ID] = cert
    provider = await make_provider(
        client_id=CERT_CLIENT_ID,
        client_secret=None,
        certificate=str(cert_path),
        private_key=str(key_path),
    )
    with capture_logs() as logs:
        record = await provider.lookup(serial(ANIKA_IPHONE))
    assert record is not None
    assert provider.ready is True
    assert events(logs, "provider.token_refreshed")[0]["credential"] == "certificate"


async def test_unregistered_certificate_is_refused(
    make_provider: MakeProvider, fake: FakeGraph, tmp_path: Path
) -> None:
    """An assertion signed by a certificate the app does not have is AADSTS700027."""
    _, _, registered = write_certificate(tmp_path, "registered")
    cert_path, key_path, _ = write_certificate(tmp_path, "other")
    fake.certificates[CERT_CLIENT_ID] = registered
    provider = await make_provider(
        client_id=CERT_CLIENT_ID,
        client_secret=None,
        certificate=str(cert_path),
        private_key=str(key_path),
    )
    with pytest.raises(ProviderNotReady, match="AADSTS700027"):
        await provider.start()


async def test_key_that_does_not_match_the_certificate_is_not_ready(
    make_provider: MakeProvider, fake: FakeGraph, tmp_path: Path
) -> None:
    """A private key from another pair is caught locally, before Entra is asked."""
    cert_path, _, _ = write_certificate(tmp_path, "one")
    _, key_path, _ = write_certificate(tmp_path, "two")
    provider = await make_provider(
        client_id=CERT_CLIENT_ID,
        client_secret=None,
        certificate=str(cert_path),
        private_key=str(key_path),
    )
    with pytest.raises(ProviderNotReady, match="does not match"):
        await provider.start()
    assert fake.token_fetches == 0


async def test_non_rsa_key_is_not_ready(make_provider: MakeProvider, tmp_path: Path) -> None:
    """Entra certificate credentials are RSA; an EC key is refused with a clear reason."""
    cert_path, key_path, _ = write_certificate(
        tmp_path, "ec", key=ec.generate_private_key(ec.SECP256R1())
    )
    provider = await make_provider(
        client_id=CERT_CLIENT_ID,
        client_secret=None,
        certificate=str(cert_path),
        private_key=str(key_path),
    )
    with pytest.raises(ProviderNotReady, match="RSA"):
        await provider.start()


async def test_client_assertion_uses_the_injected_clock(
    make_provider: MakeProvider, fake: FakeGraph, tmp_path: Path
) -> None:
    """The assertion's times come from the provider's `now`: a stale clock is refused by Entra."""
    cert_path, key_path, cert = write_certificate(tmp_path, "app")
    fake.certificates[CERT_CLIENT_ID] = cert
    hook = RecordingHook()
    provider = await make_provider(
        now=lambda: dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        hooks=hook,
        client_id=CERT_CLIENT_ID,
        client_secret=None,
        certificate=str(cert_path),
        private_key=str(key_path),
    )
    with pytest.raises(ProviderNotReady, match="AADSTS700024"):
        await provider.start()
    (refused,) = hook.tokens
    assert refused.outcome == "refused"
    assert refused.detail is not None
    assert "AADSTS700024" in refused.detail


def test_missing_certificate_files_are_found_before_start(tmp_path: Path) -> None:
    """check-config names a certificate or key file that does not exist."""
    settings = IntuneSettings.model_validate(
        intune_table(
            "https://graph.microsoft.com",
            client_secret=None,
            certificate=str(tmp_path / "app.crt"),
            private_key=str(tmp_path / "app.key"),
            ca_bundle=str(tmp_path / "ca.pem"),
        )
    )
    assert preflight_problems(settings) == [
        f"ca_bundle: no such file: {tmp_path / 'ca.pem'}",
        f"certificate: no such file: {tmp_path / 'app.crt'}",
        f"private_key: no such file: {tmp_path / 'app.key'}",
    ]


def test_intune_is_a_paged_device_lister() -> None:
    """Intune lists every managed device for sync mode, page by page (see test_intune_listing)."""
    assert issubclass(IntuneProvider, DeviceLister)
    assert issubclass(IntuneProvider, PagedLister)


async def test_concurrent_lookups_share_one_token_fetch(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Twenty lookups racing on a cold cache cause exactly one token request."""
    fake.token_delay = 0.05
    provider = await make_provider(user_groups=False)
    records = await asyncio.gather(*(provider.lookup(serial(ANIKA_IPHONE)) for _ in range(20)))
    assert all(r is not None and r.serial == ANIKA_IPHONE for r in records)
    assert fake.token_fetches == 1


async def test_token_is_refreshed_before_it_expires(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A cached token is reused until two minutes before expiry, then replaced."""
    clock = FakeClock()
    fake.token_lifetime = 600
    provider = await make_provider(clock=clock, user_groups=False)
    await provider.lookup(serial(ANIKA_IPHONE))
    clock.now += 470
    await provider.lookup(serial(ANIKA_IPHONE))
    assert fake.token_fetches == 1
    clock.now += 20
    await provider.lookup(serial(ANIKA_IPHONE))
    assert fake.token_fetches == 2


async def test_expired_token_is_replaced_once_and_the_lookup_succeeds(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A 401 InvalidAuthenticationToken drops the token and retries once with a new one."""
    provider = await make_provider(user_groups=False)
    await provider.start()
    fake.expire_tokens()
    with capture_logs() as logs:
        record = await provider.lookup(serial(ANIKA_IPHONE))
    assert record is not None
    assert fake.token_fetches == 2
    assert [r.status for r in fake.graph_requests("managedDevices")] == [401, 200]
    (rejected,) = events(logs, "provider.token_rejected")
    assert rejected["code"] == "InvalidAuthenticationToken"


async def test_token_refused_twice_fails_closed(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A second 401 after a fresh token is an error, not a loop."""
    fake.faults.extend([Fault(401, path="managedDevices")] * 2)
    provider = await make_provider()
    with pytest.raises(ProviderError, match="401 InvalidAuthenticationToken"):
        await provider.lookup(serial(ANIKA_IPHONE))
    assert len(fake.graph_requests("managedDevices")) == 2


# -- lookups and mapping -------------------------------------------------------------------


async def test_compliant_company_iphone_is_fully_mapped(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Device fields, the Entra user with department and title, and the user's groups."""
    provider = await make_provider()
    record = await provider.lookup(serial(ANIKA_IPHONE))
    assert record is not None
    assert record.provider == "intune"
    assert record.record_id == "3c9b7f0e-52d4-4e8a-9b1f-0d6a2e4c8f11"
    assert record.serial == ANIKA_IPHONE
    assert record.udid is None  # list answers carry no UDID; fetch_udid is off
    assert record.name == "Anika's iPhone"
    assert (record.platform, record.os_version, record.model) == ("iOS", "18.3.1", "iPhone 15 Pro")
    assert record.managed is True
    assert record.compliance == "compliant"
    assert record.owner_type == "company"
    assert record.supervised is True
    assert record.jailbroken is False
    assert record.last_contact == dt.datetime(2025, 3, 14, 9, 20, 55, tzinfo=dt.UTC)
    assert record.user == UserRecord(
        username="anika.sharma@example.com",
        email="anika.sharma@example.com",
        full_name="Anika Sharma",
        department="Platform Engineering",
        title="Site Reliability Engineer",
        id="7e1d2c3b-4a5f-4e6d-8c7b-9a0f1e2d3c4b",
    )
    assert [g.name for g in record.groups] == ANIKA_GROUPS
    assert record.groups[0] == GroupRef(
        name="MDA-Pilot-Users", id="0b8f3e2a-7c1d-4e5f-8a9b-0c1d2e3f4a5b"
    )


async def test_device_query_uses_filter_select_and_group_cast_headers(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """The serial is an OData literal, fields are $select-ed, the cast sends eventual+$count."""
    provider = await make_provider()
    await provider.lookup(serial(ANIKA_IPHONE))
    (device_call,) = fake.graph_requests("managedDevices")
    assert device_call.query["$filter"] == f"serialNumber eq '{ANIKA_IPHONE}'"
    assert {"complianceState", "managementAgent", "jailBroken", "azureADDeviceId"} <= set(
        device_call.query["$select"].split(",")
    )
    (user_call,) = [r for r in fake.graph_requests("/users/") if "transitive" not in r.path]
    assert {"department", "jobTitle"} <= set(user_call.query["$select"].split(","))
    (groups_call,) = fake.graph_requests("transitiveMemberOf")
    assert groups_call.path.endswith("/transitiveMemberOf/microsoft.graph.group")
    assert groups_call.consistency_level == "eventual"
    assert groups_call.query["$count"] == "true"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (BEN_MAC, ("noncompliant", "company", None, True)),
        (CHEN_IPAD, ("inGracePeriod", "company", False, True)),
        (DANA_PERSONAL, ("compliant", "personal", False, True)),
        (JAILBROKEN, ("noncompliant", None, True, True)),
        (EAS_ONLY, ("unknown", "company", None, False)),
    ],
    ids=["noncompliant", "grace-period", "personal", "jailbroken-unknown-owner", "eas-only"],
)
async def test_compliance_owner_jailbreak_and_management_are_mapped(
    make_provider: MakeProvider,
    value: str,
    expected: tuple[str, str | None, bool | None, bool],
) -> None:
    """complianceState passes through; unknown owner and "Unknown" jailbreak become None."""
    provider = await make_provider(user_groups=False)
    record = await provider.lookup(serial(value))
    assert record is not None
    assert (record.compliance, record.owner_type, record.jailbroken, record.managed) == expected


async def test_userless_device_has_no_user_and_no_user_calls(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A shared device without user affinity maps to user None; unset dates become None."""
    provider = await make_provider()
    record = await provider.lookup(serial(LOBBY_IPAD))
    assert record is not None
    assert record.user is None
    assert record.groups == ()
    assert record.last_contact is None
    assert fake.graph_requests("/users/") == []


async def test_deleted_user_falls_back_to_the_device_row(
    make_provider: MakeProvider,
) -> None:
    """When Graph no longer has the user, the device's own user fields are used, no groups."""
    provider = await make_provider()
    with capture_logs() as logs:
        record = await provider.lookup(serial(DELETED_USER))
    assert record is not None
    assert record.user == UserRecord(
        username="former.employee@example.com",
        email="former.employee@example.com",
        full_name="Former Employee",
        id="9f8e7d6c-5b4a-4938-8271-605f4e3d2c1b",
    )
    assert record.groups == ()
    assert events(logs, "provider.user_not_found")


async def test_unknown_serial_is_none(make_provider: MakeProvider) -> None:
    """A serial Intune does not know is "not in this inventory", not an error."""
    provider = await make_provider()
    assert await provider.lookup(serial("ZZZZ00000000")) is None


async def test_filter_ignored_by_graph_never_picks_another_device(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Only devices whose serial really matches count, whatever the list returned."""
    fake.ignore_filter = True
    provider = await make_provider()
    assert await provider.lookup(serial("ZZZZ00000000")) is None


async def test_reenrolled_device_picks_the_latest_sync(make_provider: MakeProvider) -> None:
    """Two records for one serial: the most recently synced wins and the choice is logged."""
    provider = await make_provider(user_groups=False)
    with capture_logs() as logs:
        record = await provider.lookup(serial(REENROLLED))
    assert record is not None
    assert record.record_id == "be7df586-da5c-4602-b39b-8f4ca02e6b99"
    assert record.compliance == "compliant"
    (dup,) = events(logs, "provider.duplicate_records")
    assert dup["count"] == 2


async def test_a_sync_time_without_an_offset_is_utc(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Of two records for one serial, one synced at a time Graph wrote without an offset: it is
    read as UTC and compared (naive against aware raised TypeError, failing the lookup)."""
    old, new = [d for d in fake.managed_devices if d["serialNumber"] == REENROLLED]
    old["lastSyncDateTime"] = "2020-01-01T00:00:00"
    provider = await make_provider(user_groups=False)
    record = await provider.lookup(serial(REENROLLED))
    assert record is not None
    assert record.record_id == new["id"]
    assert record.last_contact is not None
    assert record.last_contact.tzinfo is not None


async def test_groups_follow_every_next_link(make_provider: MakeProvider, fake: FakeGraph) -> None:
    """Paged memberships are followed to the end through the opaque nextLink."""
    fake.page_size = 2
    provider = await make_provider()
    record = await provider.lookup(serial(ANIKA_IPHONE))
    assert record is not None
    assert [g.name for g in record.groups] == ANIKA_GROUPS
    calls = fake.graph_requests("transitiveMemberOf")
    assert len(calls) == 3
    assert "$skiptoken" not in calls[0].query
    assert all("$skiptoken" in c.query for c in calls[1:])


async def test_too_many_group_pages_fail_closed(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Groups are never truncated: past max_group_pages the lookup is an error."""
    fake.page_size = 1
    provider = await make_provider(max_group_pages=3)
    with pytest.raises(ProviderError, match="max_group_pages"):
        await provider.lookup(serial(ANIKA_IPHONE))


async def test_next_link_to_another_host_is_refused(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """The bearer token is never sent to a host other than the configured Graph host."""
    fake.page_size = 2
    fake.next_link_origin = "https://attacker.example"
    provider = await make_provider()
    with pytest.raises(ProviderError, match="another host"):
        await provider.lookup(serial(ANIKA_IPHONE))


async def test_managed_devices_follow_every_next_link(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A device list split into pages is read to the end before the newest record is chosen."""
    fake.page_size = 1
    provider = await make_provider(user_groups=False)
    record = await provider.lookup(serial(REENROLLED))
    assert record is not None
    assert record.record_id == "be7df586-da5c-4602-b39b-8f4ca02e6b99"
    calls = fake.graph_requests("deviceManagement/managedDevices")
    assert len(calls) == 2
    assert "$skiptoken" in calls[1].query


async def test_managed_device_next_link_to_another_host_is_refused(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A device-list nextLink pointing elsewhere fails closed before the token goes there."""
    fake.page_size = 1
    fake.next_link_origin = "https://attacker.example"
    provider = await make_provider(user_groups=False)
    with pytest.raises(ProviderError, match="another host"):
        await provider.lookup(serial(REENROLLED))


async def test_endless_device_pages_fail_closed(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A filter answering page after page is bounded: past the limit the lookup is an error."""
    fake.page_size = 1
    fake.ignore_filter = True
    provider = await make_provider(user_groups=False)
    with pytest.raises(ProviderError, match="more than 5 pages of devices"):
        await provider.lookup(serial(ANIKA_IPHONE))
    assert len(fake.graph_requests("deviceManagement/managedDevices")) == 5


async def test_device_groups_add_the_entra_device_groups(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """With device_groups on, the Entra device (found by deviceId) adds its groups."""
    provider = await make_provider(device_groups=True)
    phone = await provider.lookup(serial(ANIKA_IPHONE))
    ipad = await provider.lookup(serial(LOBBY_IPAD))
    assert phone is not None
    assert ipad is not None
    assert [g.name for g in phone.groups] == [*ANIKA_GROUPS, "Corporate iPhones"]
    assert [g.name for g in ipad.groups] == ["Corporate Shared iPads"]
    filters = [r.query["$filter"] for r in fake.requests if r.path == "/v1.0/devices"]
    assert filters == [
        "deviceId eq 'b5e0d4c3-2a19-4f87-a6e5-d4c3b2a19087'",
        "deviceId eq 'c6f1e5d4-3b2a-4098-b7f6-e5d4c3b2a198'",
    ]


async def test_an_entra_filter_ignored_never_lends_another_devices_groups(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Graph answering every Entra device (the asked one last) still gives each device its
    own groups: the lobby iPad's group once made Anika's iPhone pass `any_of` on it."""
    fake.ignore_filter = True
    provider = await make_provider(device_groups=True)
    phone = await provider.lookup(serial(ANIKA_IPHONE))
    assert phone is not None
    assert [g.name for g in phone.groups] == [*ANIKA_GROUPS, "Corporate iPhones"]


async def test_a_managed_device_whose_entra_device_is_gone_fails_the_lookup(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Its device groups are unknown, not none: an iPhone an admin had put in a "Blocked"
    device group passed every ``none_of`` once its Entra object was deleted."""
    fake.entra_devices[:] = [
        d for d in fake.entra_devices if d["deviceId"] != "b5e0d4c3-2a19-4f87-a6e5-d4c3b2a19087"
    ]
    provider = await make_provider(device_groups=True)
    with pytest.raises(ProviderError, match="its device groups cannot be read"):
        await provider.lookup(serial(ANIKA_IPHONE))
    assert await provider.lookup(serial(LOBBY_IPAD)) is not None  # the others are found


async def test_a_listing_leaves_out_a_device_whose_entra_device_is_gone(
    make_provider: MakeProvider, fake: FakeGraph, tmp_path: Path
) -> None:
    """Sync mode: such a device is left out of the copy, as a lookup refuses it."""
    fake.entra_devices[:] = [
        d for d in fake.entra_devices if d["deviceId"] != "b5e0d4c3-2a19-4f87-a6e5-d4c3b2a19087"
    ]
    provider = await make_provider(device_groups=True)
    _, phone = await sync_and_find("intune", provider, tmp_path, ANIKA_IPHONE)
    _, ipad = await sync_and_find("intune", provider, tmp_path / "again", LOBBY_IPAD)
    assert phone is None
    assert ipad is not None


async def test_nil_azure_device_id_is_not_queried(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A device not registered in Entra (nil GUID) gets no device-group calls."""
    provider = await make_provider(device_groups=True)
    record = await provider.lookup(serial(BEN_MAC))
    assert record is not None
    assert [g.name for g in record.groups] == ["All Staff", "Cert-Blocked"]
    assert fake.graph_requests("/v1.0/devices") == []


async def test_fetch_udid_reads_it_by_device_id(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """With fetch_udid the UDID comes from a GET by id with $select=udid."""
    provider = await make_provider(fetch_udid=True, user_groups=False)
    record = await provider.lookup(serial(ANIKA_IPHONE))
    assert record is not None
    assert record.udid == "00008110-000A1C2E3F40801E"
    (by_id,) = fake.graph_requests("managedDevices/3c9b7f0e")
    assert by_id.query["$select"] == "id,udid"


# -- UDID identifiers ----------------------------------------------------------------------

UDID = classify("00008110-000A1C2E3F40801E")


async def test_udid_is_not_searched_by_default(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """By default a UDID is "not in this inventory" without a Graph call, and that is logged."""
    provider = await make_provider()
    with capture_logs() as logs:
        assert await provider.lookup(UDID) is None
    assert fake.requests == []
    assert events(logs, "provider.udid_not_searchable")


async def test_udid_filter_finds_and_confirms_the_device(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """udid_lookup = "filter" trusts a match only after the UDID fetched by id agrees."""
    fake.udid_filter = True
    provider = await make_provider(udid_lookup="filter", user_groups=False)
    record = await provider.lookup(UDID)
    assert record is not None
    assert record.serial == ANIKA_IPHONE
    assert record.udid == "00008110-000A1C2E3F40801E"
    assert len(fake.graph_requests("managedDevices/")) == 1


async def test_udid_filter_mismatch_is_not_found(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A list match whose real UDID differs is dropped and logged."""
    fake.ignore_filter = True
    fake.udid_filter = True
    fake.managed_devices = fake.managed_devices[:1]
    provider = await make_provider(udid_lookup="filter")
    with capture_logs() as logs:
        assert await provider.lookup(classify("00008101-0002A3B4C5D6E7F8")) is None
    assert events(logs, "provider.udid_mismatch")


async def test_udid_filter_refused_by_graph_fails_closed(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """If Graph rejects filtering on udid, the lookup errors with Graph's reason."""
    provider = await make_provider(udid_lookup="filter")
    with pytest.raises(ProviderError, match="400 BadRequest: Filtering on property 'udid'"):
        await provider.lookup(UDID)


async def test_other_identifier_kinds_are_not_intune_devices(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """YubiKey serials and TPM keys are answered None without calling Graph."""
    provider = await make_provider()
    assert await provider.lookup(classify("12345678")) is None
    assert fake.requests == []


async def test_unchecked_identifier_never_reaches_odata(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """An identifier that bypassed classify() is refused before any request."""
    provider = await make_provider()
    hostile = DeviceIdentifier("X' or serialNumber ne 'Y", IdentifierKind.SERIAL)
    with pytest.raises(ProviderError, match="unexpected shape"):
        await provider.lookup(hostile)
    assert fake.requests == []


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault(429, retry_after="0", path="managedDevices"), Fault(429, path="managedDevices")],
    ids=["retry-after-0", "no-retry-after"],
)
async def test_throttling_is_retried(
    make_provider: MakeProvider, fake: FakeGraph, fault: Fault
) -> None:
    """A 429, with or without Retry-After, is retried and the lookup succeeds."""
    fake.faults.append(fault)
    provider = await make_provider(user_groups=False)
    assert await provider.lookup(serial(ANIKA_IPHONE)) is not None
    assert [r.status for r in fake.graph_requests("managedDevices")] == [429, 200]


async def test_retry_after_beyond_the_budget_fails_at_once(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A Retry-After longer than the remaining budget is not waited for."""
    fake.faults.append(Fault(429, retry_after="30", path="managedDevices"))
    provider = await make_provider()
    with pytest.raises(ProviderError, match="429"):
        await provider.lookup(serial(ANIKA_IPHONE))
    assert len(fake.graph_requests("managedDevices")) == 1


async def test_persistent_503_stops_after_bounded_retries(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Graph down: 1 + retries attempts, then ProviderError."""
    provider = await make_provider(retries=2)
    await provider.start()
    fake.down = 503
    with pytest.raises(ProviderError, match="503"):
        await provider.lookup(serial(ANIKA_IPHONE))
    assert len(fake.graph_requests("managedDevices")) == 3


async def test_server_error_is_logged_readably_and_not_retried(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A 500 is parsed into code, message and request id, and becomes ProviderError."""
    fake.faults.append(Fault(500, path="managedDevices"))
    provider = await make_provider()
    with capture_logs() as logs, pytest.raises(ProviderError) as info:
        await provider.lookup(serial(ANIKA_IPHONE))
    assert info.value.message == "Graph answered 500 InternalServerError: Fake fault 500."
    (logged,) = events(logs, "provider.upstream_error")
    assert logged["status"] == 500
    assert logged["code"] == "InternalServerError"
    assert logged["path"] == "/v1.0/deviceManagement/managedDevices"
    assert len(logged["request_id"]) == 36
    assert len(fake.graph_requests("managedDevices")) == 1


async def test_missing_permission_on_groups_fails_closed(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A 403 on the group call fails the whole lookup (no allow on partial groups)."""
    fake.faults.append(Fault(403, path="transitiveMemberOf"))
    provider = await make_provider()
    with pytest.raises(ProviderError, match="403 Authorization_RequestDenied"):
        await provider.lookup(serial(ANIKA_IPHONE))


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault(200, path="managedDevices", body="malformed"), "malformed JSON"),
        (Fault(200, path="managedDevices", body="wrongshape"), "unexpected JSON shape at value"),
        (Fault(200, path="managedDevices", body="badgzip"), "could not be decoded"),
        (Fault(403, path="managedDevices", body="html"), "403 unknown: HTTP 403 with a non-Graph"),
        (Fault(500, path="/users/", body="malformed"), "500 unknown"),
    ],
    ids=["cut-json", "wrong-shape", "false-gzip", "html-403", "non-json-500"],
)
async def test_unreadable_answers_fail_closed_with_a_reason(
    make_provider: MakeProvider, fake: FakeGraph, fault: Fault, message: str
) -> None:
    """Bodies that are not Graph's JSON are a ProviderError saying what was wrong, not a crash."""
    fake.faults.append(fault)
    provider = await make_provider()
    with pytest.raises(ProviderError, match=message):
        await provider.lookup(serial(ANIKA_IPHONE))


async def test_server_error_then_success_is_retried(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A 502 then a good answer: the lookup succeeds and the hook saw the retry."""
    fake.faults.append(Fault(502, path="/users/"))
    hook = RecordingHook()
    provider = await make_provider(hooks=hook)
    record = await provider.lookup(serial(ANIKA_IPHONE))
    assert record is not None
    assert record.user is not None
    assert [(r.route, r.reason) for r in hook.retries] == [("/v1.0/users/{id}", "status 502")]


async def test_retry_after_as_an_http_date_is_honoured(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A Retry-After date already due is an immediate retry marked as rate limiting."""
    fake.faults.append(
        Fault(429, path="managedDevices", retry_after="Thu, 01 Jan 2015 00:00:00 GMT")
    )
    hook = RecordingHook()
    provider = await make_provider(user_groups=False, hooks=hook)
    assert await provider.lookup(serial(ANIKA_IPHONE)) is not None
    assert [(r.wait, r.rate_limited) for r in hook.retries] == [(0.0, True)]


@pytest.mark.parametrize("value", ["\u00b2", "\u0661"], ids=["superscript", "arabic-indic"])
async def test_retry_after_in_digits_other_than_ascii_is_ignored(
    make_provider: MakeProvider, fake: FakeGraph, value: str
) -> None:
    """A Retry-After of characters `str.isdigit` takes but no HTTP peer writes is unreadable:
    the retry waits its own backoff and the lookup succeeds (a superscript two crashed it)."""
    fake.faults.append(Fault(429, path="managedDevices", retry_after=value))
    hook = RecordingHook()
    provider = await make_provider(user_groups=False, hooks=hook)
    assert await provider.lookup(serial(ANIKA_IPHONE)) is not None
    assert [r.route for r in hook.retries] == ["/v1.0/deviceManagement/managedDevices"]


async def test_token_answer_of_another_shape_is_not_ready(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """A 200 from the token endpoint without a usable token leaves the provider not ready."""
    fake.faults.append(Fault(200, path="oauth2", body="wrongshape"))
    provider = await make_provider()
    with pytest.raises(ProviderNotReady, match="unexpected JSON shape at access_token"):
        await provider.start()
    assert provider.ready is False


async def test_routes_in_events_carry_no_identifiers(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """Every exchange is reported under a bounded route template, ids replaced by {id}."""
    hook = RecordingHook()
    provider = await make_provider(hooks=hook, device_groups=True, fetch_udid=True)
    assert await provider.lookup(serial(ANIKA_IPHONE)) is not None
    assert {c.route for c in hook.calls} == {
        "/{tenant}/oauth2/v2.0/token",
        "/v1.0/deviceManagement/managedDevices",
        "/v1.0/deviceManagement/managedDevices/{id}",
        "/v1.0/users/{id}",
        "/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group",
        "/v1.0/devices",
        "/v1.0/devices/{id}/transitiveMemberOf/microsoft.graph.group",
    }
    assert [(t.outcome, t.expires_in) for t in hook.tokens] == [("refreshed", 3599)]


async def test_slow_graph_hits_the_read_timeout(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """An answer slower than read_timeout is a timeout error."""
    provider = await make_provider(read_timeout=0.1, retries=0)
    await provider.start()
    fake.delay = 0.5
    with pytest.raises(ProviderError, match="timed out"):
        await provider.lookup(serial(ANIKA_IPHONE))


async def test_slow_graph_is_cut_by_the_lookup_budget(
    make_provider: MakeProvider, fake: FakeGraph
) -> None:
    """However the time is spent, a lookup ends at its budget."""
    provider = await make_provider(read_timeout=5, budget=0.3)
    await provider.start()
    fake.delay = 0.2  # each call fits the read timeout; device + user + groups do not fit
    with pytest.raises(ProviderError, match=r"exceeded its 0.3s budget"):
        await provider.lookup(serial(ANIKA_IPHONE))


async def test_build_provider_makes_an_intune_provider(graph_url: str) -> None:
    """The ``kind = "intune"`` table builds this provider through the package entry point."""
    settings = IntuneSettings.model_validate(intune_table(graph_url))
    provider = build_provider("intune", settings)
    try:
        assert isinstance(provider, IntuneProvider)
        assert provider.name == "intune"
    finally:
        await provider.aclose()


# -- whole webhook -------------------------------------------------------------------------

AppClient = Callable[..., Awaitable[Any]]


@pytest.fixture
async def intune_app(app_client: AppClient, graph_url: str) -> AppClient:
    """Start the connector with the Intune provider pointed at the fake Graph."""

    async def start(policy: dict[str, Any] | None = None, **provider: Any) -> Any:
        mapping = {
            "server": {"plain_http": True},
            "providers": {"intune": intune_table(graph_url, **provider)},
            "webhooks": [
                webhook("people", providers=("intune",), policy=policy or {}),
                webhook("gate", "AUTHORIZING", providers=("intune",), policy=policy or {}),
            ],
        }
        return await app_client(mapping)

    return start


async def call(client: Any, body: bytes, *, path: str = "/webhooks/people") -> dict[str, Any]:
    """POST a signed step-ca call and return the JSON answer (always HTTP 200)."""
    webhook_id = AUTH_ID if path == "/webhooks/gate" else ENRICH_ID
    response = await client.post(path, data=body, headers=signed(body, webhook_id=webhook_id))
    assert response.status == 200
    answer: dict[str, Any] = json.loads(await response.text())
    return answer


POLICY = {"compliance": ["compliant", "inGracePeriod"], "owner_type": ["company"]}


async def test_webhook_allows_a_compliant_device_and_enriches_it(intune_app: AppClient) -> None:
    """Done-when: allowed, with the Entra user, department and groups as enrichment."""
    client = await intune_app(POLICY)
    answer = await call(client, enrich(ANIKA_IPHONE))
    assert answer["allow"] is True
    data = answer["data"]
    assert data["user"]["username"] == "anika.sharma@example.com"
    assert data["user"]["department"] == "Platform Engineering"
    assert data["user"]["title"] == "Site Reliability Engineer"
    assert "email" not in data["user"]  # personal data stays out by default
    assert sorted(data["groups"]) == sorted(ANIKA_GROUPS)
    assert data["device"]["serial"] == ANIKA_IPHONE
    assert data["provider"] == "intune"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (BEN_MAC, "compliance-not-allowed"),
        (DANA_PERSONAL, "owner-type-not-allowed"),
        (EAS_ONLY, "device-unmanaged"),
        ("ZZZZ00000000", "device-not-found"),
    ],
    ids=["noncompliant", "personal", "unmanaged", "unknown"],
)
async def test_webhook_denies_with_distinct_codes(
    intune_app: AppClient, value: str, code: str
) -> None:
    """Noncompliant, personal, unmanaged and unknown devices are denied, each with its code."""
    client = await intune_app(POLICY)
    answer = await call(client, enrich(value))
    assert answer["allow"] is False
    assert answer["error"]["code"] == code


async def test_webhook_allows_a_device_in_grace_period(intune_app: AppClient) -> None:
    """inGracePeriod is allowed when the policy lists it."""
    client = await intune_app(POLICY)
    answer = await call(client, authorize(CHEN_IPAD), path="/webhooks/gate")
    assert answer["allow"] is True


async def test_webhook_group_gate_uses_entra_groups(intune_app: AppClient) -> None:
    """groups.any_of / none_of are checked against the user's Entra groups, across pages."""
    client = await intune_app(
        {"groups": {"any_of": ["MDA-Pilot-Users"], "none_of": ["Cert-Blocked"]}},
    )
    allowed = await call(client, enrich(ANIKA_IPHONE))
    blocked = await call(client, enrich(BEN_MAC))
    assert allowed["allow"] is True
    assert blocked["allow"] is False
    assert blocked["error"]["code"] in {"group-required", "group-forbidden"}


async def test_webhook_fails_closed_while_graph_fails(
    intune_app: AppClient, fake: FakeGraph
) -> None:
    """Graph answering 503 denies with inventory-unavailable, never allows."""
    client = await intune_app(POLICY, retries=1)
    fake.down = 503
    answer = await call(client, enrich(ANIKA_IPHONE))
    assert answer["allow"] is False
    assert answer["error"]["code"] == "inventory-unavailable"


async def test_webhook_config_loads_the_intune_table(
    intune_app: AppClient, fake: FakeGraph
) -> None:
    """The ``[providers.NAME]`` table with kind intune starts the provider with the app."""
    client = await intune_app(POLICY)
    response = await client.get("/readyz")
    assert response.status == 200
    assert fake.token_fetches == 1


async def test_webhook_with_refused_credentials_is_not_ready_and_denies(
    intune_app: AppClient,
) -> None:
    """Wrong app credentials: /readyz says not ready and lookups deny inventory-unavailable."""
    client = await intune_app(POLICY, client_secret="wrong-secret-value")
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["providers"] == {"intune": False}
    answer = await call(client, enrich(ANIKA_IPHONE))
    assert answer["allow"] is False
    assert answer["error"]["code"] == "inventory-unavailable"
    assert "wrong-secret-value" not in json.dumps(answer)


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/intune.toml is a valid configuration with the Intune provider and policy."""
    monkeypatch.setenv("INTUNE_CLIENT_SECRET", CLIENT_SECRET)
    settings = load_settings(Path(__file__).parent.parent / "examples" / "intune.toml")
    provider = settings.providers["intune"]
    assert isinstance(provider, IntuneSettings)
    assert provider.tenant_id == TENANT
    assert settings.webhooks[0].policy.compliance == ("compliant", "inGracePeriod")
