"""Mosyle's JWT: ``POST /login`` with the API token and an admin login; the JWT comes back in
the ``Authorization`` response header and lasts 24 hours.

The lifetime is read from the JWT's ``exp`` claim when it has one (the token is not verified:
only the time matters) and is otherwise the 24 hours Mosyle documents. The token is renewed
`token_margin` seconds before it expires, and once after a 401. A login without a token
leaves the provider not ready with a message naming what to fix, never a secret.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from providers._http import Token, TokenIssuer, UpstreamClient, json_field
from providers.base import ProviderNotReady
from providers.mosyle._settings import MosyleSettings
from providers.observe import NO_HOOKS, ProviderHook

LOGIN = "/login"
DOCUMENTED_LIFETIME = 24 * 3600.0
"""Mosyle: "The token will expire every 24 hours and will need to be renewed"."""

_CODE = re.compile(r"[A-Za-z0-9_. -]{1,64}")


def error_code(response: httpx.Response) -> str | None:
    """A short, secret-free status or message from a Mosyle error body, if there is one."""
    for key in ("info", "message", "status"):
        value = json_field(response, key)
        if isinstance(value, str) and _CODE.fullmatch(value) and value.upper() != "OK":
            return value
    return None


def secret_free(text: str | None, settings: MosyleSettings) -> str | None:
    """`text`, unless it repeats the access token, the e-mail or the password."""
    if text is None:
        return None
    secrets = (settings.access_token.get_secret_value(), settings.password.get_secret_value())
    echoed = any(s and s in text for s in (*secrets, settings.email))
    return None if echoed else text


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (Unix seconds) of a JWT, without verifying it; None when unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class MosyleTokens(TokenIssuer):
    """Logs in to Mosyle and keeps the current JWT in `cache`."""

    def __init__(
        self,
        name: str,
        settings: MosyleSettings,
        client: UpstreamClient,
        *,
        on_state: Callable[[bool], None],
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(name, margin=0.0, on_state=on_state, hooks=hooks, clock=clock)
        self._settings = settings
        self._client = client
        self._now = now

    async def _fetch(self) -> Token:
        settings = self._settings
        body = {
            "accessToken": settings.access_token.get_secret_value(),
            "email": settings.email,
            "password": settings.password.get_secret_value(),
        }
        # Not gated: the lookup that needs this token may hold the slot the login would wait
        # for (the login shares the lookups' client and connections).
        response = await self._client.request("POST", LOGIN, route=LOGIN, json=body, gated=False)
        header = response.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if response.status_code != 200 or scheme.lower() != "bearer" or not value.strip():
            code = secret_free(error_code(response), settings)
            detail = f"HTTP {response.status_code} on {LOGIN}{', ' + code if code else ''}"
            if response.status_code == 200:
                detail += ", no token in the Authorization header"
            self.refused(LOGIN, response.status_code, detail, code)
            raise ProviderNotReady(
                self.provider,
                f"Mosyle refused the login: check access_token, email and password ({detail})",
            )
        value = value.strip()
        expiry = jwt_expiry(value)
        lifetime = expiry - self._now().timestamp() if expiry is not None else DOCUMENTED_LIFETIME
        if lifetime <= 0:
            detail = "Mosyle issued an already expired token"
            self.refused(LOGIN, 200, detail, None)
            raise ProviderNotReady(self.provider, detail)
        margin = min(settings.token_margin, lifetime / 2)
        return self.granted(value, lifetime, margin=margin, path=LOGIN)
