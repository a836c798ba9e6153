"""OAuth 2.0 token endpoints that take a form and answer ``access_token`` + ``expires_in``.

Workspace ONE (client secret), Google (a service account's signed JWT) and Apple Business
Manager (a signed client assertion) differ only in the form they post; `FormTokenIssuer` does
the rest once: the POST, the refusal (not ready, with the vendor's error code and a short
description, never the credential), the parse, and the refresh margin. `AssertionTokenIssuer`
adds what Google and Apple share: a signing key read from its file once, off the event loop.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import ClassVar, Generic, Protocol, TypeVar
from urllib.parse import quote, quote_plus

import httpx
from pydantic import BaseModel, ConfigDict, Field

from providers._http._auth import Token, TokenIssuer
from providers._http._client import UpstreamClient
from providers._http._parse import json_field, read_model
from providers.base import ProviderError, ProviderNotReady
from providers.observe import NO_HOOKS, ProviderHook

_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


class OAuthAnswer(BaseModel):
    """A granted token (the token itself stays out of repr)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: str = Field(min_length=1, repr=False)
    expires_in: float = Field(gt=0)
    token_type: str = "Bearer"  # noqa: S105 - a token kind, not a secret


def split_url(url: str) -> tuple[str, str]:
    """A token URL as (origin, path): the token client's base URL and the path it posts to."""
    parsed = httpx.URL(url)
    origin = str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    return origin, parsed.path


def blank_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret, as sent and as a form or a URL would encode it, blanked out.

    Run on an upstream's text before it is cut or cleaned: a cut or altered secret no longer
    matches, and its rest would be shown.
    """
    for secret in secrets:
        if secret:
            for form in dict.fromkeys((secret, quote_plus(secret), quote(secret, safe=""))):
                text = text.replace(form, "[redacted]")
    return text


def oauth_refusal(
    response: httpx.Response, *, secrets: Iterable[str] = ()
) -> tuple[str | None, str]:
    """The OAuth ``error`` code (if it looks like one) and a one-line, printable description
    without any of `secrets` (an upstream may echo the form it was sent)."""
    code = json_field(response, "error")
    safe = code if isinstance(code, str) and _CODE.fullmatch(code) else None
    if safe is not None and blank_secrets(safe, secrets) != safe:
        safe = None
    description = json_field(response, "error_description")
    if not isinstance(description, str):
        return safe, ""
    text = _PRINTABLE.sub(" ", blank_secrets(description, secrets))[:200].strip()
    return safe, text


class FormTokenIssuer(TokenIssuer):
    """Posts `form()` to one token endpoint; a subclass builds the form (and any assertion).

    Args:
        provider: The configured provider name.
        client: The client bound to the token endpoint's origin.
        path: The token endpoint's path on that origin (also the route reported to hooks).
        vendor: Who refuses, for messages ("Workspace ONE").
        what: The credential that is refused, for messages ("the OAuth client").
        margin: Renew this many seconds before expiry (at most half a token's life).
        secrets: Values that must never appear in a message (the client secret).
    """

    def __init__(
        self,
        provider: str,
        client: UpstreamClient,
        path: str,
        *,
        vendor: str,
        what: str,
        margin: float,
        on_state: Callable[[bool], None],
        hooks: ProviderHook,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(provider, margin=0.0, on_state=on_state, hooks=hooks, clock=clock)
        self._client = client
        self._path = path
        self._vendor = vendor
        self._what = what
        self._margin = margin

    async def form(self) -> dict[str, str]:
        """The form fields of one token request."""
        raise NotImplementedError

    def secrets(self) -> tuple[str, ...]:
        """Values to blank out of any message (a subclass names its client secret)."""
        return ()

    async def _fetch(self) -> Token:
        form = await self.form()
        response = await self._client.request("POST", self._path, route=self._path, data=form)
        if response.status_code != 200:
            code, description = oauth_refusal(response, secrets=self.secrets())
            detail = f"HTTP {response.status_code}{', ' + code if code else ''}"
            if description:
                detail += f": {description}"
            self.refused(self._path, response.status_code, detail, code)
            # A refused credential waits for the admin; anything else may pass by itself.
            error = ProviderNotReady if response.status_code in (400, 401, 403) else ProviderError
            raise error(self.provider, f"{self._vendor} refused {self._what} ({detail})")
        answer = read_model(self.provider, response, OAuthAnswer, where=self._path)
        margin = min(self._margin, answer.expires_in / 2)
        return self.granted(answer.access_token, answer.expires_in, margin=margin)


class AssertionSettings(Protocol):
    """What `AssertionTokenIssuer` reads of a provider's settings."""

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        ...

    @property
    def token_margin(self) -> float:
        """Renew this many seconds before expiry."""
        ...


SettingsT = TypeVar("SettingsT", bound=AssertionSettings)
KeyT = TypeVar("KeyT")


def utc_now() -> datetime:
    """The wall clock an assertion's ``iat`` and ``exp`` come from."""
    return datetime.now(UTC)


class AssertionTokenIssuer(FormTokenIssuer, Generic[SettingsT, KeyT]):
    """A token endpoint that takes an assertion signed with a key from a file (Google, Apple).

    The key is read once, on a thread, when the first token is needed; a key that cannot be
    read refuses like the endpoint would (not ready, with the reason, never key material). A
    subclass names `vendor` and `what`, reads its key (`load_key`) and builds the form.
    """

    vendor: ClassVar[str]
    what: ClassVar[str]

    def __init__(
        self,
        provider: str,
        settings: SettingsT,
        client: UpstreamClient,
        *,
        on_state: Callable[[bool], None],
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(
            provider,
            client,
            split_url(settings.token_url)[1],
            vendor=self.vendor,
            what=self.what,
            margin=settings.token_margin,
            on_state=on_state,
            hooks=hooks,
            clock=clock,
        )
        self.settings = settings
        self.now = now
        self._key: KeyT | None = None

    def load_key(self) -> KeyT:
        """Read the signing key (runs on a thread); `ValueError` with a reason if it cannot."""
        raise NotImplementedError

    def key_loaded(self, key: KeyT) -> None:
        """Called once the key was read (a subclass may log which credential it is)."""

    async def signing_key(self) -> KeyT:
        """The signing key, read on first use."""
        if self._key is None:
            try:
                key = await asyncio.to_thread(self.load_key)
            except ValueError as exc:
                self.refused(self._path, None, str(exc), None)
                raise ProviderNotReady(self.provider, str(exc)) from None
            self._key = key
            self.key_loaded(key)
        return self._key
