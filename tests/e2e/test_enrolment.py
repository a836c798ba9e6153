"""A simulated Apple device enrols through a real step-ca, which asks the real connector.

Every assertion is on what step-ca returned: the issued certificate (parsed with cryptography)
or the ACME problem document, plus the connector's log where the rule is "never reached".
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from posture_lab import Lab, StaticStepCA, summarize, toml_document
from posture_lab.devicesim import AcmeError, AttestationCA, SimulatedDevice
from tests.e2e.conftest import MANAGED_SERIAL, UDID_ONLY, UNMANAGED_SERIAL

pytestmark = pytest.mark.e2e

SMALLSTEP_ERROR = "urn:smallstep:acme:error:"
UNAUTHORIZED = "urn:ietf:params:acme:error:unauthorized"
SERVER_INTERNAL = "urn:ietf:params:acme:error:serverInternal"
BAD_ATTESTATION = "urn:ietf:params:acme:error:badAttestationStatement"


def webhook_events(lab: Lab, since: int) -> list[dict[str, object]]:
    """Connector log events about webhook requests (decided or rejected) after `since`."""
    return [
        e
        for e in lab.connector.events(since)
        if e.get("event") in {"webhook.decision", "request.rejected", "request.failed"}
    ]


def test_managed_device_gets_certificate_enriched_through_template(lab: Lab) -> None:
    """A managed device gets a certificate carrying user, e-mail, groups and department."""
    device = SimulatedDevice.generate(serial=MANAGED_SERIAL)

    result = lab.enrol(device)

    leaf = result.leaf
    summary = summarize(leaf)
    assert summary.common_name == "alice"
    assert summary.emails == ("alice@example.com",)
    assert set(summary.organizational_units) == {"Engineering", "VPN Users"}
    assert summary.department == "Research & Development"
    assert summary.serial_number == MANAGED_SERIAL
    assert summary.permanent_identifiers == (MANAGED_SERIAL,)
    assert leaf.public_key() == device.key.public_key()
    assert leaf.issuer == result.chain[1].subject


def test_udid_identified_device_gets_certificate_enriched(lab: Lab) -> None:
    """A device enrolling with its UDID as permanent identifier is looked up by UDID."""
    device = SimulatedDevice.generate(udid=UDID_ONLY)

    result = lab.enrol(device, use_udid=True)

    summary = summarize(result.leaf)
    assert summary.common_name == "bob"
    assert summary.emails == ("bob@example.com",)
    assert summary.organizational_units == ("Corporate iPhones",)
    assert summary.department == "Finance"
    assert summary.permanent_identifiers == (UDID_ONLY,)


@pytest.mark.parametrize(
    ("serial", "code"),
    [(None, "device-not-found"), (UNMANAGED_SERIAL, "device-unmanaged")],
    ids=["unknown", "unmanaged"],
)
def test_refused_device_sees_connector_code_in_acme_error(
    lab: Lab, serial: str | None, code: str
) -> None:
    """An unknown or unmanaged device gets no certificate; the ACME error names our code."""
    device = SimulatedDevice.generate(serial=serial)

    with pytest.raises(AcmeError) as caught:
        lab.enrol(device)

    assert caught.value.status == 401
    assert caught.value.type == UNAUTHORIZED
    assert f"{SMALLSTEP_ERROR}{code}" in caught.value.types


def test_wrong_webhook_secret_makes_issuance_fail(connector_restored: Lab) -> None:
    """With a secret step-ca does not know, the connector answers 401 and nothing is issued."""
    lab = connector_restored
    wrong = base64.b64encode(secrets.token_bytes(64)).decode()
    lab.write_connector_config(secrets={"people": wrong, "gate": wrong})
    lab.start_connector()
    since, ca_since = lab.connector.log_offset(), lab.ca.log_offset()

    with pytest.raises(AcmeError) as caught:
        lab.enrol(SimulatedDevice.generate(serial=MANAGED_SERIAL))

    assert caught.value.type == SERVER_INTERNAL
    assert "Webhook server responded with 401" in lab.ca.log_since(ca_since)
    rejected = [e for e in webhook_events(lab, since) if e["event"] == "request.rejected"]
    assert rejected
    assert {e["code"] for e in rejected} == {"signature-invalid"}
    assert {e["status"] for e in rejected} == {401}


def test_stopped_connector_fails_closed(connector_restored: Lab) -> None:
    """With the connector down step-ca cannot enrich, so it issues nothing."""
    lab = connector_restored
    lab.connector.stop()
    ca_since = lab.ca.log_offset()

    with pytest.raises(AcmeError) as caught:
        lab.enrol(SimulatedDevice.generate(serial=MANAGED_SERIAL))

    assert caught.value.status == 500
    assert caught.value.type == SERVER_INTERNAL
    ca_log = lab.ca.log_since(ca_since)
    assert lab.webhook_url("people") in ca_log
    assert "connection refused" in ca_log


def test_untrusted_attestation_never_reaches_connector(lab: Lab) -> None:
    """An attestation chaining to a root step-ca does not trust fails before any webhook call."""
    since = lab.connector.log_offset()
    rogue = AttestationCA.generate(name="Rogue Attestation")

    with pytest.raises(AcmeError) as caught:
        lab.enrol(SimulatedDevice.generate(serial=MANAGED_SERIAL), attestation=rogue)

    assert caught.value.type == BAD_ATTESTATION
    assert webhook_events(lab, since) == []
    # The log is live: the same device with a trusted attestation is seen at once.
    lab.enrol(SimulatedDevice.generate(serial=MANAGED_SERIAL))
    seen = webhook_events(lab, since)
    assert [(e["webhook"], e["allow"]) for e in seen] == [("people", True), ("gate", True)]


def test_ca_json_webhook_with_empty_key_accepted_with_verified_client_cert(
    lab: Lab, static_ca: StaticStepCA
) -> None:
    """A ca.json-only webhook (empty HMAC key) works when step-ca's client cert is verified."""
    since = lab.connector.log_offset()

    result = lab.enrol(
        SimulatedDevice.generate(serial=MANAGED_SERIAL),
        directory_url=static_ca.acme_directory("static"),
    )

    assert summarize(result.leaf).emails == ("alice@example.com",)
    seen = webhook_events(lab, since)
    assert [(e["webhook"], e["allow"]) for e in seen] == [
        ("static-people", True),
        ("static-gate", True),
    ]


