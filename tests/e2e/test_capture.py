"""Record what a real step-ca sends to an ENRICHING and an AUTHORIZING webhook.

Each run checks the live requests against the connector's verification and parsing; with
``RECAPTURE_VECTORS=1`` it also rewrites tests/fixtures/captured/, which the fast unit tests
(tests/test_captured.py) replay without step-ca.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from connector.models import WebhookRequest
from connector.signing import decode_secret, verify_signature
from posture_lab import Lab, WebhookCredentials, pinned_versions
from posture_lab.devicesim import SimulatedDevice
from tests.e2e.capture import AUTHORIZE_REPLY, ENRICH_REPLY, CapturedRequest, CaptureServer
from tests.e2e.conftest import MANAGED_SERIAL

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captured"
PROVISIONER = "capture"


@pytest.fixture(scope="module")
def capture(lab: Lab) -> Iterator[tuple[CaptureServer, dict[str, WebhookCredentials]]]:
    """A provisioner whose two webhooks point at a recording server."""
    server = CaptureServer(
        lab.connector_dir / "tls.crt", lab.connector_dir / "tls.key", client_ca=lab.ca.root
    )
    server.start()
    try:
        roots = lab.directory / "attestation-root.pem"
        lab.ca.add_acme_provisioner(
            PROVISIONER, attestation_roots=roots, template=lab.options.template
        )
        base = f"https://127.0.0.1:{server.port}/capture"
        creds = {
            "people": lab.ca.add_webhook(
                PROVISIONER, "people", url=f"{base}/people", kind="ENRICHING"
            ),
            "gate": lab.ca.add_webhook(PROVISIONER, "gate", url=f"{base}/gate", kind="AUTHORIZING"),
        }
        yield server, creds
    finally:
        server.stop()


def header(request: CapturedRequest, name: str) -> str | None:
    """A header value, name compared case-insensitively."""
    return next((v for k, v in request.headers if k.lower() == name.lower()), None)


def test_real_requests_verify_and_parse(
    lab: Lab, capture: tuple[CaptureServer, dict[str, WebhookCredentials]]
) -> None:
    """What step-ca sends is signed with the printed secret and parses as a webhook request."""
    server, creds = capture
    device = SimulatedDevice.generate(serial=MANAGED_SERIAL)

    result = lab.enrol(device, provisioner=PROVISIONER)

    enriching, authorizing = server.requests[-2:]
    assert [enriching.path, authorizing.path] == ["/capture/people", "/capture/gate"]
    for request, name in ((enriching, "people"), (authorizing, "gate")):
        assert request.method == "POST"
        assert header(request, "X-Smallstep-Webhook-Id") == creds[name].id
        assert header(request, "Content-Type") is None
        assert "localhost" in request.client_dns_names
        key = decode_secret(creds[name].secret)
        assert verify_signature(request.body, header(request, "X-Smallstep-Signature"), key)
        assert (
            WebhookRequest.model_validate_json(request.body).permanent_identifier == MANAGED_SERIAL
        )
    csr_b64 = WebhookRequest.model_validate_json(enriching.body).x509_certificate_request
    assert csr_b64 is not None
    assert csr_b64.raw is not None
    csr = x509.load_der_x509_csr(base64.b64decode(csr_b64.raw))
    assert csr.public_key() == device.key.public_key()
    rendered = WebhookRequest.model_validate_json(authorizing.body).x509_certificate
    assert rendered is not None
    assert rendered.subject.common_name == ENRICH_REPLY["data"]["user"]["username"]
    assert result.leaf.public_key() == device.key.public_key()
    if os.environ.get("RECAPTURE_VECTORS") == "1":
        write_vector("enriching", enriching, creds["people"], "ENRICHING", ENRICH_REPLY)
        write_vector("authorizing", authorizing, creds["gate"], "AUTHORIZING", AUTHORIZE_REPLY)
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in result.chain)
        (FIXTURES / "issued-chain.pem").write_bytes(chain)


def write_vector(
    stem: str,
    request: CapturedRequest,
    creds: WebhookCredentials,
    kind: str,
    reply: dict[str, object],
) -> None:
    """`<stem>.body` holds the exact bytes; `<stem>.json` the headers, secret and context."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{stem}.body").write_bytes(request.body)
    versions = pinned_versions()
    meta = {
        "note": "Captured from a real step-ca by tests/e2e/test_capture.py (RECAPTURE_VECTORS=1).",
        "step_ca_version": versions.get("STEP_CA_VERSION"),
        "kind": kind,
        "webhook_name": creds.name,
        "webhook_id": creds.id,
        "secret": creds.secret,
        "method": request.method,
        "path": request.path,
        "headers": [list(h) for h in request.headers],
        "client_certificate_dns_names": list(request.client_dns_names),
        "permanent_identifier": MANAGED_SERIAL,
        "body_file": f"{stem}.body",
        "reply_given": reply,
    }
    (FIXTURES / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
