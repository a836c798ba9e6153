"""Intune SCEP validation: discovery through Graph, validateRequest, and the notifications.

The real app runs against the fake Entra/Graph (with the Intune service principal's endpoints)
and the fake validation service; step-ca's calls are signed SCEPCHALLENGE and NOTIFYING bodies.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.observe import USER_NAME_HIDDEN
from connector.persistence import PERSISTENCE
from connector.store import AuditQuery, AuditRecorder
from tests.fakes.graph import FakeGraph
from tests.fakes.graph import create_app as graph_app
from tests.fakes.intune_scep import INTUNE_SCOPE, FakeIntuneScep, install_discovery
from tests.fakes.intune_scep import create_app as scep_app
from tests.helpers import FIXED_NOW, config, make_settings, signed, webhook
from tests.scep_bodies import (
    challenge_body,
    issued_certificate,
    notify_failure_body,
    notify_success_body,
    scep_csr,
)

DEVICES = Path(__file__).parent / "fakes" / "graph_devices.json"
TENANT = "8a7f3c2e-1b4d-4e6f-9a0b-2c3d4e5f6a7b"
CLIENT_ID = "5d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a"
CHALLENGE_ID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
NOTIFY_ID = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
MANAGED = "C02TEST00001"
UNMANAGED = "C02TEST00002"


@pytest.fixture
async def intune(aiohttp_server: Any) -> tuple[FakeGraph, FakeIntuneScep, str]:
    """The fake tenant (Entra + Graph with discovery) and the validation service, running."""
    graph = FakeGraph.from_file(DEVICES)
    scep = FakeIntuneScep(graph)
    app = graph_app(graph)
    install_discovery(app, scep)
    graph_server = await aiohttp_server(app)
    scep_server = await aiohttp_server(scep_app(scep))
    scep.origin = str(scep_server.make_url("")).rstrip("/")
    return graph, scep, str(graph_server.make_url("")).rstrip("/")


CLIENT_SECRET = "fake-graph-client-secret"


def intune_provider(graph_url: str, secret: str = CLIENT_SECRET) -> dict[str, Any]:
    """The ``[providers.intune]`` table for the fake tenant at `graph_url`."""
    return {
        "kind": "intune",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "authority_host": graph_url,
        "graph_host": graph_url,
        "backoff": 0.01,
    }


def intune_webhook(validator: dict[str, Any], **hook: Any) -> dict[str, Any]:
    """The Intune-validated SCEPCHALLENGE webhook (policy: managed), with `hook`'s extra keys."""
    return webhook(
        "intune-wifi",
        "SCEPCHALLENGE",
        path="/webhooks/intune",
        webhook_id=CHALLENGE_ID,
        policy={"managed": True},
        validator=validator,
        **hook,
    )


@pytest.fixture
def start(aiohttp_client: Any, inventory: Path, tmp_path: Path, intune: Any) -> Any:
    """Start the app with an Intune-validated SCEPCHALLENGE webhook and a NOTIFYING one."""
    graph_url = intune[2]

    async def started(
        *,
        validator: dict[str, Any] | None = None,
        notify: dict[str, Any] | None = None,
        **hook: Any,
    ) -> TestClient[Any, Any]:
        table = {"kind": "intune", "provider": "intune", **(validator or {})}
        mapping = config(
            inventory,
            providers={
                "inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0},
                "intune": intune_provider(graph_url),
            },
            webhooks=[
                intune_webhook(table, **hook),
                webhook(
                    "intune-notify",
                    "NOTIFYING",
                    path="/webhooks/intune-notify",
                    webhook_id=NOTIFY_ID,
                    providers=(),
                    validator=table | (notify or {}),
                ),
            ],
            store={"path": str(tmp_path / "store.sqlite3")},
        )
        app = create_app(make_settings(mapping), clock=lambda: FIXED_NOW)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        await app[PROVIDERS_STARTED].wait()
        await app[PERSISTENCE].store.wait_ready()
        return client

    return started


