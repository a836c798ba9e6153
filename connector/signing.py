"""step-ca's request signature: lowercase hex HMAC-SHA256 of the raw body.

The key is the base64-decoded webhook secret (64 random bytes from `step ca provisioner webhook
add`), or the empty key for webhooks declared only in ca.json. No aiohttp here, so the same code
verifies captured vectors in tests and signs requests in `posture-connector send`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

_HEX64 = re.compile(r"[0-9a-f]{64}")


def decode_secret(secret_b64: str) -> bytes:
    """The HMAC key step-ca uses: standard padded base64 decoded; raises ValueError if invalid."""
    try:
        return base64.b64decode(secret_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not valid base64") from None


def signature(body: bytes, key: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `body`."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, key: bytes) -> bool:
    """Constant-time check of the `X-Smallstep-Signature` header against the body."""
    if header is None:
        return False
    candidate = header.strip()
    if not _HEX64.fullmatch(candidate):
        return False
    return hmac.compare_digest(signature(body, key), candidate)
