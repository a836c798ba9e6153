"""One-time, device-bound SCEP challenges: the MDM's challenge URL and the SCEPCHALLENGE webhook.

Everything runs through the real app on 127.0.0.1 with a SQLite store: the fake MDM asks for a
challenge, a signed SCEPCHALLENGE call (the body step-ca writes) presents it with a CSR.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.persistence import PERSISTENCE
from connector.store import AuditQuery, AuditRecorder
from tests.fakes.mdm import basic_auth, challenge_request
from tests.helpers import FIXED_NOW, config, make_settings, signed, webhook
from tests.scep_bodies import (
    challenge_body,
    csr_with_cn_of_tag,
    csr_with_extension_requests,
    odd_csrs,
    scep_csr,
)
from tests.sqlite_support import StatementGate

SCEP_ID = "5d1c7a9e-4b2f-4c8d-9e3a-6f0b1c2d3e4f"
CHALLENGE_URL = "/scep/challenge"
MDM_USER = "fleet"
MDM_PASSWORD = "correct horse battery staple"
MANAGED = "C02TEST00001"
UNMANAGED = "C02TEST00002"
BOB_UDID = "00008110-000A1C2E3F40801E"


class Clock:
    """The app's clock, moved by tests."""

    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> Any:
        return self.now


def scep_webhook(**validator: Any) -> dict[str, Any]:
    """A SCEPCHALLENGE webhook with a challenge validator (managed devices only)."""
    return webhook(
        "wifi",
        "SCEPCHALLENGE",
        path="/webhooks/scep",
        webhook_id=SCEP_ID,
        policy={"managed": True},
        validator={
            "kind": "challenge",
            "path": CHALLENGE_URL,
            "username": MDM_USER,
            "password": MDM_PASSWORD,
            "ttl": 600,
            **validator,
        },
    )


@pytest.fixture
def clock() -> Clock:
    """A clock the test can move."""
    return Clock()


async def serving(
    aiohttp_client: Any, mapping: dict[str, Any], clock: Clock
) -> TestClient[Any, Any]:
    """The app for `mapping`, once its providers started and its store is ready."""
    app = create_app(make_settings(mapping), clock=clock)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()
    await app[PERSISTENCE].store.wait_ready()
    return client


@pytest.fixture
def start(aiohttp_client: Any, inventory: Path, tmp_path: Path, clock: Clock) -> Any:
    """Start the app with the SCEP webhook (validator options as keyword arguments)."""

    async def started(**validator: Any) -> TestClient[Any, Any]:
        mapping = config(
            inventory,
            webhooks=[webhook(), scep_webhook(**validator)],
            store={"path": str(tmp_path / "store.sqlite3")},
        )
        return await serving(aiohttp_client, mapping, clock)

    return started


async def fetch(
    client: TestClient[Any, Any],
    *,
    serial: str | None = None,
    device_uuid: str | None = None,
    auth: dict[str, str] | None = None,
) -> Any:
    """The MDM's POST to the challenge URL."""
    return await client.post(
        CHALLENGE_URL,
        json=challenge_request(serial=serial, device_uuid=device_uuid),
        headers=basic_auth(MDM_USER, MDM_PASSWORD) if auth is None else auth,
    )


async def challenge_for(client: TestClient[Any, Any], **device: Any) -> str:
    """A challenge the MDM fetched for `device`."""
    response = await fetch(client, **device)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    text: str = await response.text()
    return text


async def present(
    client: TestClient[Any, Any], common_name: str | None, challenge: str | None, **kw: Any
) -> dict[str, Any]:
    """step-ca's SCEPCHALLENGE call for a CSR naming `common_name` with `challenge`."""
    body = challenge_body(common_name, challenge, **kw)
    response = await client.post(
        "/webhooks/scep",
        data=body,
        headers=signed(body, webhook_id=SCEP_ID),
        skip_auto_headers=["Content-Type"],
    )
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def written(recorder: AuditRecorder, count: int) -> None:
    """Wait until the background audit writer has stored `count` entries."""
    async with asyncio.timeout(10):
        while recorder.written < count:  # noqa: ASYNC110 - the recorder has no event to await
            await asyncio.sleep(0.01)