async def post(client: TestClient[Any, Any], path: str, body: bytes, webhook_id: str) -> Any:
    """A signed step-ca call."""
    return await client.post(
        path,
        data=body,
        headers=signed(body, webhook_id=webhook_id),
        skip_auto_headers=["Content-Type"],
    )


async def present(
    client: TestClient[Any, Any], common_name: str | None, challenge: str, **kw: Any
) -> dict[str, Any]:
    """step-ca's SCEPCHALLENGE call; the JSON answer."""
    response = await post(
        client, "/webhooks/intune", challenge_body(common_name, challenge, **kw), CHALLENGE_ID
    )
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def until(condition: Any, seconds: float = 10.0) -> None:
    """Wait for a background effect (a notification, an audit write)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - the fakes and the recorder have no events
            await asyncio.sleep(0.01)


async def test_intune_success_allows_the_device_through_the_policy(start: Any, intune: Any) -> None:
    """Intune's Success passes the challenge; the CSR's device then gets the policy and data."""
    graph, scep, _ = intune
    client = await start()
    challenge = scep.issue_challenge(MANAGED)
    csr = scep_csr(MANAGED, challenge)

    answer = await present(client, MANAGED, challenge, csr_der=csr, transaction_id="tx-1")

    assert answer["allow"] is True
    assert answer["data"]["device"]["serial"] == MANAGED
    [call] = scep.calls_to("validateRequest")
    assert call.code == "Success"
    assert call.body == {
        "transactionId": "tx-1",
        "certificateRequest": base64.b64encode(csr).decode(),
        "callerInfo": "posture-connector",
    }
    assert call.headers["api-version"] == "2018-02-20"
    assert call.headers["Content-Type"].startswith("application/json")
    assert INTUNE_SCOPE in graph.token_scopes.values()
    assert scep.discoveries == 1


async def test_a_windows_pc_named_by_its_serial_is_no_apple_identifier(
    start: Any, intune: Any
) -> None:
    """SCEP devices name themselves (a Windows PC as ``CN={{SerialNumber}}``): a serial there
    was not attested by Apple, so a Windows record of it is no mismatch."""
    graph, scep, _ = intune
    windows = {
        **graph.managed_devices[1],
        "id": "9f9f9f9f-0000-4000-8000-000000000001",
        "deviceName": "DESKTOP-EVE",
        "operatingSystem": "Windows",
        "osVersion": "10.0.22631.3447",
        "complianceState": "compliant",
        "model": "HP EliteBook 840 G8",
        "serialNumber": "5CG1234XYZ",
        "udid": None,
    }
    graph.managed_devices.append(windows)
    client = await start(providers=["intune"])
    challenge = scep.issue_challenge("5CG1234XYZ")
    csr = scep_csr("5CG1234XYZ", challenge)
    answer = await present(client, "5CG1234XYZ", challenge, csr_der=csr)
    assert answer["allow"] is True, answer


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda scep: "not-an-intune-challenge", "ChallengeDeserializationError"),
        (lambda scep: scep.issue_challenge(MANAGED, ttl=-1.0), "ChallengeExpired"),
        (lambda scep: scep.issue_challenge(UNMANAGED), "SubjectNameMismatch"),
    ],
    ids=["unknown", "expired", "other-subject"],
)
async def test_intune_refusal_denies_with_its_code(
    start: Any, intune: Any, make: Callable[[FakeIntuneScep], str], code: str
) -> None:
    """Any code but Success denies, and the message names Intune's code."""
    client = await start()

    answer = await present(client, MANAGED, make(intune[1]))

    assert answer == {
        "allow": False,
        "error": {"code": "intune-refused", "message": f"Intune refused the request: {code}"},
    }


async def test_intune_outage_denies_and_the_address_is_found_again(start: Any, intune: Any) -> None:
    """A failing service denies (intune-unavailable); the next call rediscovers its address."""
    scep = intune[1]
    client = await start()
    challenge = scep.issue_challenge(MANAGED)
    scep.down = 503

    during = await present(client, MANAGED, challenge)
    scep.down = None
    after = await present(client, MANAGED, challenge)

    assert during["error"]["code"] == "intune-unavailable"
    assert after["allow"] is True
    assert scep.discoveries == 2


