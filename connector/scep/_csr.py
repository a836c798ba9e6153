"""What a SCEP decision reads from the CSR and the issued certificate (pure, no I/O).

The identity a challenge is bound to is compared with the CSR's subject common name, read from
the CSR's own DER (step-ca's ``raw``), the bytes step-ca signs from and Intune validates. A
CSR with two common names is refused: Go keeps the last, other readers the first. Its subject
alternative names, and the subject's other attributes, are read too: step-ca's default template
copies them all into the certificate.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

ORGANISATION_ATTRIBUTES = frozenset(
    {
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
    }
)
"""Subject attributes that place a certificate in an organisation and name nobody in it (a
profile sets them alike for every device: micromdm's scepclient sends ``OU=MDM`` unasked);
every other one (an e-mail address, a UID, a serial number, a domain component) names a
subject."""

_EXTENSION_REQUESTS = (
    x509.ObjectIdentifier("1.2.840.113549.1.9.14"),  # PKCS#9 extensionRequest
    x509.ObjectIdentifier("1.3.6.1.4.1.311.2.1.14"),  # Microsoft's msExtReq
)


class CsrError(ValueError):
    """When step-ca's ``raw`` is not a readable PKCS#10 request or certificate."""


@dataclass(frozen=True, slots=True)
class CsrFacts:
    """The parts of a SCEP CSR a decision uses.

    Attributes:
        common_name: The subject CN, if any.
        base64_der: The request as standard base64 of its DER (Intune's ``certificateRequest``).
        alt_names: The subject alternative names it asks for, as text (DNS names, e-mail
            addresses, URIs, IP addresses); None for a kind with no text form (a UPN, a
            directory name, a registered id). None as a whole when it carries more than one
            extension request: Go (step-ca) merges them all, other readers take the first.
        subject_names: The values of the subject's attributes beyond the common name and
            `ORGANISATION_ATTRIBUTES` (None for a value that is not text).
    """

    common_name: str | None
    base64_der: str
    alt_names: tuple[str | None, ...] | None = ()
    subject_names: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class IssuedFacts:
    """What the audit log and Intune learn about an issued certificate.

    Attributes:
        serial: Serial number, upper-case hex.
        thumbprint: SHA-1 of the DER, upper-case hex (the Windows "thumbprint").
        not_after: Expiry, UTC.
        issuer: The issuer as an RFC 4514 string.
        issuer_common_name: The issuer's CN (or the RFC 4514 string when it has none).
        common_name: The subject CN, if any.
    """

    serial: str
    thumbprint: str
    not_after: datetime
    issuer: str
    issuer_common_name: str
    common_name: str | None

    @property
    def expires(self) -> str:
        """`not_after` as ISO 8601 UTC with a ``Z``."""
        return self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")


def _der(raw_b64: str | None, what: str) -> bytes:
    if not raw_b64:
        raise CsrError(f"the request carries no {what}")
    try:
        return base64.b64decode(raw_b64, validate=True)
    except ValueError:  # binascii.Error, or text other than ASCII
        raise CsrError(f"the {what} is not base64") from None


@contextmanager
def _names_of(what: str) -> Iterator[None]:
    """Turn a name the parser refuses only when it is read (cryptography reads names lazily:
    a common name whose UTF8String is not UTF-8, an attribute encoded as a BIT STRING, which
    Go reads) into `CsrError`."""
    try:
        yield
    except CsrError:
        raise
    except (ValueError, TypeError):
        raise CsrError(f"the {what} holds a name that cannot be read") from None


_GO_TEXT = frozenset({12, 18, 19, 20, 22, 30})
"""ASN.1 string tags Go's decoder reads into a CSR subject's text (UTF8String, NumericString,
PrintableString, T61String, IA5String, BMPString; `encoding/asn1`, into an ``any``): a value
of any other type (an OCTET STRING, a UniversalString) is text to cryptography but is left out
of the subject step-ca signs."""


def _go_text(attribute: x509.NameAttribute[str | bytes]) -> str | None:
    """The attribute's value as step-ca reads it from a CSR: its text, or None (not text)."""
    tag = getattr(attribute, "_type", None)  # cryptography's own; gone, nothing is text
    if isinstance(attribute.value, str) and getattr(tag, "value", None) in _GO_TEXT:
        return attribute.value
    return None


def _single_cn(name: x509.Name, what: str, *, as_go_reads: bool = False) -> str | None:
    """The one common name of `name`; `as_go_reads` (a CSR step-ca will sign from): only of a
    string type Go reads as text, as step-ca signs no other."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) > 1:
        raise CsrError(f"the {what} has more than one common name")
    if not values:
        return None
    if not as_go_reads:
        value = values[0].value
        return value if isinstance(value, str) and value else None
    text = _go_text(values[0])
    if text is None:  # step-ca would sign no common name: not the one we would compare
        raise CsrError(f"the {what}'s common name is not of a string type step-ca reads")
    return text or None


def read_csr(raw_b64: str | None) -> CsrFacts:
    """The CSR step-ca forwarded (`x509CertificateRequest.raw`); raises `CsrError`."""
    der = _der(raw_b64, "certificate request")
    try:
        csr = x509.load_der_x509_csr(der)
    except (ValueError, x509.InvalidVersion):  # Go signs a CSR of any version
        raise CsrError("the certificate request is not PKCS#10 DER") from None
    with _names_of("certificate request"):
        common_name = _single_cn(csr.subject, "certificate request", as_go_reads=True)
        alt_names = _alt_names(csr)
        subject_names = tuple(
            _go_text(attribute)
            for attribute in csr.subject
            if attribute.oid != NameOID.COMMON_NAME and attribute.oid not in ORGANISATION_ATTRIBUTES
        )
    return CsrFacts(
        common_name=common_name,
        base64_der=base64.b64encode(der).decode("ascii"),
        alt_names=alt_names,
        subject_names=subject_names,
    )


def _alt_names(csr: x509.CertificateSigningRequest) -> tuple[str | None, ...] | None:
    """The requested subject alternative names; None when the request carries several extension
    requests (which of them counts depends on the reader); `CsrError` for a request that repeats
    an extension or holds a name of a kind the parser does not know."""
    requests = [a for a in csr.attributes if a.oid in _EXTENSION_REQUESTS]
    if len(requests) > 1:
        # Go merges every extensionRequest (step-ca's template then sees all their names);
        # cryptography reads the first (or an msExtReq, which Go ignores): we would check other
        # names than step-ca signs.
        return None
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    except (x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CsrError("the certificate request's extensions cannot be read") from None
    texts: list[str | None] = []
    for name in extension.value:
        if isinstance(name, x509.DNSName | x509.RFC822Name | x509.UniformResourceIdentifier):
            texts.append(name.value)
        elif isinstance(name, x509.IPAddress):
            texts.append(str(name.value))
        else:
            texts.append(None)
    return tuple(texts)


def read_certificate(raw_b64: str | None) -> IssuedFacts:
    """The certificate a NOTIFYING success reports (`x509Certificate.raw`); raises `CsrError`."""
    der = _der(raw_b64, "certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        raise CsrError("the certificate is not X.509 DER") from None
    with _names_of("certificate"):
        issuer_cn = _single_cn(cert.issuer, "issuer")
        issuer = cert.issuer.rfc4514_string()
        common_name = _single_cn(cert.subject, "certificate subject")
    return IssuedFacts(
        serial=f"{cert.serial_number:X}",
        thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - an identifier, as Windows shows it
        not_after=cert.not_valid_after_utc.astimezone(UTC),
        issuer=issuer,
        issuer_common_name=issuer_cn or issuer,
        common_name=common_name,
    )