async def test_challenge_enrols_the_device_it_was_issued_for_once(start: Any) -> None:
    """A challenge fetched for a device allows that device's CSR once, with its data."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)

    first = await present(client, MANAGED, challenge)
    replay = await present(client, MANAGED, challenge)

    assert first["allow"] is True
    assert first["data"]["device"]["serial"] == MANAGED
    assert first["data"]["provider"] == "inventory"
    assert replay == {
        "allow": False,
        "error": {
            "code": "challenge-invalid",
            "message": "the challenge is unknown, already used or expired",
        },
    }


async def test_expired_challenge_is_refused(start: Any, clock: Clock) -> None:
    """A challenge presented after its ttl is refused."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    clock.now = FIXED_NOW + timedelta(seconds=601)

    answer = await present(client, MANAGED, challenge, now=clock.now)

    assert answer["error"]["code"] == "challenge-invalid"


async def test_challenge_presented_by_another_device_is_refused_and_spent(start: Any) -> None:
    """Another device's CSR with the challenge is refused, and the challenge is then spent."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)

    stolen = await present(client, UNMANAGED, challenge)
    rightful = await present(client, MANAGED, challenge)

    assert stolen["error"]["code"] == "challenge-device-mismatch"
    assert rightful["error"]["code"] == "challenge-invalid"


async def test_device_named_by_uuid_is_bound_to_its_uuid(start: Any) -> None:
    """Without a serial the UUID binds, compared without regard to case."""
    client = await start()
    challenge = await challenge_for(client, device_uuid=BOB_UDID.lower())

    answer = await present(client, BOB_UDID, challenge)

    assert answer["allow"] is True
    assert answer["data"]["device"]["udid"] == BOB_UDID


async def test_policy_still_decides_for_a_good_challenge(start: Any) -> None:
    """An unmanaged device with its own valid challenge is denied by the posture policy."""
    client = await start()
    challenge = await challenge_for(client, serial=UNMANAGED)

    answer = await present(client, UNMANAGED, challenge)

    assert answer["error"]["code"] == "device-unmanaged"


async def test_configuration_probe_gets_a_challenge_that_never_works(start: Any) -> None:
    """A request naming no device (an MDM's configuration test) gets 200 and an unusable probe."""
    client = await start()
    probe = await challenge_for(client)

    answer = await present(client, MANAGED, probe)

    assert probe.startswith("probe-")
    assert len(probe) > 40
    assert answer["error"]["code"] == "challenge-invalid"


async def test_unbound_challenge_takes_the_device_from_the_csr_when_configured(
    start: Any,
) -> None:
    """With unbound = "csr" a device-less challenge works once, for the device the CSR names."""
    client = await start(unbound="csr")
    challenge = await challenge_for(client)

    answer = await present(client, MANAGED, challenge)
    again = await present(client, MANAGED, challenge)

    assert not challenge.startswith("probe-")
    assert answer["allow"] is True
    assert answer["data"]["device"]["serial"] == MANAGED
    assert again["error"]["code"] == "challenge-invalid"


@pytest.mark.parametrize(
    "auth",
    [
        {},
        basic_auth(MDM_USER, "wrong password, same length!!"),
        basic_auth("jamf", MDM_PASSWORD),
        {"Authorization": f"Bearer {MDM_PASSWORD}"},
        {"Authorization": "Basic not-base64!"},
    ],
    ids=["none", "wrong-password", "wrong-user", "bearer", "garbage"],
)
async def test_challenge_url_requires_the_basic_credentials(
    start: Any, auth: dict[str, str]
) -> None:
    """Without the configured Basic user and password the MDM gets 401 and no challenge."""
    client = await start()

    response = await fetch(client, serial=MANAGED, auth=auth)

    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not an MDM challenge request"),
        (b'{"webhook": {"webhookEvent": "ComputerAdded"}}', "webhookEvent must be SCEPChallenge"),
        (
            b'{"webhook": {"webhookEvent": "SCEPChallenge"}, '
            b'"event": {"device": {"serialNumber": "c02;drop"}}}',
            "event.device",
        ),
    ],
    ids=["not-json", "other-event", "bad-serial"],
)
async def test_malformed_mdm_request_is_400(start: Any, body: bytes, reason: str) -> None:
    """A body that is not an MDM SCEPChallenge request (or names an odd device) is refused."""
    client = await start()

    response = await client.post(
        CHALLENGE_URL, data=body, headers=basic_auth(MDM_USER, MDM_PASSWORD)
    )

    assert response.status == 400
    assert reason in (await response.json())["error"]["message"]


