"""`send`: act as step-ca, sign one webhook request and print the connector's answer."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx

from connector import stepca
from connector.cli._common import (
    EXIT_CONFIG,
    EXIT_DENY,
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    command,
)

SECRET_ENV = "POSTURE_WEBHOOK_SECRET"  # noqa: S105 - the name of a variable, not a value


def _secret(args: argparse.Namespace) -> str:
    if args.secret_file is not None:
        return Path(args.secret_file).read_text(encoding="utf-8").strip()
    if args.secret is not None:
        return str(args.secret)
    value = os.environ.get(SECRET_ENV)
    if value is None:
        raise ValueError(f"give --secret, --secret-file or {SECRET_ENV}")
    return value


def cmd_send(args: argparse.Namespace) -> int:
    """Act as step-ca: build, sign and POST one webhook request, print the answer."""
    # Usage problems exit 2, never 1: a script must not read a typo as "deny".
    try:
        secret = _secret(args)
        if args.kind == "ENRICHING":
            body = stepca.enriching_body(args.identifier)
        else:
            body = stepca.authorizing_body(args.identifier)
        basic = None
        if args.basic_auth:
            user, colon, password = args.basic_auth.partition(":")
            if not colon:
                raise ValueError("--basic-auth takes USER:PASSWORD")
            basic = (user, password)
        headers = stepca.headers_for(
            body,
            webhook_id=args.id,
            secret_b64=secret,
            bearer_token=args.bearer_token,
            basic_auth=basic,
        )
        # An SSLContext, not `verify=<path>` / `cert=`: httpx deprecates those.
        verify = ssl.create_default_context(cafile=args.cacert)
        if args.cert:
            verify.load_cert_chain(args.cert, args.key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        print(f"send: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with httpx.Client(verify=verify, timeout=10.0) as client:
            response = client.post(args.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        print(f"send: request failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text
    print(json.dumps({"status": response.status_code, "answer": answer}, indent=2))
    if response.status_code != 200:
        return EXIT_FAILED
    return EXIT_OK if isinstance(answer, dict) and answer.get("allow") is True else EXIT_DENY


def add_send_command(sub: Subparsers) -> None:
    """`send` and its flags."""
    send = command(
        sub,
        "send",
        summary="act as step-ca: send one signed webhook request",
        description="Build a step-ca-shaped request (ENRICHING with a real CSR, AUTHORIZING "
        "with an x509Certificate), sign it as step-ca does, POST it and print the HTTP status "
        "and the answer as JSON. It reads no config: give what step-ca would know.",
        examples="  posture-connector send --url https://127.0.0.1:8443/webhooks/people \\\n"
        "    --id 3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d --secret-file people.secret \\\n"
        "    --cacert .dev-tls/ca.crt --identifier C02QUICK0001\n"
        f"  {SECRET_ENV}=... posture-connector send --url URL --id ID --kind AUTHORIZING "
        "--identifier C02QUICK0001",
        exits="  0  answered allow\n"
        "  1  answered deny (the reason is in answer.error.code)\n"
        "  2  usage error (no secret, unreadable file, bad --basic-auth)\n"
        "  3  the request failed (no connection, TLS) or was refused (not HTTP 200)",
    )
    send.add_argument("--url", required=True, help="the webhook's URL, as step-ca calls it")
    send.add_argument(
        "--id", required=True, help="the webhook id step-ca sends (X-Smallstep-Webhook-ID)"
    )
    send.add_argument(
        "--secret",
        help=f"the webhook's base64 secret (visible in ps: prefer --secret-file or {SECRET_ENV})",
    )
    send.add_argument("--secret-file", metavar="FILE", help="a file holding the webhook secret")
    send.add_argument("--identifier", required=True, help="the attested serial number or UDID")
    send.add_argument(
        "--kind",
        choices=["AUTHORIZING", "ENRICHING"],
        default="ENRICHING",
        help="which webhook kind to imitate (default: ENRICHING)",
    )
    send.add_argument(
        "--cacert", metavar="FILE", help="CA bundle that signed the connector's certificate"
    )
    send.add_argument("--cert", metavar="FILE", help="client certificate to present (mTLS)")
    send.add_argument("--key", metavar="FILE", help="the client certificate's key (mTLS)")
    send.add_argument("--bearer-token", metavar="TOKEN", help="send Authorization: Bearer TOKEN")
    send.add_argument("--basic-auth", metavar="USER:PASSWORD", help="send HTTP basic credentials")
    send.set_defaults(func=cmd_send)
