"""The challenge URL an MDM calls: credentials first, then the capped body, then a challenge.

Answers: 200 ``text/plain`` with the challenge (``Cache-Control: no-store``); 401 for missing or
wrong credentials (checked in constant time, before the body is read); 400 for a body that is
not the MDM's JSON; 503 when the store cannot record the challenge; 404 on a path a config
reload no longer names (the router keeps it until a restart). The shape of every refusal is the
service's usual JSON error.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from connector.errors import MethodNotAllowed, PayloadError
from connector.handlers import _authorization, read_capped
from connector.keys import CLOCK, SETTINGS
from connector.scep._issue import MdmChallengeCall
from connector.scep.runtime import SCEP


async def handle_challenge_request(request: web.Request) -> web.Response:
    """Hand the MDM a one-time challenge for the device it names."""
    if request.method != "POST":
        raise MethodNotAllowed("only POST is accepted")
    path = request.match_info.route.resource.canonical  # type: ignore[union-attr]
    # Read once: the whole request uses the credentials and settings live when it arrived.
    issuer = request.app[SCEP].runtime.issuers.get(path)
    if issuer is None:
        raise web.HTTPNotFound
    issuer.check_credentials(_authorization(request))
    server = request.app[SETTINGS].server
    body = await read_capped(request, server.max_body_bytes, read_timeout=server.read_timeout)
    try:
        call = MdmChallengeCall.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise PayloadError(f"not an MDM challenge request: {where}: {first['msg']}") from None
    challenge = await issuer.issue(call, request.app[CLOCK]().timestamp())
    return web.Response(
        text=challenge, content_type="text/plain", headers={"Cache-Control": "no-store"}
    )