async def test_store_keeps_only_the_challenge_digest(start: Any, tmp_path: Path) -> None:
    """The database holds the SHA-256 of a challenge and the device, never the challenge."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)

    with sqlite3.connect(tmp_path / "store.sqlite3") as db:
        rows = db.execute("SELECT digest, webhook, identity FROM scep_challenges").fetchall()

    assert rows == [(hashlib.sha256(challenge.encode()).hexdigest(), "wifi", MANAGED)]
    assert challenge not in repr(rows)


async def test_missing_challenge_password_is_refused(start: Any) -> None:
    """A CSR without a challenge password is refused without touching the store."""
    client = await start()

    answer = await present(client, MANAGED, None)

    assert answer["error"]["code"] == "challenge-missing"


async def test_unreadable_csr_is_refused(start: Any) -> None:
    """A raw CSR that is not PKCS#10 is refused as csr-invalid."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)

    answer = await present(client, MANAGED, challenge, csr_der=b"\x30\x03\x02\x01\x00")

    assert answer["error"]["code"] == "csr-invalid"


async def test_a_common_name_that_is_not_utf8_is_refused(start: Any) -> None:
    """A CSR whose UTF8String common name holds bytes that are not UTF-8 (cryptography refuses
    it only when the name is read) is csr-invalid, not a 500."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    der = scep_csr(MANAGED, challenge).replace(MANAGED.encode(), MANAGED[:-1].encode() + b"\xff")

    answer = await present(client, MANAGED, challenge, csr_der=der)

    assert answer["error"]["code"] == "csr-invalid"


async def test_forged_call_never_spends_a_challenge(start: Any) -> None:
    """A SCEPCHALLENGE call with a wrong signature is 401 and the challenge stays usable."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    body = challenge_body(MANAGED, challenge)
    headers = signed(body, webhook_id=SCEP_ID) | {"X-Smallstep-Signature": "00" * 32}

    forged = await client.post("/webhooks/scep", data=body, headers=headers)
    genuine = await present(client, MANAGED, challenge)

    assert forged.status == 401
    assert genuine["allow"] is True


async def test_decisions_are_audited_with_the_transaction_id(start: Any) -> None:
    """Each SCEPCHALLENGE verdict is in the audit log with its SCEP transaction id."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    await present(client, MANAGED, challenge, transaction_id="tx-allow")
    await present(client, MANAGED, challenge, transaction_id="tx-replay")
    persistence = client.app[PERSISTENCE]

    await written(persistence.audit, 2)
    entries = await persistence.store.query_decisions(AuditQuery(webhook="wifi"))

    assert [(e.webhook_kind, e.allow, e.code, e.detail) for e in entries] == [
        (
            "SCEPCHALLENGE",
            False,
            "challenge-invalid",
            {"transaction_id": "tx-replay"},
        ),
        (
            "SCEPCHALLENGE",
            True,
            None,
            {"transaction_id": "tx-allow", "binding": "device"},
        ),
    ]
    assert entries[1].identifier == MANAGED


async def test_two_common_names_are_refused(start: Any) -> None:
    """A CSR with two common names (readers disagree which counts) is refused."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, UNMANAGED),
            x509.NameAttribute(NameOID.COMMON_NAME, MANAGED),
        ]
    )
    der = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(names)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )

    answer = await present(client, MANAGED, challenge, csr_der=der)

    assert answer["error"]["code"] == "csr-invalid"


