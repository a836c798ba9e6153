"""SCEP webhook bodies as step-ca v0.30.2 writes them, and the CSRs and certificates inside.

Read from step-ca's ``authority/provisioner/scep.go`` and ``webhook/options.go``: SCEPCHALLENGE
sends the CSR (``x509util.NewCertificateRequestFromX509``, not canonicalised as ACME does),
``provisionerName``, ``scepChallenge`` and ``scepTransactionID``; a NOTIFYING success sends the
CSR and only the outer fields of ``x509Certificate`` (``raw`` = the DER); a failure sends
``scepErrorDescription`` and no ``scepErrorCode`` (it is 0 and ``omitempty``).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import AttributeOID, NameOID

from connector.stepca import go_json, rfc3339_nano
from tests.helpers import FIXED_NOW

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def scep_csr(
    common_name: str | None,
    challenge: str | None = None,
    alt_names: Sequence[x509.GeneralName] = (),
    subject: Sequence[x509.NameAttribute[Any]] = (),
) -> bytes:
    """A DER PKCS#10 request as a SCEP client makes it (RSA, challengePassword attribute, and
    the subject attributes and alternative names its profile asks for)."""
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    names += subject
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    csr = builder.sign(_KEY, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def _der(tag: int, content: bytes) -> bytes:
    """One DER element: `tag`, the definite length of `content`, `content`."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _elements(content: bytes) -> list[bytes]:
    """The DER elements one after another in `content`, each whole (tag, length, value)."""
    found, at = [], 0
    while at < len(content):
        size, start = content[at + 1], at + 2
        if size & 0x80:
            count = size & 0x7F
            size, start = int.from_bytes(content[start : start + count], "big"), start + count
        found.append(content[at : start + size])
        at = start + size
    return found


def _value_of(element: bytes) -> bytes:
    """The value of one whole DER element."""
    size, start = element[1], 2
    if size & 0x80:
        start += size & 0x7F
    return element[start:]


def _attributes(der: bytes) -> tuple[list[bytes], bytes, list[bytes]]:
    """A CSR's (info's first three parts, its signature algorithm, its attributes)."""
    request = _elements(_value_of(der))
    info = _elements(_value_of(request[0]))
    return info[:3], request[1], _elements(_value_of(info[3]))