async def test_callers_waiting_for_the_address_share_one_discovery(start: Any, intune: Any) -> None:
    """A failed call forgets the service's address: the burst of calls behind it asks Graph
    for it once, not once each (which Graph would throttle, prolonging the outage)."""
    scep = intune[1]
    client = await start()
    challenges = [scep.issue_challenge(MANAGED) for _ in range(8)]

    answers = await asyncio.gather(*(present(client, MANAGED, c) for c in challenges))

    assert all(answer["allow"] for answer in answers)
    assert scep.discoveries == 1


async def test_slow_intune_is_cut_at_the_validator_timeout(start: Any, intune: Any) -> None:
    """A validation slower than the validator's timeout denies instead of holding step-ca."""
    scep = intune[1]
    client = await start(validator={"timeout": 0.5})
    challenge = scep.issue_challenge(MANAGED)
    scep.delay = 5.0

    started = time.monotonic()
    answer = await present(client, MANAGED, challenge)

    assert answer["error"]["code"] == "intune-unavailable"
    assert time.monotonic() - started < 3.0


async def test_tenant_without_the_scep_permission_is_told_why(start: Any, intune: Any) -> None:
    """When Graph lists no validation service, the deny's log line names the missing permission."""
    scep = intune[1]
    scep.listed = False
    client = await start()

    with capture_logs() as logs:
        answer = await present(client, MANAGED, scep.issue_challenge(MANAGED))

    assert answer["error"]["code"] == "intune-unavailable"
    [event] = [e for e in logs if e["event"] == "scep.intune_unavailable"]
    assert "scep_challenge_provider" in event["error"]
    assert scep.calls == []


async def test_policy_still_decides_for_an_intune_approved_device(start: Any, intune: Any) -> None:
    """An unmanaged device with a good Intune challenge is denied by the posture policy."""
    scep = intune[1]
    client = await start()

    answer = await present(client, UNMANAGED, scep.issue_challenge(UNMANAGED))

    assert answer["error"]["code"] == "device-unmanaged"


@pytest.mark.parametrize(
    ("on_missing", "expected"),
    [("deny", {"code": "identifier-missing"}), ("allow", None)],
    ids=["deny", "allow"],
)
async def test_csr_without_a_device_name_follows_on_missing_identifier(
    start: Any, intune: Any, on_missing: str, expected: dict[str, str] | None
) -> None:
    """An Intune-approved CSR with no common name is decided by on_missing_identifier."""
    scep = intune[1]
    client = await start(on_missing_identifier=on_missing)

    answer = await present(client, None, scep.issue_challenge(None))

    if expected is None:
        assert answer == {"allow": True, "data": {}}
    else:
        assert answer["error"]["code"] == expected["code"]


async def written(recorder: AuditRecorder, count: int) -> None:
    """Wait until the audit writer has stored `count` entries."""
    await until(lambda: recorder.written >= count)


async def test_issued_certificate_is_audited_and_reported_to_intune(
    start: Any, intune: Any
) -> None:
    """A NOTIFYING success is answered at once, audited, and sent as Intune's successNotification."""
    scep = intune[1]
    client = await start()
    cert = issued_certificate(MANAGED)

    response = await post(
        client,
        "/webhooks/intune-notify",
        notify_success_body(MANAGED, cert, transaction_id="tx-9"),
        NOTIFY_ID,
    )
    await until(lambda: scep.calls_to("successNotification"))
    persistence = client.app[PERSISTENCE]
    await written(persistence.audit, 1)
    [entry] = await persistence.store.query_decisions(AuditQuery(webhook="intune-notify"))

    assert response.status == 200
    assert await response.json() == {"allow": True}
    [call] = scep.calls_to("successNotification")
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Windows' thumbprint
    assert call.code == "Success"
    assert {k: v for k, v in call.body.items() if k != "certificateRequest"} == {
        "transactionId": "tx-9",
        "certificateThumbprint": thumbprint,
        "certificateSerialNumber": "1F2E3D4C5B6A",
        "certificateExpirationDateUtc": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issuingCertificateAuthority": "Posture Lab Intermediate CA",
        "callerInfo": "posture-connector",
        "caConfiguration": "posture-connector",
        "certificateAuthority": "Posture Lab Intermediate CA",
    }
    assert x509.load_der_x509_csr(base64.b64decode(call.body["certificateRequest"]))
    assert (entry.webhook_kind, entry.allow, entry.code, entry.identifier) == (
        "NOTIFYING",
        True,
        None,
        MANAGED,
    )
    assert entry.detail == {
        "event": "issued",
        "transaction_id": "tx-9",
        "serial": "1F2E3D4C5B6A",
        "expires": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "thumbprint": thumbprint,
    }