async def test_store_failure_fails_closed_on_both_sides(start: Any, tmp_path: Path) -> None:
    """With the challenge table gone, the MDM gets 503 and a presented challenge is denied."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    with sqlite3.connect(tmp_path / "store.sqlite3") as db:
        db.execute("DROP TABLE scep_challenges")

    issued = await fetch(client, serial=MANAGED)
    answer = await present(client, MANAGED, challenge)

    assert issued.status == 503
    assert (await issued.json())["error"]["code"] == "challenge-store-unavailable"
    assert answer["error"]["code"] == "challenge-store-unavailable"


async def test_challenge_url_takes_only_post(start: Any) -> None:
    """A GET on the challenge URL is 405, whatever the credentials."""
    client = await start()

    response = await client.get(CHALLENGE_URL, headers=basic_auth(MDM_USER, MDM_PASSWORD))

    assert response.status == 405


async def test_unbound_challenge_needs_a_device_in_the_csr(start: Any) -> None:
    """With unbound = "csr", a CSR naming no device cannot use a device-less challenge."""
    client = await start(unbound="csr")
    challenge = await challenge_for(client)

    answer = await present(client, None, challenge)

    assert answer["error"]["code"] == "csr-identity-missing"


async def test_a_lookalike_common_name_is_not_the_bound_device(start: Any) -> None:
    """Unicode's case mapping is not the binding's: the serial with a long s (U+017F) for its S
    upper-cases to the bound serial but names no device, and is refused (and spends it)."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    lookalike = MANAGED.replace("S", "\u017f")
    assert lookalike.upper() == MANAGED

    answer = await present(client, lookalike, challenge)

    assert answer["error"]["code"] == "challenge-device-mismatch"
    assert (await present(client, MANAGED, challenge))["error"]["code"] == "challenge-invalid"


async def test_a_refused_device_keeps_its_challenge(start: Any) -> None:
    """A challenge that issued nothing is given back: its device, refused by the policy, is
    judged again when its SCEP client retries with the same challenge (and the audit says so)."""
    client = await start()
    challenge = await challenge_for(client, serial=UNMANAGED)

    first = await present(client, UNMANAGED, challenge)
    retry = await present(client, UNMANAGED, challenge)

    assert first["error"]["code"] == "device-unmanaged"
    assert retry["error"]["code"] == "device-unmanaged"  # not challenge-invalid
    persistence = client.app[PERSISTENCE]
    await written(persistence.audit, 2)
    entries = await persistence.store.query_decisions(AuditQuery(webhook="wifi"))
    assert [e.detail for e in entries] == [
        {"transaction_id": "7b3c2a1f9e8d", "binding": "device", "challenge": "returned"}
    ] * 2


async def test_giving_a_challenge_back_never_delays_the_answer_past_the_budget(
    aiohttp_client: Any, inventory: Path, tmp_path: Path, clock: Clock
) -> None:
    """Giving the challenge back comes after the validator and the chain have had their time:
    a store that is slow to take it back must not push the deny past the decision budget
    (step-ca gives up at 10 s, retries, and the reason is lost). The challenge stays spent."""
    mapping = config(
        inventory,
        webhooks=[webhook(), scep_webhook()],
        store={"path": str(tmp_path / "store.sqlite3")},
        server={"decision_budget": 1.0},
    )
    client = await serving(aiohttp_client, mapping, clock)
    app = client.app
    challenge = await challenge_for(client, serial=UNMANAGED)
    # The store's own SQLite writer holds the statement that would give the challenge back.
    writer = app[PERSISTENCE].store._driver._real._raw[0]
    gate = StatementGate(lambda sql: sql.startswith("UPDATE scep_challenges SET used_at = NULL"))
    await writer.set_trace_callback(gate)
    try:
        began = asyncio.get_running_loop().time()
        answer = await present(client, UNMANAGED, challenge)
        elapsed = asyncio.get_running_loop().time() - began
        assert gate.reached.is_set()
    finally:
        gate.release()

    assert answer["error"]["code"] == "device-unmanaged"
    assert elapsed < 1.0 + 0.5  # the validator's own timeout (3 s) no longer adds to it


