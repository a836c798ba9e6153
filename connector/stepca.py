"""Build, sign and send requests exactly as step-ca does: for `posture-connector send` and tests.

step-ca marshals the body once with Go's encoding/json (compact, HTML characters escaped as
``\\u003c``, ``\\u003e``, ``\\u0026``), signs those bytes, sends no Content-Type, and retries the
same bytes once on a 5xx.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.signing import decode_secret, signature


def go_json(value: Any) -> bytes:
    """Serialise like Go's `json.Marshal`: compact, UTF-8, with HTML-safe escapes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
        .encode("utf-8")
    )


def rfc3339_nano(moment: datetime) -> str:
    """Go's RFC3339Nano: nine fraction digits at most, trailing zeros trimmed, Z for UTC."""
    moment = moment.astimezone(UTC)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}000".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def sign(body: bytes, secret_b64: str) -> str:
    """The `X-Smallstep-Signature` step-ca would send for `body` (empty secret: empty key)."""
    return signature(body, decode_secret(secret_b64) if secret_b64 else b"")


def make_csr(common_name: str = "") -> bytes:
    """A DER CSR from a fresh P-256 key, CN as the device would set it (empty or the identifier)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def _public_key_b64(der_csr: bytes) -> str:
    csr = x509.load_der_x509_csr(der_csr)
    spki = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(spki).decode()


def enriching_body(
    identifier: str | None,
    *,
    csr_der: bytes | None = None,
    common_name: str | None = None,
    timestamp: datetime | None = None,
) -> bytes:
    """An ENRICHING body as step-ca v0.30 writes it for an ACME device-attest-01 finalize."""
    cn = (identifier or "") if common_name is None else common_name
    der = csr_der if csr_der is not None else make_csr(cn)
    subject = {"commonName": cn} if cn else {}
    body: dict[str, Any] = {"timestamp": rfc3339_nano(timestamp or datetime.now(UTC))}
    if identifier is not None:
        body["attestationData"] = {"permanentIdentifier": identifier}
    body["x509CertificateRequest"] = {
        "version": 0,
        "subject": subject,
        "rawSubject": "MAA=",
        "dnsNames": [cn.lower()] if cn else [],
        "emailAddresses": None,
        "ipAddresses": [],
        "uris": None,
        "sans": None,
        "extensions": None,
        "keyUsage": None,
        "extKeyUsage": [],
        "unknownExtKeyUsage": None,
        "basicConstraints": None,
        "signatureAlgorithm": "ECDSA-SHA256",
        "publicKey": _public_key_b64(der),
        "publicKeyAlgorithm": "ECDSA",
        "raw": base64.b64encode(der).decode(),
    }
    return go_json(body)


def authorizing_body(
    identifier: str | None, *, common_name: str = "", timestamp: datetime | None = None
) -> bytes:
    """An AUTHORIZING body: the certificate step-ca is about to sign, rendered from the template."""
    body: dict[str, Any] = {"timestamp": rfc3339_nano(timestamp or datetime.now(UTC))}
    if identifier is not None:
        body["attestationData"] = {"permanentIdentifier": identifier}
    sans = [{"type": "permanentIdentifier", "value": identifier}] if identifier else []
    body["x509Certificate"] = {
        "version": 3,
        "subject": {"commonName": common_name} if common_name else {},
        "rawSubject": None,
        "issuer": {},
        "serialNumber": str(secrets.randbits(64)),
        "dnsNames": None,
        "emailAddresses": None,
        "ipAddresses": None,
        "uris": None,
        "sans": sans,
        "extensions": None,
        "keyUsage": ["digitalSignature"],
        "extKeyUsage": ["clientAuth"],
        "publicKeyAlgorithm": "ECDSA",
        "notBefore": rfc3339_nano(datetime.now(UTC)),
        "notAfter": rfc3339_nano(datetime.now(UTC)),
    }
    return go_json(body)


def headers_for(
    body: bytes,
    *,
    webhook_id: str,
    secret_b64: str,
    bearer_token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    request_id: str | None = None,
) -> dict[str, str]:
    """The headers step-ca sends with `body` (and no Content-Type)."""
    headers = {
        "X-Smallstep-Signature": sign(body, secret_b64),
        "X-Smallstep-Webhook-Id": webhook_id,
        "X-Request-Id": request_id or uuid.uuid4().hex[:20],
        "User-Agent": "Go-http-client/1.1",
    }
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    elif basic_auth:
        token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers
