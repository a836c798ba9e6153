"""The admin page's lock: a token (header or session cookie), compared in constant time.

A browser signs in once by posting the token to ``/login``; the answer sets a session cookie
that holds no token, only an expiry and an HMAC of it keyed with the token (so changing the
token ends every session). Scripts send ``Authorization: Bearer <token>`` instead. The cookie
is ``HttpOnly`` and ``SameSite=Strict``, so another site cannot make a browser use it; every
page is a GET without side effects, and a POST whose ``Origin`` names another site is refused.
The token is never logged, echoed, or put into a URL.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from providers.unicode import ascii_digits

log = structlog.get_logger("connector.admin")

COOKIE = "posture_admin"
PUBLIC_PATHS = frozenset({"/login", "/admin.css"})
"""Paths served without a session."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Lock:
    """Checks the token and issues and checks session cookies."""

    def __init__(self, token: str, *, session_seconds: float, clock: Callable[[], float]) -> None:
        self._token = token.encode()
        self._session = session_seconds
        self._clock = clock

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison with the configured token; a string UTF-8 cannot hold (a
        form in another charset can decode to a lone surrogate) is never it."""
        try:
            encoded = given.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(encoded, self._token)

    def _mac(self, expiry: str) -> str:
        message = f"posture-admin-session:{expiry}".encode()
        return hmac.new(self._token, message, hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A session cookie value valid for the configured session length."""
        expiry = str(int(self._clock() + self._session))
        return f"{expiry}.{self._mac(expiry)}"

    def session_valid(self, value: str) -> bool:
        """Whether `value` is an unexpired cookie this token issued."""
        expiry, _, mac = value.partition(".")
        if not ascii_digits(expiry):
            return False
        # Compared as bytes: `compare_digest` raises on a str with other than ASCII in it.
        given = mac.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._mac(expiry).encode()):
            return False
        return int(expiry) > self._clock()

    def allows(self, request: web.Request) -> bool:
        """A valid session cookie, or the token as a bearer header."""
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and self.session_valid(cookie):
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(given) and self.token_matches(given.strip())

    @property
    def max_age(self) -> int:
        """Cookie lifetime in seconds."""
        return int(self._session)


def same_origin(request: web.Request) -> bool:
    """A POST from our own page: its ``Origin`` (when the browser sends one) is this host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        return origin != "null" and urlsplit(origin).netloc == request.host
    except ValueError:  # not a URL (`http://[`): no origin of ours
        return False


def lock_middleware(lock: Lock) -> Middleware:
    """Let signed-in requests through; send a browser to the sign-in page, refuse the rest."""

    @web.middleware
    async def locked(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or lock.allows(request):
            return await handler(request)
        if request.method == "GET":
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(text="sign in first")

    return locked


def peer(request: web.Request) -> str | None:
    """The client's address, for the sign-in log lines."""
    return request.remote