def csr_with_extension_requests(
    common_name: str, challenge: str, *requests: Sequence[x509.ExtensionType]
) -> bytes:
    """A SCEP CSR with one extensionRequest attribute per item of `requests`, as no library
    builds it (Go's parser merges them all; cryptography reads the first), signed."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    attributes: list[bytes] = []
    for extensions in requests:
        builder = x509.CertificateSigningRequestBuilder().subject_name(name)
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        der = builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        attributes += _attributes(der)[2]
    head, algorithm, password = _attributes(scep_csr(common_name, challenge))
    return _signed([*head, _der(0xA0, b"".join(sorted(password + attributes)))], algorithm)


def _signed(info_parts: Sequence[bytes], algorithm: bytes) -> bytes:
    """A CSR of the request-info parts `info_parts` (DER), signed with `algorithm`."""
    info = _der(0x30, b"".join(info_parts))
    signature = _KEY.sign(info, padding.PKCS1v15(), hashes.SHA256())
    return _der(0x30, info + algorithm + _der(0x03, b"\x00" + signature))


def odd_csrs(common_name: str, challenge: str) -> dict[str, bytes]:
    """Signed CSRs Go parses and cryptography refuses by raising something other than
    `ValueError`: a version other than 0, and an organisation encoded as a BIT STRING."""
    request = _elements(_value_of(scep_csr(common_name, challenge)))
    version, _, *rest = _elements(_value_of(request[0]))
    cn = _der(0x30, _der(0x06, b"\x55\x04\x03") + _der(0x13, common_name.encode()))
    org = _der(0x30, _der(0x06, b"\x55\x04\x0a") + _der(0x03, b"\x00ab"))
    subject = _der(0x30, _der(0x31, cn) + _der(0x31, org))
    return {
        "version-1": _signed(
            [_der(0x02, b"\x01"), *_elements(_value_of(request[0]))[1:]], request[1]
        ),
        "bit-string-attribute": _signed([version, subject, *rest], request[1]),
    }


def csr_with_cn_of_tag(common_name: str, challenge: str, tag: int) -> bytes:
    """A signed CSR whose only subject attribute is a common name of ASN.1 type `tag`, its
    text in the encoding that type uses (UniversalString: UTF-32BE; else the bytes)."""
    request = _elements(_value_of(scep_csr(common_name, challenge)))
    version, _, *rest = _elements(_value_of(request[0]))
    text = common_name.encode("utf-32-be" if tag == 0x1C else "utf-8")
    cn = _der(0x30, _der(0x06, b"\x55\x04\x03") + _der(tag, text))
    return _signed([version, _der(0x30, _der(0x31, cn)), *rest], request[1])


def _csr_member(der: bytes) -> dict[str, Any]:
    try:
        csr = x509.load_der_x509_csr(der)
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError, x509.InvalidVersion):  # broken, as a test sends it
        return {"subject": {}, "raw": base64.b64encode(der).decode()}
    spki = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    return {
        "version": 0,
        "subject": {"commonName": cn[-1].value} if cn else {},
        "rawSubject": base64.b64encode(csr.subject.public_bytes()).decode(),
        "dnsNames": sans.get_values_for_type(x509.DNSName) or None,
        "emailAddresses": sans.get_values_for_type(x509.RFC822Name) or None,
        "ipAddresses": [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] or None,
        "uris": None,  # Go writes each url.URL as an object; no test sends a URI
        "sans": None,
        "extensions": None,
        "keyUsage": None,
        "extKeyUsage": [],
        "unknownExtKeyUsage": None,
        "basicConstraints": None,
        "signatureAlgorithm": "",
        "publicKey": base64.b64encode(spki).decode(),
        "publicKeyAlgorithm": "RSA",
        "raw": base64.b64encode(der).decode(),
    }


def challenge_body(
    common_name: str | None,
    challenge: str | None,
    *,
    transaction_id: str = "7b3c2a1f9e8d",
    now: datetime = FIXED_NOW,
    csr_der: bytes | None = None,
) -> bytes:
    """A SCEPCHALLENGE body; `challenge` None leaves the (omitempty) member out."""
    der = csr_der if csr_der is not None else scep_csr(common_name, challenge)
    body: dict[str, Any] = {
        "timestamp": rfc3339_nano(now),
        "provisionerName": "wifi",
        "x509CertificateRequest": _csr_member(der),
    }
    if challenge:
        body["scepChallenge"] = challenge
    body["scepTransactionID"] = transaction_id
    return go_json(body)


def issued_certificate(common_name: str, *, days: int = 30) -> x509.Certificate:
    """A certificate as a small CA would issue it for `common_name`."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Posture Lab Intermediate CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer)
        .public_key(_KEY.public_key())
        .serial_number(0x1F2E3D4C5B6A)
        .not_valid_before(FIXED_NOW - timedelta(minutes=5))
        .not_valid_after(FIXED_NOW + timedelta(days=days))
        .sign(ca_key, hashes.SHA256())
    )


def notify_success_body(
    common_name: str,
    cert: x509.Certificate,
    *,
    transaction_id: str = "7b3c2a1f9e8d",
    now: datetime = FIXED_NOW,
) -> bytes:
    """A NOTIFYING body after an issuance."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {
        "timestamp": rfc3339_nano(now),
        "x509CertificateRequest": _csr_member(scep_csr(common_name, "used")),
        "x509Certificate": {
            "publicKey": base64.b64encode(spki).decode(),
            "publicKeyAlgorithm": "RSA",
            "notBefore": rfc3339_nano(cert.not_valid_before_utc),
            "notAfter": rfc3339_nano(cert.not_valid_after_utc.astimezone(UTC)),
            "raw": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
        },
        "scepTransactionID": transaction_id,
    }
    return go_json(body)


def notify_failure_body(
    common_name: str,
    description: str,
    *,
    transaction_id: str = "7b3c2a1f9e8d",
    now: datetime = FIXED_NOW,
) -> bytes:
    """A NOTIFYING body after a failed signing (no scepErrorCode: 0 is omitted)."""
    body = {
        "timestamp": rfc3339_nano(now),
        "x509CertificateRequest": _csr_member(scep_csr(common_name, "used")),
        "scepTransactionID": transaction_id,
        "scepErrorDescription": description,
    }
    return go_json(body)
