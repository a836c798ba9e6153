"""A SCEPCHALLENGE call from body to verdict: the CSR, the validator, then the device's posture.

The validator decides whether the challenge is good; when it vouches for a device (a one-time
challenge's bound device, or the CSR common name Intune checked), that device then goes through
`connector.decision.decide` exactly as an attested identifier does: shape check, provider
chain, policy, enrichment `data` (step-ca gives it to the template as ``.Webhooks.<name>``).
Without a device the webhook's ``on_missing_identifier`` decides.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from connector.decision import Decision, decide
from connector.lookup import ProviderChain
from connector.models import AttestationData, ScepChallengeRequest, WebhookRequest
from connector.scep._csr import CsrError, read_csr
from connector.scep._validators import MAX_TRANSACTION_ID, Validator
from connector.settings import WebhookSettings


async def decide_challenge(
    hook: WebhookSettings,
    validator: Validator,
    payload: ScepChallengeRequest,
    chain: ProviderChain,
    *,
    now: datetime,
    deadline: float | None = None,
) -> Decision:
    """The verdict on one SCEPCHALLENGE call; every path that is not an allow denies.

    `deadline` (event-loop time): when the answer is due (the decision budget from the call's
    first byte); a challenge given back after a deny waits for no longer.
    """
    detail = {"transaction_id": payload.scep_transaction_id[:MAX_TRANSACTION_ID]}
    try:
        csr = read_csr(payload.x509_certificate_request.raw)
    except CsrError as exc:
        return Decision(allow=False, code="csr-invalid", message=str(exc), detail=detail)
    verdict = await validator.validate(
        payload.scep_challenge, payload.scep_transaction_id, csr, now=now.timestamp()
    )
    detail |= verdict.detail
    if not verdict.allow:
        return Decision(
            allow=False,
            code=verdict.code,
            message=verdict.message,
            identifier=csr.common_name,  # kept for logs by the handler (`kept_identifier`)
            detail=detail,
        )
    if verdict.identity is None:
        if hook.on_missing_identifier == "allow":
            return Decision(allow=True, data={}, detail=detail)
        return Decision(
            allow=False,
            code="identifier-missing",
            message="the CSR names no device (subject common name) to check",
            detail=detail,
        )
    device = WebhookRequest(
        timestamp=payload.timestamp,
        attestationData=AttestationData(permanentIdentifier=verdict.identity),
    )
    decision = await decide(hook, device, chain, now=now)
    if not decision.allow and verdict.release and await verdict.release(decision.code, deadline):
        detail["challenge"] = "returned"  # it issued nothing: the device may present it again
    return dataclasses.replace(decision, detail=detail)
