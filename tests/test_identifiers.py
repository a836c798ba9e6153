"""The shape check every attested identifier passes before any provider sees it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.identifiers import (
    MAX_IDENTIFIER_LENGTH,
    DeviceIdentifier,
    IdentifierKind,
    IdentifierShapeError,
    ascii_upper,
    classify,
)

APPLE = frozenset({IdentifierKind.SERIAL, IdentifierKind.UDID})
FILTER_SAFE = re.compile(r"[A-Za-z0-9+/=_:-]+")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("C02QUICK0001", IdentifierKind.SERIAL),
        ("FVFXC2ABHV2J", IdentifierKind.SERIAL),
        ("H4KQ2F7M9P", IdentifierKind.SERIAL),
        ("00008110-000A1C2E3F40801E", IdentifierKind.UDID),
        ("00008110-000a1c2e3f40801e", IdentifierKind.UDID),
        ("564D8C1A-3B2E-4F5A-9C6D-7E8F9A0B1C2D", IdentifierKind.UDID),
        ("4a6ec46c7aaf514cc1abf85c37a87fd0fda903e4", IdentifierKind.UDID),
        ("4A6EC46C7AAF514CC1ABF85C37A87FD0FDA903E4", IdentifierKind.UDID),
    ],
    ids=[
        "serial-12",
        "serial-12-letters",
        "serial-10-randomised",
        "udid-t8",
        "udid-t8-lowercase",
        "udid-mac-uuid",
        "udid-40-hex",
        "udid-40-hex-upper",
    ],
)
def test_apple_shapes_are_accepted(value: str, kind: IdentifierKind) -> None:
    """Apple serials and the three UDID forms classify as such, keeping the attested spelling."""
    identifier = classify(value, APPLE)
    assert identifier == DeviceIdentifier(value=value, kind=kind)
    assert identifier.normalized == value.upper()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "C" * (MAX_IDENTIFIER_LENGTH + 1),
        '"C02QUICK0001"',
        "C02QUICK'0001",
        "C02 QUICK0001",
        "C02QUICK0001 ",
        "C02QUICK;0001",
        "serial==C02Q",
        "C02QUICK,0001",
        "C02QUICK0001;managed==true",
        "name eq 'x'",
        "C02(QUICK)01",
        "C02*QUICK01",
        "C02QUICK\n0001",
        "c02quick0001",
        "C02Q",
        "00008110-000A1C2E3F40801",
        "00008110_000A1C2E3F40801E",
        "4a6ec46c7aaf514cc1abf85c37a87fd0fda903eg",
        "00008110-000A1C2E3F40\ufb001E",  # the ligature 'ﬀ' upper-cases to "FF"
        "C02QUICK000\u0131",  # a dotless i upper-cases to "I"
    ],
    ids=[
        "empty",
        "too-long",
        "double-quotes",
        "single-quote",
        "space",
        "trailing-space",
        "semicolon",
        "rsql-equals",
        "comma",
        "rsql-injection",
        "odata-injection",
        "parentheses",
        "wildcard",
        "newline",
        "lowercase-serial",
        "too-short",
        "udid-short",
        "udid-underscore",
        "hex40-not-hex",
        "udid-ligature",
        "dotless-i",
    ],
)
def test_malformed_identifiers_are_rejected(value: str) -> None:
    """Anything outside the known shapes, notably filter metacharacters, is refused."""
    with pytest.raises(IdentifierShapeError):
        classify(value, APPLE)


@pytest.mark.parametrize(
    ("value", "accepted", "kind"),
    [
        ("12345678", frozenset({IdentifierKind.SERIAL}), IdentifierKind.SERIAL),
        ("12345678", frozenset({IdentifierKind.YUBIKEY_SERIAL}), IdentifierKind.YUBIKEY_SERIAL),
        ("12345678", None, IdentifierKind.YUBIKEY_SERIAL),
        ("00008110-000A1C2E3F40801E", frozenset({IdentifierKind.UDID}), IdentifierKind.UDID),
    ],
    ids=["digits-as-serial", "digits-as-yubikey", "digits-any-kind", "udid-only"],
)
def test_accepted_kinds_choose_the_shape(
    value: str, accepted: frozenset[IdentifierKind] | None, kind: IdentifierKind
) -> None:
    """Only accepted kinds are tried, so an ambiguous value takes the kind the webhook allows."""
    assert classify(value, accepted).kind is kind


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("C02QUICK0001", frozenset({IdentifierKind.UDID})),
        ("00008110-000A1C2E3F40801E", frozenset({IdentifierKind.SERIAL})),
        ("4a6ec46c7aaf514cc1abf85c37a87fd0fda903e4", frozenset({IdentifierKind.SERIAL})),
        ("123456", APPLE),
    ],
    ids=["serial-udid-only", "udid-serial-only", "hex40-serial-only", "yubikey-apple-only"],
)
def test_kinds_not_accepted_are_refused(value: str, accepted: frozenset[IdentifierKind]) -> None:
    """A well-formed identifier of a kind the webhook does not accept is refused, naming kinds."""
    with pytest.raises(IdentifierShapeError, match="accepted shape"):
        classify(value, accepted)


# Near-misses: identifier alphabets mixed with filter metacharacters, so shapes are often hit.
NEAR = "ABCDEFQX0123456789abcdef-:+/=_ ;,'\"()*&|!<>\\"
CANDIDATES = st.one_of(
    st.text(
        st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF).map(chr), max_size=100
    ),
    st.text(alphabet=NEAR, min_size=6, max_size=70),
    st.text(alphabet="ABCDEF0123456789", min_size=8, max_size=45),
)


@given(st.text(min_size=1, max_size=40).filter(lambda t: not t.isascii()))
def test_no_identifier_with_characters_other_than_ascii_is_accepted(value: str) -> None:
    """Case mapping outside ASCII can make a value another device's (U+FB00 upper-cases to
    "FF"): such a value is refused before any shape is tried."""
    with pytest.raises(IdentifierShapeError, match="other than ASCII"):
        classify(value)


@given(CANDIDATES)
def test_accepted_identifiers_are_safe_in_filters(value: str) -> None:
    """Whatever classify accepts holds only [A-Za-z0-9+/=_:-], safe in RSQL and OData filters."""
    try:
        identifier = classify(value)
    except IdentifierShapeError:
        return
    assert FILTER_SAFE.fullmatch(identifier.value)
    assert len(identifier.value) <= MAX_IDENTIFIER_LENGTH


@given(CANDIDATES)
def test_apple_identifiers_hold_only_alphanumerics_and_dashes(value: str) -> None:
    """For serial and UDID webhooks the accepted alphabet is even narrower: [A-Za-z0-9-]."""
    try:
        identifier = classify(value, APPLE)
    except IdentifierShapeError:
        return
    assert re.fullmatch(r"[A-Za-z0-9-]+", identifier.value)


@given(st.from_regex(r"[A-Z0-9]{8,14}", fullmatch=True))
def test_generated_serials_classify(value: str) -> None:
    """Every upper-case alphanumeric of serial length is an accepted serial for Apple webhooks."""
    assert classify(value, APPLE).kind is IdentifierKind.SERIAL


@pytest.mark.parametrize(
    ("reported", "form"),
    [
        ("c02quick0001", "C02QUICK0001"),
        ("ABCDEFGH\ufb01", ""),  # 'ﬁ' upper-cases to "FI": no attested identifier matches it
        (None, ""),
        ("", ""),
    ],
)
def test_an_upstreams_identifier_compares_only_when_ascii(reported: str | None, form: str) -> None:
    """What a provider compares with `normalized`: upper case, and never equal unless ASCII."""
    assert ascii_upper(reported) == form
    assert ascii_upper(reported) != classify("ABCDEFGHFI").normalized