def test_ca_json_webhook_without_client_cert_is_refused(lab: Lab, static_ca: StaticStepCA) -> None:
    """The same empty-key webhook sent without a client certificate is rejected: no cert."""
    since, ca_since = lab.connector.log_offset(), static_ca.log_offset()

    with pytest.raises(AcmeError) as caught:
        lab.enrol(
            SimulatedDevice.generate(serial=MANAGED_SERIAL),
            directory_url=static_ca.acme_directory("static-nocert"),
        )

    assert caught.value.type == SERVER_INTERNAL
    assert "Webhook server responded with 403" in static_ca.log_since(ca_since)
    rejected = webhook_events(lab, since)
    assert [(e["event"], e["code"]) for e in rejected] == [
        ("request.rejected", "client-certificate-required")
    ]


def test_empty_secret_without_client_cert_requirement_is_refused_by_connector(lab: Lab) -> None:
    """The connector will not start an empty-key webhook that does not require a client cert."""
    document = lab.connector_document()
    document["webhooks"] = [{**document["webhooks"][0], "secret": "", "require_client_cert": False}]
    path = lab.directory / "empty-key-no-mtls.toml"
    path.write_text(toml_document(document), encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "connector", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "require_client_cert" in result.stderr


def test_device_key_is_p384(lab: Lab) -> None:
    """The simulated device uses a P-384 key like Apple's, and step-ca certifies that key."""
    device = SimulatedDevice.generate(serial=MANAGED_SERIAL)

    key = lab.enrol(device).leaf.public_key()

    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp384r1"
