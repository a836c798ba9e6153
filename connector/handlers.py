"""Thin handlers: the webhook runs verify → parse → decide → answer; health endpoints report.

Verification order is fixed and cheap-first: method, body size, webhook id, client certificate,
signature, credentials, JSON, timestamp. Nothing is parsed before the signature is checked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import structlog
from aiohttp import web
from pydantic import ValidationError

from connector.call import read_call
from connector.connection import request_started, vouch
from connector.decision import Decision, decide, shadow_reply, vouches
from connector.errors import (
    AuthError,
    BodyTooLarge,
    ClientCertError,
    MethodNotAllowed,
    PayloadError,
    ReadTimeout,
    SignatureError,
    UnknownWebhook,
)
from connector.keys import CLOCK, HOOKS, PROVIDERS, ROUTES, SETTINGS, WebhookRuntime
from connector.models import WireFormatError, parse_body
from connector.observe import (
    MAX_LOGGED_IDENTIFIER,
    MAX_LOGGED_OBSERVED,
    DecisionEvent,
    FailedRule,
    clip,
    kept_identifier,
)
from connector.persistence import PERSISTENCE
from connector.readiness import READINESS
from connector.scep import SCEP_KINDS
from connector.scep.webhook import BODIES, answer_scep
from connector.settings import WebhookSettings
from connector.signing import verify_signature
from connector.tls import peer_certificate, peer_dns_names

ID_HEADER = "X-Smallstep-Webhook-ID"
SIGNATURE_HEADER = "X-Smallstep-Signature"

log = structlog.get_logger("connector.webhook")


async def read_capped(request: web.Request, limit: int, *, read_timeout: float) -> bytes:
    """Read the body, refusing it as soon as it passes `limit` bytes (never buffering more) or
    when it is not complete `read_timeout` seconds after the request's first byte arrived.

    A compressed body, or one aiohttp cannot read (broken chunks), is the sender's fault: 400,
    not a 500 with a traceback that anyone could trigger.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"body of {request.content_length} bytes exceeds {limit}")
    coding = request.headers.get("Content-Encoding")
    if coding is not None and coding.strip().lower() != "identity":
        # step-ca never compresses; the listener does not inflate (`auto_decompress=False`).
        raise PayloadError(
            "a compressed body is not read (step-ca sends none)",
            detail={"content_encoding": clip(coding, MAX_LOGGED_OBSERVED) or ""},
        )
    content = request.content
    body = bytearray()
    try:
        if content.is_eof():  # it has all arrived (a small body comes with the head): no timer
            whole = content.read_nowait()
            if len(whole) > limit:
                raise BodyTooLarge(f"body exceeds {limit} bytes")
            return whole
        async with asyncio.timeout_at(request_started(request) + read_timeout):
            async for chunk in request.content.iter_chunked(16 * 1024):
                body += chunk
                if len(body) > limit:
                    raise BodyTooLarge(f"body exceeds {limit} bytes")
    except web.RequestPayloadError as exc:
        raise PayloadError(
            "the body could not be read as sent (its encoding or chunking is broken)",
            detail={"error": clip(str(exc), MAX_LOGGED_OBSERVED) or ""},
        ) from None
    except TimeoutError:
        raise ReadTimeout(
            f"request not complete within {read_timeout:g}s ({len(body)} body bytes arrived)"
        ) from None
    except ConnectionError:
        # Nobody is left to read an answer: one quiet line, and an HTTP exception (which the
        # error middleware passes on) ends the request without a 500 and its traceback.
        log.info("request.client_disconnected", path=request.path, received=len(body))
        raise web.HTTPBadRequest from None
    return bytes(body)


def _find_webhook(request: web.Request) -> WebhookRuntime:
    hooks = request.app[ROUTES].get(request.match_info.route.resource.canonical, {})  # type: ignore[union-attr]
    webhook_id = request.headers.get(ID_HEADER, "").strip()
    if not webhook_id:
        raise UnknownWebhook(f"missing {ID_HEADER} header")
    runtime = hooks.get(webhook_id)
    if runtime is None:
        raise UnknownWebhook(
            "no webhook with this id is served on this path",
            detail={"webhook_id": webhook_id[:MAX_LOGGED_IDENTIFIER]},
        )
    return runtime


def _check_client_cert(request: web.Request, hook: WebhookSettings) -> None:
    if not hook.require_client_cert:
        return
    cert = peer_certificate(request)
    if cert is None:
        raise ClientCertError("this webhook requires step-ca's client certificate")
    pinned = request.app[SETTINGS].server.client_dns_names
    if pinned and not peer_dns_names(cert) & {name.lower() for name in pinned}:
        raise ClientCertError(
            "client certificate names none of server.client_dns_names",
            code="client-certificate-name-mismatch",
        )


def _check_signature(request: web.Request, body: bytes, hook: WebhookSettings) -> None:
    header = request.headers.get(SIGNATURE_HEADER)
    if header is None:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header", code="signature-missing")
    # Every key is checked (constant time each); during a rotation the log says which matched.
    matched = [label for label, key in hook.hmac_keys if verify_signature(body, header, key)]
    if not matched:
        raise SignatureError("signature does not match the body and the webhook secret")
    if hook.next_secret is not None:
        structlog.contextvars.bind_contextvars(secret=matched[0])


def _authorization(request: web.Request) -> bytes:
    values = request.headers.getall("Authorization", [])
    if len(values) > 1:
        raise AuthError("more than one Authorization header")
    # aiohttp keeps bytes that are not UTF-8 as surrogates: compare the raw bytes, never crash.
    return values[0].encode("utf-8", "surrogateescape") if values else b""


