"""Signature vectors computed here with the `hmac` module, against `connector.signing`."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connector.signing import decode_secret, signature, verify_signature
from connector.stepca import go_json, rfc3339_nano, sign
from tests.helpers import FIXED_NOW, SECRET

BODY = b'{"timestamp":"2026-03-20T10:11:12.123456789Z","attestationData":{"permanentIdentifier":"C02TESTSERIAL"}}'


def _reference(body: bytes, secret_b64: str) -> str:
    return hmac.new(base64.b64decode(secret_b64), body, hashlib.sha256).hexdigest()


def test_signature_is_hmac_sha256_of_raw_body_with_decoded_secret() -> None:
    """The key is the base64-decoded secret and the message the raw body bytes."""
    assert signature(BODY, decode_secret(SECRET)) == _reference(BODY, SECRET)
    assert sign(BODY, SECRET) == _reference(BODY, SECRET)


def test_empty_secret_signs_with_empty_key() -> None:
    """ca.json-only webhooks are signed with a zero-length key."""
    assert sign(BODY, "") == hmac.new(b"", BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (_reference(BODY, SECRET), True),
        (_reference(BODY, SECRET).upper(), False),
        (_reference(BODY + b" ", SECRET), False),
        (_reference(BODY, base64.b64encode(b"x" * 64).decode()), False),
        ("", False),
        (None, False),
        ("zz" * 32, False),
        (_reference(BODY, SECRET)[:-1], False),
        # The pre-v0.25 scheme: hex(body || HMAC(key, empty)).
        ((BODY + hmac.new(base64.b64decode(SECRET), b"", hashlib.sha256).digest()).hex(), False),
    ],
    ids=[
        "valid",
        "uppercase",
        "body-changed",
        "other-secret",
        "empty",
        "absent",
        "not-hex",
        "short",
        "pre-0.25",
    ],
)
def test_verify_signature(header: str | None, ok: bool) -> None:
    """Only the exact lowercase hex HMAC of these bytes under this key verifies."""
    assert verify_signature(BODY, header, decode_secret(SECRET)) is ok


def test_invalid_base64_secret_is_refused() -> None:
    """A secret that is not base64 is a configuration error, not a silent wrong key."""
    with pytest.raises(ValueError, match="base64"):
        decode_secret("not*base64")


def test_go_json_escapes_html_characters_like_go() -> None:
    """Go's encoding/json writes <, > and & as \\u003c, \\u003e, \\u0026, compactly."""
    assert go_json({"a": "<b>&", "n": [1, None]}) == b'{"a":"\\u003cb\\u003e\\u0026","n":[1,null]}'


def test_rfc3339_nano_trims_trailing_zeros() -> None:
    """Timestamps look like Go's RFC3339Nano output."""
    assert rfc3339_nano(FIXED_NOW) == "2026-11-22T12:00:00Z"
    assert rfc3339_nano(FIXED_NOW.replace(microsecond=120000)) == "2026-11-22T12:00:00.12Z"
