"""Jamf Pro bearer tokens: OAuth client credentials (either token path) or a user's Basic login.

A refusal (400/401/403) leaves the provider not ready with a message naming what to fix, never
the secret. The OAuth path that worked is kept for the life of the provider.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx
import structlog

from providers._http import (
    Token,
    TokenIssuer,
    UpstreamClient,
    blank_secrets,
    json_field,
    read_model,
)
from providers.base import ProviderError, ProviderNotReady
from providers.jamf import _models as m
from providers.jamf._settings import JamfSettings
from providers.observe import NO_HOOKS, ProviderHook

log = structlog.get_logger("providers.jamf")

OAUTH_PATHS = ("/api/v1/oauth/token", "/api/oauth/token")
USER_TOKEN_PATH = "/api/v1/auth/token"  # noqa: S105 - a URL path, not a secret
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def error_code(response: httpx.Response, secrets: Iterable[str] = ()) -> str | None:
    """A short error code from a Jamf or OAuth error body, if there is one; never one that
    holds any of `secrets` (a server may echo the credential it refused)."""
    code = json_field(response, "error")
    errors = json_field(response, "errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0].get("code")
        code = first if isinstance(first, str) else code
    if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        return None
    return code if blank_secrets(code, secrets) == code else None


class JamfTokens(TokenIssuer):
    """Fetches tokens for one Jamf server and keeps the current one in `cache`."""

    def __init__(
        self,
        name: str,
        settings: JamfSettings,
        client: UpstreamClient,
        *,
        on_state: Callable[[bool], None],
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # The refresh margin is applied when the token is stored (see `_token`), so a
        # short-lived token still gets used for half its life instead of never.
        super().__init__(name, margin=0.0, on_state=on_state, hooks=hooks, clock=clock)
        self._name = name
        self._settings = settings
        self._client = client
        self._now = now
        self._oauth_path: str | None = (
            None if settings.oauth_token_path == "auto" else settings.oauth_token_path  # noqa: S105 - not a secret
        )

    async def _fetch(self) -> Token:
        if self._settings.auth_kind == "oauth":
            return await self._fetch_oauth()
        return await self._fetch_user()

    async def _fetch_oauth(self) -> Token:
        """Client credentials on one of the two token paths; the path that works is kept."""
        client_id, secret = self._settings.client_id, self._settings.client_secret
        if client_id is None or secret is None:  # pragma: no cover - the settings forbid it
            raise ProviderNotReady(self._name, "no OAuth client credentials configured")
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret.get_secret_value(),
        }
        paths = (self._oauth_path,) if self._oauth_path else OAUTH_PATHS
        refusal: tuple[str, httpx.Response] | None = None
        for path in paths:
            # Not gated: the request that needs this token may hold the slot it would wait for.
            response = await self._client.request("POST", path, route=path, data=form, gated=False)
            if response.status_code in (404, 405):
                log.info("provider.oauth_path_missing", provider=self._name, path=path)
                continue
            if response.status_code in (400, 401, 403):
                # Some servers answer 401 for a token path they lack: try the other one too.
                refusal = refusal or (path, response)
                continue
            parsed = read_model(self._name, response, m.OAuthToken, where=path)
            self._oauth_path = path
            return self._token(parsed.access_token, parsed.expires_in, path)
        if refusal is not None:
            self._refused(*refusal, "the OAuth client credentials (client_id, client_secret)")
        raise ProviderNotReady(
            self._name, f"no OAuth token endpoint on this server (tried {', '.join(paths)})"
        )

    async def _fetch_user(self) -> Token:
        """A user bearer token from Basic credentials (Jamf Pro 10.35 and later)."""
        username, password = self._settings.username, self._settings.password
        if username is None or password is None:  # pragma: no cover - the settings forbid it
            raise ProviderNotReady(self._name, "no username and password configured")
        response = await self._client.request(
            "POST",
            USER_TOKEN_PATH,
            route=USER_TOKEN_PATH,
            auth=httpx.BasicAuth(username, password.get_secret_value()),
            gated=False,
        )
        if response.status_code in (400, 401, 403):
            self._refused(USER_TOKEN_PATH, response, "the username and password")
        parsed = read_model(self._name, response, m.UserToken, where=USER_TOKEN_PATH)
        expires = m.parse_jamf_time(parsed.expires)
        lifetime = (expires - self._now()).total_seconds() if expires else 300.0
        return self._token(parsed.token, lifetime, USER_TOKEN_PATH)

    def _token(self, value: str, lifetime: float, path: str) -> Token:
        if lifetime <= 0:
            detail = "Jamf issued an already expired token"
            self.refused(path, 200, detail, None)
            raise ProviderError(self._name, f"{path}: {detail}")
        margin = min(self._settings.token_margin, lifetime / 2)
        return self.granted(
            value, lifetime, margin=margin, auth=self._settings.auth_kind, path=path
        )

    def _refused(self, path: str, response: httpx.Response, what: str) -> None:
        """Jamf refused the credentials: not ready, with a message naming no secret."""
        held = (self._settings.client_secret, self._settings.password)
        code = error_code(response, [h.get_secret_value() for h in held if h is not None])
        detail = f"HTTP {response.status_code} on {path}{', ' + code if code else ''}"
        self.refused(path, response.status_code, detail, code)
        raise ProviderNotReady(self._name, f"Jamf refused {what} ({detail})")