async def test_a_challenge_outlives_an_inventory_that_could_not_answer(
    aiohttp_client: Any, inventory: Path, tmp_path: Path, clock: Clock
) -> None:
    """The inventory is away (`inventory-unavailable`): the challenge is given back, and once
    the inventory is back the device's retry with it enrols, once."""
    late = tmp_path / "late.csv"  # not there yet: the provider is not ready
    mapping = config(
        inventory,
        providers={"late": {"kind": "csv", "path": str(late), "reload_interval": 0}},
        webhooks=[webhook(providers=("late",)), scep_webhook() | {"providers": ["late"]}],
        store={"path": str(tmp_path / "store.sqlite3")},
        server={"provider_retry_interval": 0.1},
    )
    client = await serving(aiohttp_client, mapping, clock)
    challenge = await challenge_for(client, serial=MANAGED)

    away = await present(client, MANAGED, challenge)
    shutil.copy(inventory, late)
    async with asyncio.timeout(10):  # the app starts the provider again, now with its file
        while (await client.get("/readyz")).status != 200:  # noqa: ASYNC110 - polling HTTP
            await asyncio.sleep(0.05)
    back = await present(client, MANAGED, challenge)
    replay = await present(client, MANAGED, challenge)

    assert away["error"]["code"] == "inventory-unavailable"
    assert back["allow"] is True
    assert replay["error"]["code"] == "challenge-invalid"


async def test_an_unbound_challenge_comes_back_only_when_the_inventory_could_not_answer(
    start: Any,
) -> None:
    """A device-less challenge refused for one device's posture stays spent: else it could try
    device after device until the policy passes one."""
    client = await start(unbound="csr")
    challenge = await challenge_for(client)

    refused = await present(client, UNMANAGED, challenge)
    other = await present(client, MANAGED, challenge)

    assert refused["error"]["code"] == "device-unmanaged"
    assert other["error"]["code"] == "challenge-invalid"


def _with_names(common_name: str, challenge: str, *names: x509.GeneralName) -> bytes:
    return scep_csr(common_name, challenge, alt_names=names)


async def test_a_csr_naming_another_device_besides_the_bound_one_is_refused(
    start: Any,
) -> None:
    """step-ca's default template copies the CSR's SANs into the certificate: a challenge for
    one device cannot buy a certificate that also names another device or a user."""
    client = await start()
    for names in (
        [x509.DNSName(UNMANAGED)],
        [x509.RFC822Name("ceo@example.com")],
        [x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x03ceo")],
    ):
        challenge = await challenge_for(client, serial=MANAGED)
        der = _with_names(MANAGED, challenge, x509.DNSName(MANAGED), *names)

        answer = await present(client, MANAGED, challenge, csr_der=der)
        again = await present(client, MANAGED, challenge)

        assert answer["error"]["code"] == "csr-names-unbound"
        assert again["error"]["code"] == "challenge-invalid"  # seen with a wrong CSR: spent


async def test_subject_attributes_naming_someone_else_are_refused(start: Any) -> None:
    """The default template copies the whole subject too: an e-mail address, a UID, another
    serial or a domain component (networks match on them) must not ride on a device's
    challenge."""
    client = await start()
    for attribute in (
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ceo@example.com"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, UNMANAGED),
        x509.NameAttribute(NameOID.USER_ID, "ceo"),
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "corp"),
    ):
        challenge = await challenge_for(client, serial=MANAGED)
        der = scep_csr(MANAGED, challenge, subject=[attribute])

        answer = await present(client, MANAGED, challenge, csr_der=der)

        assert answer["error"]["code"] == "csr-names-unbound", attribute