async def test_each_webhook_reports_to_intune_as_itself(start: Any, intune: Any) -> None:
    """Two webhooks on one Intune provider that sign in alike but call themselves differently:
    each report carries its own webhook's caller_info (one client served both, built from the
    first webhook's settings)."""
    scep = intune[1]
    client = await start(notify={"caller_info": "vpn-ca"})
    cert = issued_certificate(MANAGED)

    await post(client, "/webhooks/intune-notify", notify_success_body(MANAGED, cert), NOTIFY_ID)
    await until(lambda: scep.calls_to("successNotification"))

    [call] = scep.calls_to("successNotification")
    assert call.body["callerInfo"] == "vpn-ca"


async def test_failed_issuance_is_audited_and_reported_to_intune(start: Any, intune: Any) -> None:
    """A NOTIFYING failure goes to Intune's failureNotification with an HRESULT and the reason."""
    scep = intune[1]
    client = await start()

    response = await post(
        client,
        "/webhooks/intune-notify",
        notify_failure_body(MANAGED, "x" * 400, transaction_id="tx-f"),
        NOTIFY_ID,
    )
    await until(lambda: scep.calls_to("failureNotification"))
    persistence = client.app[PERSISTENCE]
    await written(persistence.audit, 1)
    [entry] = await persistence.store.query_decisions(AuditQuery(webhook="intune-notify"))

    assert response.status == 200
    [call] = scep.calls_to("failureNotification")
    assert call.code == "Success"
    assert call.body["hResult"] == 0x80004005
    assert call.body["errorDescription"] == "x" * 255
    assert (entry.allow, entry.code, entry.detail) == (
        False,
        "issuance-failed",
        {"event": "failed", "transaction_id": "tx-f", "error": "x" * 255},
    )


@pytest.mark.parametrize("trouble", ["slow", "down"])
async def test_notification_is_answered_at_once_whatever_intune_does(
    start: Any, intune: Any, trouble: str
) -> None:
    """step-ca waits for a notification, so the answer never waits for Intune."""
    scep = intune[1]
    client = await start(validator={"notify_timeout": 1.0})
    if trouble == "slow":
        scep.delay = 5.0
    else:
        scep.down = 503

    with capture_logs() as logs:
        started = time.monotonic()
        response = await post(
            client,
            "/webhooks/intune-notify",
            notify_success_body(MANAGED, issued_certificate(MANAGED)),
            NOTIFY_ID,
        )
        elapsed = time.monotonic() - started
        await until(lambda: any(e["event"] == "scep.intune_notify_failed" for e in logs))

    assert response.status == 200
    assert elapsed < 0.5


async def test_unreadable_certificate_is_audited_but_not_reported(start: Any, intune: Any) -> None:
    """A notification whose certificate cannot be read is audited with why, not sent to Intune."""
    scep = intune[1]
    client = await start()
    cert = issued_certificate(MANAGED)
    body = notify_success_body(MANAGED, cert).replace(
        base64.b64encode(cert.public_bytes(serialization.Encoding.DER)),
        base64.b64encode(b"not a certificate"),
    )

    with capture_logs() as logs:
        response = await post(client, "/webhooks/intune-notify", body, NOTIFY_ID)
        await until(lambda: any(e["event"] == "scep.intune_notify_skipped" for e in logs))
    persistence = client.app[PERSISTENCE]
    await written(persistence.audit, 1)
    [entry] = await persistence.store.query_decisions(AuditQuery(webhook="intune-notify"))

    assert response.status == 200
    assert scep.calls == []
    assert entry.detail is not None
    assert entry.detail["error"] == "the certificate is not X.509 DER"


