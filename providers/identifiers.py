"""Device identifiers that an attestation can carry, and the strict shape check they pass.

Every identifier reaches a provider only after `classify` accepted it, so providers may put it
into RSQL, OData or CSV lookups without escaping: the Apple and YubiKey shapes admit only
``[A-Za-z0-9-]``; a TPM EK adds the base64 characters ``+/=_`` and a ``urn:ek:sha256:`` prefix.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class IdentifierKind(enum.StrEnum):
    """Kinds of permanent identifier that step-ca attests."""

    SERIAL = "serial"  # Apple hardware serial number
    UDID = "udid"  # Apple UDID, in any of its three forms
    YUBIKEY_SERIAL = "yubikey-serial"  # decimal YubiKey serial (step format)
    TPM_EK = "tpm-ek"  # TPM endorsement key URI or hash (tpm format)


# Apple serials: 8 to 14 upper-case alphanumerics (older 11/12, newer randomised 10, some 14).
_SERIAL = re.compile(r"[A-Z0-9]{8,14}")
# iPhone/iPad/Apple silicon: 8 hex, dash, 16 hex.
_UDID_T8 = re.compile(r"[0-9A-F]{8}-[0-9A-F]{16}")
# Intel Macs: a UUID.
_UDID_UUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
# Older iOS devices: 40 hex digits (lower-case as the device reports it).
_UDID_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_YUBIKEY = re.compile(r"[0-9]{6,10}")
_TPM_EK = re.compile(r"(urn:ek:sha256:)?[A-Za-z0-9+/=_-]{43,64}")

MAX_IDENTIFIER_LENGTH = 80


@dataclass(frozen=True, slots=True)
class DeviceIdentifier:
    """An attested identifier that passed the shape check.

    Attributes:
        value: The identifier exactly as attested (Apple compares it case-sensitively).
        kind: Which shape it matched.
    """

    value: str
    kind: IdentifierKind

    @property
    def normalized(self) -> str:
        """Cache and index key: inventories write UDIDs and serials in either case."""
        return self.value.upper()


class IdentifierShapeError(ValueError):
    """When an attested identifier matches none of the accepted shapes."""


def classify(value: str, accepted: frozenset[IdentifierKind] | None = None) -> DeviceIdentifier:
    """Return the identifier's kind, or raise `IdentifierShapeError`.

    UDID shapes are tried before serials because a 40-hex UDID is never a serial; a
    pure-digit value counts as a YubiKey serial only where that kind is accepted.
    """
    kinds = accepted if accepted is not None else frozenset(IdentifierKind)
    if not value or len(value) > MAX_IDENTIFIER_LENGTH:
        raise IdentifierShapeError("identifier is empty or too long")
    if not value.isascii():  # before any case mapping: 'ﬀ'.upper() is 'FF', a UDID's hex
        raise IdentifierShapeError("identifier holds characters other than ASCII")
    candidates: list[tuple[IdentifierKind, re.Pattern[str]]] = [
        (IdentifierKind.UDID, _UDID_T8),
        (IdentifierKind.UDID, _UDID_UUID),
        (IdentifierKind.UDID, _UDID_SHA1),
        (IdentifierKind.YUBIKEY_SERIAL, _YUBIKEY),
        (IdentifierKind.SERIAL, _SERIAL),
        (IdentifierKind.TPM_EK, _TPM_EK),
    ]
    for kind, pattern in candidates:
        if kind in kinds and pattern.fullmatch(_case_for(kind, value)):
            return DeviceIdentifier(value=value, kind=kind)
    names = ", ".join(sorted(k.value for k in kinds))
    raise IdentifierShapeError(f"identifier does not have an accepted shape ({names})")


def _case_for(kind: IdentifierKind, value: str) -> str:
    # UDIDs of the two dashed forms are upper-case on the device; inventories may lower them.
    return value.upper() if kind is IdentifierKind.UDID and "-" in value else value


def ascii_upper(value: str | None) -> str:
    """An upstream's serial or UDID in the form `DeviceIdentifier.normalized` compares with:
    upper case, and "" (never equal) unless ASCII. An attested identifier is ASCII, and Unicode
    maps other letters onto ASCII ones (``'ﬁ'.upper() == 'FI'``)."""
    return value.upper() if value and value.isascii() else ""
