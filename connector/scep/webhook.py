"""SCEP webhook calls after verification: ``handlers.py`` verifies every call exactly as for the
other kinds (id, client certificate, signature, credentials, strict body, timestamp), then hands
SCEPCHALLENGE and NOTIFYING bodies here and logs the returned decision."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from aiohttp import web

from connector.connection import request_started
from connector.decision import Decision
from connector.keys import SETTINGS, WebhookRuntime
from connector.models import ScepChallengeRequest, ScepNotification
from connector.observe import kept_identifier
from connector.persistence import PERSISTENCE
from connector.scep._decide import decide_challenge
from connector.scep._notify import audit_entry, forward_to_intune, read_notification

log = structlog.get_logger("connector.scep")

ScepBody = ScepChallengeRequest | ScepNotification

BODIES: Mapping[str, type[ScepChallengeRequest] | type[ScepNotification]] = {
    "SCEPCHALLENGE": ScepChallengeRequest,
    "NOTIFYING": ScepNotification,
}
"""The body model of each SCEP webhook kind."""


@dataclass(frozen=True, slots=True)
class ScepAnswer:
    """What a SCEP call gets, and the decision to log (SCEPCHALLENGE only).

    Attributes:
        response: The HTTP answer.
        decision: The verdict on a challenge; None for a notification.
    """

    response: web.Response
    decision: Decision | None


async def answer_scep(
    request: web.Request, runtime: WebhookRuntime, payload: ScepBody, *, now: datetime
) -> ScepAnswer:
    """Decide a challenge, or record a notification (and report it to Intune).

    The validator and the Intune client come from `runtime`, never from the app: built with
    its webhook settings, they stay that webhook's across a reload that renames or retunes it.
    """
    hook = runtime.settings
    scep = runtime.scep
    if scep is None:  # pragma: no cover - create_app and every reload build one
        raise RuntimeError(f"webhook {hook.name} has no SCEP runtime")
    if isinstance(payload, ScepChallengeRequest):
        budget = request.app[SETTINGS].server.decision_budget
        decision = await decide_challenge(
            hook,
            scep.validators[hook.name],
            payload,
            runtime.chain,
            now=now,
            deadline=request_started(request) + budget,
        )
        answer = web.Response(
            body=decision.reply_body(), content_type="application/json", charset="utf-8"
        )
        return ScepAnswer(answer, decision)
    note = read_notification(payload)
    identifier = kept_identifier(
        note.identifier, personal_data=request.app[SETTINGS].logging.personal_data
    )
    context = structlog.contextvars.get_contextvars()
    request_id = context.get("request_id")
    request.app[PERSISTENCE].audit.record(
        audit_entry(
            hook.name,
            note,
            identifier=identifier,
            at=time.time(),
            request_id=request_id if isinstance(request_id, str) else None,
        )
    )
    log.info(
        "scep.notified",
        webhook=hook.name,
        issued=note.issued,
        transaction_id=note.transaction_id,
        identifier=identifier,
        serial=note.certificate.serial if note.certificate else None,
        error=note.error or None,
    )
    forward = scep.forwarders.get(hook.name)
    if forward is not None:
        client, settings = forward
        scep.notifier.submit(forward_to_intune(client, settings, hook.name, note))
    return ScepAnswer(web.json_response({"allow": True}), None)
