"""Request errors, and the middleware (and the routes' ``Expect:`` step) that answer them as JSON.

Exceptions::

    ConnectorError                 any refusal of a request (status + stable code)
    ├── MethodNotAllowed     405   not a POST
    ├── BodyTooLarge         413   over `server.max_body_bytes`
    ├── ReadTimeout          408   body not complete within `server.read_timeout`
    ├── UnknownWebhook       401   no webhook with that id on this path
    ├── SignatureError       401   signature missing or wrong
    ├── AuthError            401   bearer / basic credentials missing or wrong
    ├── ClientCertError      403   mTLS required and no (or the wrong) client certificate
    ├── PayloadError         400   body is not step-ca's JSON, or timestamp outside the window
    └── ExpectationFailed    417   ``Expect:`` asks for anything but ``100-continue``

A policy denial is not an error: it is HTTP 200 with `allow: false`, because step-ca shows the
`error` object of a 200 to the ACME client but turns every 4xx/5xx into an opaque failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import HttpVersion11, hdrs, web

log = structlog.get_logger("connector")


class ConnectorError(Exception):
    """When a request is refused before any decision is made."""

    status = 400
    code = "bad-request"

    def __init__(
        self, message: str, *, code: str | None = None, detail: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}
        """Extra log fields (never echoed to the caller); attacker-chosen values come cut short."""
        if code is not None:
            self.code = code


class MethodNotAllowed(ConnectorError):
    """When a webhook path receives anything but POST."""

    status = 405
    code = "method-not-allowed"


class BodyTooLarge(ConnectorError):
    """When the body exceeds the configured cap."""

    status = 413
    code = "body-too-large"


class ReadTimeout(ConnectorError):
    """When the request body has not fully arrived `server.read_timeout` after its first byte."""

    status = 408
    code = "request-timeout"


class UnknownWebhook(ConnectorError):
    """When the webhook id header is missing or names no webhook on this path."""

    status = 401
    code = "unknown-webhook"


class SignatureError(ConnectorError):
    """When `X-Smallstep-Signature` is missing, malformed or wrong."""

    status = 401
    code = "signature-invalid"


class AuthError(ConnectorError):
    """When the configured bearer token or basic credentials do not match."""

    status = 401
    code = "unauthorized"


class ClientCertError(ConnectorError):
    """When the webhook requires step-ca's client certificate and did not get it."""

    status = 403
    code = "client-certificate-required"


class PayloadError(ConnectorError):
    """When the body is not a step-ca webhook request we can act on."""

    status = 400
    code = "payload-invalid"


class ExpectationFailed(ConnectorError):
    """When ``Expect:`` asks for anything but ``100-continue``."""

    status = 417
    code = "expectation-failed"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OnRejected = Callable[[int, str], None]
ON_REJECTED: web.AppKey[OnRejected] = web.AppKey("on_rejected")
"""Optional: told (status, code) of every refusal answered here (metrics, traces)."""


def error_response(status: int, code: str, message: str) -> web.Response:
    """The JSON shape of every refusal (step-ca ignores it; curl users read it)."""
    return web.json_response(
        {"allow": False, "error": {"code": code, "message": message}}, status=status
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer `ConnectorError` with its status and code; anything unexpected with a logged 500."""
    try:
        return await handler(request)
    except ConnectorError as exc:
        return refusal(request, exc)
    except web.HTTPException as exc:
        if exc.status == 405:
            _rejected(request, 405, MethodNotAllowed.code)
            return error_response(405, MethodNotAllowed.code, "only POST is accepted")
        if exc.status == 404:
            _rejected(request, 404, "not-found")
            return error_response(404, "not-found", "no webhook is served on this path")
        raise
    except Exception:
        log.exception("request.failed", path=request.path)
        _rejected(request, 500, "internal-error")
        return error_response(500, "internal-error", "internal error; see the connector's log")


def refusal(request: web.Request, exc: ConnectorError) -> web.Response:
    """Log and count `exc`, and answer it."""
    log.warning(
        "request.rejected",
        path=request.path,
        status=exc.status,
        code=exc.code,
        reason=exc.message,
        **exc.detail,
    )
    _rejected(request, exc.status, exc.code)
    return error_response(exc.status, exc.code, exc.message)


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """A route's ``Expect:`` step, which aiohttp runs before any middleware.

    ``100-continue`` is answered as aiohttp answers it. Anything else is refused as every other
    refusal is (JSON, `request.rejected`, counted), on a connection then closed: aiohttp's own
    refusal echoes the value into a text body, and a value that is not UTF-8 made that a 500.
    """
    if request.version != HttpVersion11:
        return None  # HTTP/1.0 has no Expect: ignored, as aiohttp ignores it
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not the start of the response
        return None
    response = refusal(request, ExpectationFailed("only Expect: 100-continue is understood"))
    # The middlewares did not see this request (the connection's request bookkeeping among
    # them): close rather than keep a connection whose state is behind.
    response.force_close()
    return response


def _rejected(request: web.Request, status: int, code: str) -> None:
    listener = request.app.get(ON_REJECTED)
    if listener is not None:
        listener(status, code)
