"""The simulated Apple device produces what step-ca's `apple` attestation format checks."""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from posture_lab import toml_document
from posture_lab.devicesim import (
    OID_NONCE,
    OID_SEPOS_VERSION,
    OID_SERIAL,
    OID_UDID,
    AttestationCA,
    SimulatedDevice,
    b64url,
)

TOKEN = "Zb4e3sT1kq9XcVnR2mLpA0uYwH7jD5fG"


@pytest.fixture(scope="module")
def attestation() -> AttestationCA:
    """One fake attestation PKI for the module."""
    return AttestationCA.generate()


def decode(att_obj: bytes) -> tuple[x509.Certificate, x509.Certificate]:
    """Leaf and intermediate from an attestation object."""
    document = cbor2.loads(att_obj)
    assert document["fmt"] == "apple"
    leaf_der, inter_der = document["attStmt"]["x5c"]
    assert isinstance(leaf_der, bytes)
    return x509.load_der_x509_certificate(leaf_der), x509.load_der_x509_certificate(inter_der)


def test_attestation_leaf_carries_raw_apple_extensions(attestation: AttestationCA) -> None:
    """Serial, UDID, sepOS and nonce are raw bytes; the nonce is SHA-256 of the token."""
    device = SimulatedDevice.generate(serial="C02TESTSERIAL")

    leaf, _ = decode(device.attestation_object(attestation, TOKEN))

    def raw(oid: x509.ObjectIdentifier) -> bytes:
        ext = leaf.extensions.get_extension_for_oid(oid)
        assert not ext.critical
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        return ext.value.value

    assert raw(OID_SERIAL) == b"C02TESTSERIAL"
    assert raw(OID_UDID) == device.udid.encode()
    assert raw(OID_SEPOS_VERSION) == device.sepos_version.encode()
    assert raw(OID_NONCE) == hashlib.sha256(TOKEN.encode()).digest()


def test_attestation_chains_to_the_fake_root(attestation: AttestationCA) -> None:
    """Leaf → intermediate → root verifies, and the leaf certifies the device key."""
    device = SimulatedDevice.generate()

    leaf, inter = decode(device.attestation_object(attestation, TOKEN))

    leaf.verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(attestation.root)
    assert leaf.public_key() == device.key.public_key()
    assert isinstance(device.key, ec.EllipticCurvePrivateKey)
    assert device.key.curve.name == "secp384r1"


def test_nonce_can_be_left_out(attestation: AttestationCA) -> None:
    """Without a nonce the extension is absent (step-ca then skips the freshness check)."""
    leaf, _ = decode(
        SimulatedDevice.generate().attestation_object(attestation, TOKEN, include_nonce=False)
    )

    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_oid(OID_NONCE)


def test_csr_subject_is_empty_or_the_identifier() -> None:
    """step-ca accepts only an empty CN or the permanent identifier in the CSR."""
    device = SimulatedDevice.generate(serial="C02TESTSERIAL")

    assert list(device.csr().subject) == []
    named = device.csr("C02TESTSERIAL").subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [a.value for a in named] == ["C02TESTSERIAL"]


def test_b64url_has_no_padding() -> None:
    """attObj must be unpadded base64url: step-ca decodes with RawURLEncoding."""
    encoded = b64url(b"\xff\xfe")

    assert "=" not in encoded
    assert base64.urlsafe_b64decode(encoded + "==") == b"\xff\xfe"


def test_lab_toml_writer_round_trips() -> None:
    """The lab's TOML writer produces the tables and values it was given."""
    document = {
        "server": {"port": 8443, "client_dns_names": ["localhost"]},
        "providers": {"inventory": {"kind": "json", "path": "inventory.json"}},
        "webhooks": [
            {
                "name": "people",
                "secret": {"file": "people.secret"},
                "policy": {"managed": True, "groups": {"none_of": ['Lost & "Stolen"']}},
                "enrichment": {"personal_data": True},
            }
        ],
    }

    parsed = tomllib.loads(toml_document(document))

    assert json.loads(json.dumps(parsed)) == document