def _check_credentials(request: web.Request, hook: WebhookSettings) -> None:
    if hook.bearer_token is None and hook.basic_auth is None:
        return
    header = _authorization(request)
    if hook.bearer_token is not None:
        expected = b"Bearer " + hook.bearer_token.get_secret_value().encode()
        if not hmac.compare_digest(header, expected):
            raise AuthError("missing or wrong bearer token")
    elif hook.basic_auth is not None:
        # Exactly Go's SetBasicAuth: "Basic " + padded standard base64 of "user:password".
        scheme, _, encoded = header.partition(b" ")
        try:
            decoded = base64.b64decode(encoded, validate=True) if scheme == b"Basic" else b""
        except binascii.Error:
            decoded = b""
        expected_pair = (
            f"{hook.basic_auth.username}:{hook.basic_auth.password.get_secret_value()}".encode()
        )
        if not hmac.compare_digest(decoded, expected_pair):
            raise AuthError("missing or wrong basic credentials")


_Read = TypeVar("_Read")


def _parse(body: bytes, read: Callable[[bytes], _Read]) -> _Read:
    if not body.strip():
        raise PayloadError("empty body")
    try:
        return read(body)
    except WireFormatError as exc:
        raise PayloadError(f"not a step-ca webhook request: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        why = first["msg"].removeprefix("Value error, ")
        raise PayloadError(f"not a step-ca webhook request: {where}: {why}") from None


def _check_timestamp(timestamp: datetime, now: datetime, skew: float) -> None:
    drift = (now - timestamp).total_seconds()
    if abs(drift) > skew:
        raise PayloadError(
            f"timestamp is {abs(drift):.0f}s {'old' if drift > 0 else 'in the future'} "
            f"(window {skew:g}s)",
            code="timestamp-out-of-window",
        )


async def handle_webhook(request: web.Request) -> web.Response:
    """Verify the call really comes from step-ca, then answer allow or deny (HTTP 200)."""
    started = time.perf_counter()
    if request.method != "POST":
        raise MethodNotAllowed("only POST is accepted")
    settings = request.app[SETTINGS]
    body = await read_capped(
        request, settings.server.max_body_bytes, read_timeout=settings.server.read_timeout
    )
    runtime = _find_webhook(request)
    hook = runtime.settings
    _check_client_cert(request, hook)
    _check_signature(request, body, hook)
    _check_credentials(request, hook)
    now = request.app[CLOCK]()
    if hook.kind in SCEP_KINDS:  # SCEP calls: same checks, own bodies, decided in connector.scep
        model = BODIES[hook.kind]
        scep = _parse(body, lambda raw: parse_body(raw, model))
        _check_timestamp(scep.timestamp, now, settings.server.clock_skew)
        vouch(request)  # step-ca's connection (a fresh signed call): kept at the connection cap
        answer = await answer_scep(request, runtime, scep, now=now)
        if answer.decision is not None:
            _log_decision(request, hook, answer.decision, started)
        return answer.response
    payload = _parse(body, read_call)
    _check_timestamp(payload.timestamp, now, settings.server.clock_skew)
    vouch(request)
    decision = await decide(hook, payload, runtime.chain, now=now, memo=runtime.memo)
    _log_decision(request, hook, decision, started)
    if hook.mode == "shadow" and not decision.allow:
        body = shadow_reply(hook, decision).to_bytes()
    else:
        body = decision.reply_body()
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _log_decision(
    request: web.Request, hook: WebhookSettings, decision: Decision, started: float
) -> None:
    request.app[HOOKS].decision(
        decision_event(
            hook,
            decision,
            latency=time.perf_counter() - started,
            personal_data=request.app[SETTINGS].logging.personal_data,
        )
    )


def decision_event(
    hook: WebhookSettings, decision: Decision, *, latency: float, personal_data: bool
) -> DecisionEvent:
    """What the hooks learn about a decision: no secret, and personal data only if asked."""
    record = decision.record
    identifier = decision.identifier
    if decision.kind is None:  # failed the shape check: attacker-chosen, any length
        identifier = kept_identifier(identifier, personal_data=personal_data)
    user = record.user if personal_data and record and vouches(decision) else None
    return DecisionEvent(
        webhook=hook.name,
        kind=hook.kind,
        identifier=identifier,
        identifier_kind=decision.kind,
        allow=decision.allow or hook.mode == "shadow",
        code=decision.code,
        provider=record.provider if record else None,
        cached=decision.lookup.cached if decision.lookup else None,
        latency=latency,
        failed_rules=tuple(
            FailedRule(o.rule, o.code, o.message, clip(o.observed, MAX_LOGGED_OBSERVED))
            for o in decision.outcomes
            if not o.passed
        ),
        failed_providers=tuple(f.provider for f in decision.lookup.failures)
        if decision.lookup
        else (),
        user=user.username if user else None,
        email=user.email if user else None,
        shadow=hook.mode == "shadow",
        would_allow=decision.allow if hook.mode == "shadow" else None,
        detail=decision.detail,
    )


async def handle_healthz(_request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    """Ready: every provider has loaded (inventory read, credentials accepted), no drain is
    under way and the event loop keeps time; otherwise 503 and the status says why."""
    providers = request.app[PROVIDERS]
    states = {name: provider.ready for name, provider in providers.items()}
    status = request.app[READINESS].status(providers_ready=all(states.values()))
    return web.json_response(
        {
            "status": status,
            "providers": states,
            "store": request.app[PERSISTENCE].readiness(),
            "sync": request.app[PERSISTENCE].sync_readiness(),
        },
        status=200 if status == "ready" else 503,
    )
