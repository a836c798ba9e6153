"""Replay requests captured from a real step-ca v0.30.2 (tests/fixtures/captured/).

The e2e suite records them (``RECAPTURE_VECTORS=1 pytest tests/e2e/test_capture.py``); these
fast tests keep signature checking, parsing and the whole app faithful to the real wire.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.models import WebhookRequest
from connector.signing import decode_secret, verify_signature
from connector.stepca import go_json
from posture_lab import summarize
from tests.helpers import make_settings

CAPTURED = Path(__file__).parent / "fixtures" / "captured"
REPLAYED_HEADERS = ("User-Agent", "X-Request-Id", "X-Smallstep-Signature", "X-Smallstep-Webhook-Id")


@dataclass(frozen=True, slots=True)
class Vector:
    """One captured request: raw body plus what was recorded around it."""

    meta: dict[str, Any]
    body: bytes

    def header(self, name: str) -> str:
        """A recorded header (names compared case-insensitively)."""
        return str(next(v for k, v in self.meta["headers"] if k.lower() == name.lower()))

    @property
    def key(self) -> bytes:
        """The HMAC key step-ca used (the printed secret, base64-decoded)."""
        return decode_secret(self.meta["secret"])


def load(stem: str) -> Vector:
    """Read `<stem>.json` and the exact bytes in `<stem>.body`."""
    meta = json.loads((CAPTURED / f"{stem}.json").read_text(encoding="utf-8"))
    return Vector(meta=meta, body=(CAPTURED / meta["body_file"]).read_bytes())


@pytest.fixture(params=["enriching", "authorizing"])
def vector(request: pytest.FixtureRequest) -> Vector:
    """Each captured request in turn."""
    return load(request.param)


def test_captured_signature_verifies(vector: Vector) -> None:
    """step-ca's signature is HMAC-SHA256 of the raw body keyed with the decoded secret."""
    assert verify_signature(vector.body, vector.header("X-Smallstep-Signature"), vector.key)


def test_captured_body_with_one_byte_changed_is_rejected(vector: Vector) -> None:
    """Any change to the signed bytes breaks the signature."""
    tampered = vector.body.replace(b"C02LABMANAGED", b"C02LABMANAGEE", 1)

    assert tampered != vector.body
    assert not verify_signature(tampered, vector.header("X-Smallstep-Signature"), vector.key)


def test_captured_signature_fails_with_another_secret(vector: Vector) -> None:
    """The key matters: the same body under a different secret does not verify."""
    assert not verify_signature(vector.body, vector.header("X-Smallstep-Signature"), bytes(64))


def test_captured_request_carries_no_content_type(vector: Vector) -> None:
    """step-ca sends no Content-Type, so the connector must parse the raw body itself."""
    names = {k.lower() for k, _ in vector.meta["headers"]}

    assert "content-type" not in names
    assert "x-smallstep-webhook-id" in names


def test_go_json_reproduces_captured_bytes(vector: Vector) -> None:
    """Our Go-style encoder writes exactly the bytes step-ca wrote, so `send` signs alike."""
    assert go_json(json.loads(vector.body)) == vector.body


def test_captured_enriching_body_parses() -> None:
    """ENRICHING carries the attested identifier and the CSR (empty subject, as Apple sends)."""
    vector = load("enriching")

    request = WebhookRequest.model_validate_json(vector.body)

    assert request.permanent_identifier == vector.meta["permanent_identifier"]
    assert request.x509_certificate is None
    assert request.x509_certificate_request is not None
    assert request.x509_certificate_request.subject.common_name is None
    raw = request.x509_certificate_request.raw
    assert raw is not None
    csr = x509.load_der_x509_csr(base64.b64decode(raw))
    assert csr.is_signature_valid


def test_captured_authorizing_body_parses() -> None:
    """AUTHORIZING carries the rendered template: the enrichment is visible in it."""
    vector = load("authorizing")

    request = WebhookRequest.model_validate_json(vector.body)

    assert request.permanent_identifier == vector.meta["permanent_identifier"]
    assert request.x509_certificate_request is None
    assert request.x509_certificate is not None
    assert request.x509_certificate.subject.common_name == "alice"
    assert {"type": "email", "value": "alice@example.com"} in (request.x509_certificate.sans or [])


async def test_app_answers_captured_requests(aiohttp_client: Any, tmp_path: Path) -> None:
    """The whole service allows the captured calls for a managed device, byte for byte."""
    enriching, authorizing = load("enriching"), load("authorizing")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "serial": enriching.meta["permanent_identifier"],
                        "managed": True,
                        "user": {"username": "alice", "email": "alice@example.com"},
                        "groups": ["Engineering"],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    hooks = [
        {
            "name": v.meta["webhook_name"],
            "kind": v.meta["kind"],
            "path": v.meta["path"],
            "id": v.meta["webhook_id"],
            "secret": v.meta["secret"],
            "providers": ["inventory"],
            "policy": {"managed": True},
        }
        for v in (enriching, authorizing)
    ]
    settings = make_settings(
        {
            "server": {"plain_http": True},
            "providers": {
                "inventory": {"kind": "json", "path": str(inventory), "reload_interval": 0}
            },
            "webhooks": hooks,
        }
    )
    captured_at = WebhookRequest.model_validate_json(authorizing.body).timestamp
    app = create_app(settings, clock=lambda: captured_at)
    client = await aiohttp_client(app)
    await app[PROVIDERS_STARTED].wait()

    answers = []
    for vector in (enriching, authorizing):
        headers = {name: vector.header(name) for name in REPLAYED_HEADERS}
        response = await client.post(vector.meta["path"], data=vector.body, headers=headers)
        assert response.status == 200
        answers.append(await response.json())

    assert [a["allow"] for a in answers] == [True, True]
    assert answers[0]["data"]["user"]["username"] == "alice"


def test_issued_certificate_carries_template_fields() -> None:
    """The certificate step-ca issued in that run shows the enrichment via the template."""
    leaf = x509.load_pem_x509_certificates((CAPTURED / "issued-chain.pem").read_bytes())[0]

    summary = summarize(leaf)

    assert summary.common_name == "alice"
    assert summary.emails == ("alice@example.com",)
    assert set(summary.organizational_units) == {"Engineering", "VPN Users"}
    assert summary.department == "Research & Development"
    assert summary.permanent_identifiers == ("C02LABMANAGED",)
