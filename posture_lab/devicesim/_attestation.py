"""A simulated Apple device: a fake attestation PKI, a P-384 device key and its attestation.

step-ca's `apple` format (see PROTOCOL.md section 4) checks that the leaf in `attStmt.x5c`
chains to a configured attestation root, then reads four leaf extensions as raw bytes (no
ASN.1 wrapping): serial, UDID, sepOS version and the nonce, which must be SHA-256 of the
challenge token. Everything here is generated in memory, so a lab or a test can mint as many
devices (and as many untrusted roots) as it needs.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

OID_SERIAL = ObjectIdentifier("1.2.840.113635.100.8.9.1")
OID_UDID = ObjectIdentifier("1.2.840.113635.100.8.9.2")
OID_SEPOS_VERSION = ObjectIdentifier("1.2.840.113635.100.8.10.2")
OID_NONCE = ObjectIdentifier("1.2.840.113635.100.8.11.1")

_BACKDATE = timedelta(minutes=5)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "posture-connector lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


@dataclass(frozen=True, slots=True)
class AttestationCA:
    """A fake "Apple Enterprise Attestation" root and intermediate (ECDSA P-256).

    Attributes:
        root: self-signed root, the value for the provisioner's `attestationRoots`.
        intermediate: CA signed by the root; it signs the attestation leaves.
        intermediate_key: the intermediate's private key.
    """

    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls, name: str = "Fake Apple Enterprise Attestation") -> AttestationCA:
        """Mint a fresh root and intermediate valid from a few minutes ago for a year."""
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name(f"{name} Root CA")
        root = _ca_builder(root_name, root_name, root_key.public_key(), 365).sign(
            root_key, hashes.SHA256()
        )
        inter_key = ec.generate_private_key(ec.SECP256R1())
        inter = (
            _ca_builder(_name(f"{name} Sub CA"), root_name, inter_key.public_key(), 365)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        return cls(root=root, intermediate=inter, intermediate_key=inter_key)

    @property
    def root_pem(self) -> bytes:
        """The root as PEM (what `--attestation-roots` reads)."""
        return self.root.public_bytes(serialization.Encoding.PEM)

    def issue_leaf(self, device: SimulatedDevice, nonce: bytes | None) -> x509.Certificate:
        """Sign the attestation leaf for `device`, with `nonce` (32 bytes) when given.

        Every Apple extension is non-critical (Go rejects unknown critical ones) and holds raw
        bytes, exactly as step-ca reads them.
        """
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(secrets.token_hex(16)))
            .issuer_name(self.intermediate.subject)
            .public_key(device.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        raw = [
            (OID_SERIAL, device.serial.encode()),
            (OID_UDID, device.udid.encode()),
            (OID_SEPOS_VERSION, device.sepos_version.encode()),
        ]
        if nonce is not None:
            raw.append((OID_NONCE, nonce))
        for oid, value in raw:
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        return builder.sign(self.intermediate_key, hashes.SHA256())


def _random_serial() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "C02" + "".join(secrets.choice(alphabet) for _ in range(9))


def _random_udid() -> str:
    return f"00008030-{secrets.token_hex(8).upper()}"


@dataclass(frozen=True, slots=True)
class SimulatedDevice:
    """An Apple device as step-ca sees it through its attestation.

    Attributes:
        serial: hardware serial number (one possible ACME permanent identifier).
        udid: unique device id (the other possible permanent identifier).
        key: the device's P-384 key; the attested key and the CSR key must be the same.
        sepos_version: carried in the attestation, stored by step-ca, never checked.
    """

    serial: str
    udid: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    sepos_version: str = "17.4"

    @classmethod
    def generate(cls, serial: str | None = None, udid: str | None = None) -> SimulatedDevice:
        """A device with a fresh P-384 key; serial and UDID are random unless given."""
        return cls(
            serial=serial or _random_serial(),
            udid=udid or _random_udid(),
            key=ec.generate_private_key(ec.SECP384R1()),
        )

    def attestation_object(
        self, ca: AttestationCA, token: str, *, include_nonce: bool = True
    ) -> bytes:
        """The CBOR attestation object for a device-attest-01 challenge with `token`."""
        nonce = hashlib.sha256(token.encode("ascii")).digest() if include_nonce else None
        leaf = ca.issue_leaf(self, nonce)
        x5c = [
            leaf.public_bytes(serialization.Encoding.DER),
            ca.intermediate.public_bytes(serialization.Encoding.DER),
        ]
        encoded: bytes = cbor2.dumps({"fmt": "apple", "attStmt": {"x5c": x5c}})
        return encoded

    def csr(self, identifier: str | None = None) -> x509.CertificateSigningRequest:
        """A CSR signed by the device key; the CN is the identifier or empty (step-ca's rule)."""
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, identifier)] if identifier else []
        )
        return (
            x509.CertificateSigningRequestBuilder()
            .subject_name(subject)
            .sign(self.key, hashes.SHA384())
        )

    def key_pem(self) -> bytes:
        """The device key as unencrypted PKCS#8 PEM (for the lab's output directory)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