@pytest.mark.parametrize(
    ("identity", "expected"),
    [("common_name", {"code": "identifier-invalid"}), ("none", None)],
    ids=["common-name", "none"],
)
async def test_profile_naming_a_user_needs_identity_none(
    start: Any, intune: Any, identity: str, expected: dict[str, str] | None
) -> None:
    """A profile whose CN is no device (a UPN) fails the shape check, unless identity = "none"
    lets Intune's verdict alone decide (with on_missing_identifier = "allow")."""
    scep = intune[1]
    client = await start(validator={"identity": identity}, on_missing_identifier="allow")
    upn = "anika@contoso.example"

    answer = await present(client, upn, scep.issue_challenge(upn))

    if expected is None:
        assert answer == {"allow": True, "data": {}}
    else:
        assert answer["error"]["code"] == expected["code"]


async def test_a_burst_of_reports_never_stands_before_a_validation(start: Any, intune: Any) -> None:
    """Every issuance sends Intune a report in the background, through the client that
    validations use: a morning burst of them must not make that client refuse the next
    validation as queued too long for its budget (a deny for a device Intune accepts)."""
    scep = intune[1]
    client = await start()
    scep.delay = 1.0
    for _ in range(6):  # the client has timed enough exchanges to estimate a queue's wait
        challenge = scep.issue_challenge(MANAGED)
        answer = await present(client, MANAGED, challenge, csr_der=scep_csr(MANAGED, challenge))
        assert answer["allow"] is True

    certificate = issued_certificate(MANAGED)
    reports = await asyncio.gather(
        *(
            post(
                client,
                "/webhooks/intune-notify",
                notify_success_body(MANAGED, certificate, transaction_id=f"tx-{n}"),
                NOTIFY_ID,
            )
            for n in range(25)
        )
    )
    assert all(response.status == 200 for response in reports)
    await asyncio.sleep(0.3)

    challenge = scep.issue_challenge(MANAGED)
    answer = await present(client, MANAGED, challenge, csr_der=scep_csr(MANAGED, challenge))

    assert answer["allow"] is True, answer


UPN = "anika@contoso.example"


async def test_a_users_name_in_a_refused_csr_is_kept_only_with_personal_data(
    start: Any, intune: Any
) -> None:
    """A profile whose common name is the user (``identity = "none"``): with
    ``logging.personal_data`` off, a refused challenge logs and audits no user name."""
    upn = UPN
    client = await start(validator={"identity": "none"}, on_missing_identifier="allow")
    with capture_logs() as logs:
        answer = await present(client, upn, intune[1].issue_challenge(upn, ttl=-1.0))  # expired
    assert answer["allow"] is False
    [decision] = [e for e in logs if e["event"] == "webhook.decision"]
    persistence = client.server.app[PERSISTENCE]
    await until(lambda: persistence.audit.written >= 1)
    [entry] = await persistence.store.query_decisions(AuditQuery(limit=5))
    assert decision["identifier"] == entry.identifier == USER_NAME_HIDDEN


async def test_a_users_name_in_an_issued_certificate_is_kept_only_with_personal_data(
    start: Any, intune: Any
) -> None:
    client = await start(validator={"identity": "none"}, on_missing_identifier="allow")
    body = notify_success_body(UPN, issued_certificate(UPN), transaction_id="tx-upn")
    with capture_logs() as logs:
        response = await post(client, "/webhooks/intune-notify", body, NOTIFY_ID)
    assert response.status == 200
    [line] = [e for e in logs if e["event"] == "scep.notified"]
    assert line["identifier"] == USER_NAME_HIDDEN
    persistence = client.server.app[PERSISTENCE]
    await until(lambda: persistence.audit.written >= 1)
    [entry] = await persistence.store.query_decisions(AuditQuery(limit=5))
    assert entry.identifier == USER_NAME_HIDDEN
