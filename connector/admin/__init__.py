"""The read-only admin page: readiness, inventories, the store, recent decisions, a try form.

Off by default; `admin_app` is served on its own listener (``[admin] listen``, loopback by
default) behind ``[admin] token`` (see `_auth`). Pages are server-rendered HTML with one
stylesheet and no script; a strict Content-Security-Policy forbids everything else.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from connector.admin import _views as views
from connector.admin._auth import Lock, lock_middleware
from connector.errors import expect_handler
from connector.keys import SETTINGS

MAX_FORM_BYTES = 4096

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make a form post's Origin "null"
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if isinstance(response, web.HTTPException):
        raise response
    return response


def admin_app(main: web.Application, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The admin page's application, reading `main`'s state."""
    settings = main[SETTINGS].admin
    assert settings.token is not None  # noqa: S101 - required by AdminSettings when enabled
    lock = Lock(
        settings.token.get_secret_value(),
        session_seconds=settings.session_hours * 3600,
        clock=clock,
    )
    app = web.Application(
        middlewares=[_headers, lock_middleware(lock)], client_max_size=MAX_FORM_BYTES
    )
    app[views.MAIN] = main
    app[views.LOCK] = lock
    app.add_routes(
        [
            web.get("/", views.overview, expect_handler=expect_handler),
            web.get("/try", views.try_device, expect_handler=expect_handler),
            web.get("/login", views.login_form, expect_handler=expect_handler),
            web.post("/login", views.login, expect_handler=expect_handler),
            web.post("/logout", views.logout, expect_handler=expect_handler),
            web.get("/admin.css", views.stylesheet, expect_handler=expect_handler),
        ]
    )
    return app


__all__ = ["admin_app"]