async def test_organisation_attributes_and_the_devices_own_serial_are_allowed(
    start: Any,
) -> None:
    """What a profile sets alike for every device (O, OU, C, ST, L) names nobody, and a
    subject serialNumber that repeats the bound device is its own name."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    subject = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "MDM"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Berlin"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, MANAGED),
    ]
    der = scep_csr(MANAGED, challenge, subject=subject)

    assert (await present(client, MANAGED, challenge, csr_der=der))["allow"] is True


async def test_a_csr_go_reads_and_cryptography_cannot_is_a_deny_not_a_500(start: Any) -> None:
    """A CSR of another version, or with an attribute encoded as a BIT STRING, is signed by
    step-ca (Go parses both); our parser raised other errors than it was asked to catch, and the
    call ended in a 500 and a traceback. It is refused as unreadable (no challenge is used)."""
    client = await start()
    for kind in ("version-1", "bit-string-attribute"):
        challenge = await challenge_for(client, serial=MANAGED)
        der = odd_csrs(MANAGED, challenge)[kind]

        answer = await present(client, MANAGED, challenge, csr_der=der)

        assert answer["error"]["code"] == "csr-invalid", kind


@pytest.mark.parametrize(
    ("tag", "allowed"),
    [(0x0C, True), (0x13, True), (0x04, False), (0x1C, False)],
    ids=["utf8-string", "printable-string", "octet-string", "universal-string"],
)
async def test_a_common_name_step_ca_does_not_read_as_text_is_refused(
    start: Any, tag: int, allowed: bool
) -> None:
    """Go reads a CSR subject's value as text only for its string types; cryptography also
    reads an OCTET STRING or a UniversalString as text. Such a common name would be compared
    with the bound device while step-ca signs a subject without it: refused."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    der = csr_with_cn_of_tag(MANAGED, challenge, tag)

    answer = await present(client, MANAGED, challenge, csr_der=der)

    assert answer["allow"] is allowed, answer
    if not allowed:
        assert answer["error"]["code"] == "csr-invalid"


async def test_a_csr_with_two_extension_requests_is_refused(start: Any) -> None:
    """Go merges every extensionRequest attribute (step-ca signs the names of all), a Python
    reader takes the first: a harmless first one must not hide another device's name in the
    second. Whose names count cannot be told, so such a CSR is refused."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
    names = x509.SubjectAlternativeName([x509.DNSName(UNMANAGED)])
    der = csr_with_extension_requests(MANAGED, challenge, [usage], [names])
    assert x509.load_der_x509_csr(der).is_signature_valid

    answer = await present(client, MANAGED, challenge, csr_der=der)

    assert answer["error"]["code"] == "csr-names-unbound"


async def test_a_csr_naming_only_the_bound_device_is_allowed(start: Any) -> None:
    """A SAN that repeats the bound device's serial (any case) is its own name."""
    client = await start()
    challenge = await challenge_for(client, serial=MANAGED)
    der = _with_names(MANAGED, challenge, x509.DNSName(MANAGED.lower()))

    assert (await present(client, MANAGED, challenge, csr_der=der))["allow"] is True


async def test_csr_names_any_leaves_the_names_to_the_template(start: Any) -> None:
    """With csr_names = "any" the SANs are not compared (the template ignores them)."""
    client = await start(csr_names="any")
    challenge = await challenge_for(client, serial=MANAGED)
    der = _with_names(MANAGED, challenge, x509.RFC822Name("alice@example.com"))

    assert (await present(client, MANAGED, challenge, csr_der=der))["allow"] is True


async def test_an_unbound_challenges_names_must_be_the_csrs_device(start: Any) -> None:
    """With unbound = "csr" the common name is the device; the SANs may name only it."""
    client = await start(unbound="csr")
    challenge = await challenge_for(client)
    der = _with_names(MANAGED, challenge, x509.DNSName(UNMANAGED))

    answer = await present(client, MANAGED, challenge, csr_der=der)

    assert answer["error"]["code"] == "csr-names-unbound"
