"""Reading back what the example template put into a device certificate."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

DEPARTMENT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
PERMANENT_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3")


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    """What the template put into a device certificate, read back with `cryptography`.

    Attributes:
        common_name: subject CN (the user, per the example template).
        organizational_units: subject OUs (the groups).
        serial_number: subject serialNumber attribute (the device serial).
        emails: rfc822Name SANs.
        permanent_identifiers: permanentIdentifier otherName SAN values.
        department: the UTF8String in extension 1.3.6.1.4.1.99999.1.
    """

    common_name: str | None
    organizational_units: tuple[str, ...]
    serial_number: str | None
    emails: tuple[str, ...]
    permanent_identifiers: tuple[str, ...]
    department: str | None


def summarize(cert: x509.Certificate) -> CertificateSummary:
    """Read the fields the example template fills."""

    def attrs(oid: x509.ObjectIdentifier) -> tuple[str, ...]:
        return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(oid))

    emails: tuple[str, ...] = ()
    permanent: tuple[str, ...] = ()
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = tuple(san.get_values_for_type(x509.RFC822Name))
        permanent = tuple(
            _permanent_identifier(o.value)
            for o in san.get_values_for_type(x509.OtherName)
            if o.type_id == PERMANENT_IDENTIFIER_OID
        )
    department = None
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_oid(DEPARTMENT_OID).value
        if isinstance(ext, x509.UnrecognizedExtension):
            department = _der_utf8(ext.value)
    cns, serials = attrs(NameOID.COMMON_NAME), attrs(NameOID.SERIAL_NUMBER)
    return CertificateSummary(
        common_name=cns[0] if cns else None,
        organizational_units=attrs(NameOID.ORGANIZATIONAL_UNIT_NAME),
        serial_number=serials[0] if serials else None,
        emails=emails,
        permanent_identifiers=permanent,
        department=department,
    )


def _der_length(data: bytes, at: int) -> tuple[int, int]:
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    return int.from_bytes(data[at + 1 : at + 1 + count], "big"), at + 1 + count


def _der_utf8(data: bytes) -> str | None:
    """Decode a DER UTF8String (tag 0x0C) or return None."""
    if len(data) < 2 or data[0] != 0x0C:
        return None
    length, start = _der_length(data, 1)
    return data[start : start + length].decode("utf-8", errors="replace")


def _permanent_identifier(data: bytes) -> str:
    """`PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String OPTIONAL, ... }`."""
    if data and data[0] == 0x30:
        _, start = _der_length(data, 1)
        value = _der_utf8(data[start:])
        if value is not None:
            return value
    return data.hex()
