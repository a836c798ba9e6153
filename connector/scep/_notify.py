"""NOTIFYING calls: what step-ca reports after a SCEP issuance, for the audit log and Intune.

step-ca ignores the outcome of a notification and waits for it while the SCEP client waits for
its certificate, so the answer goes back at once: the audit entry is queued (the recorder never
blocks), and the report to Intune runs in the background, each under its own deadline, at most
`Notifier.limit` at a time (more are dropped and logged rather than queued without bound).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from connector.models import ScepNotification
from connector.scep._csr import CsrError, CsrFacts, IssuedFacts, read_certificate, read_csr
from connector.scep._settings import IntuneValidatorSettings
from connector.scep._validators import MAX_TRANSACTION_ID
from connector.store import AuditEntry
from providers.base import ProviderError
from providers.intune import IntuneScepClient, IssuedCertificate

log = structlog.get_logger("connector.scep")

MAX_ERROR = 255
"""Characters of step-ca's error description kept (Intune takes at most 255)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """What one NOTIFYING call reported.

    Attributes:
        issued: Whether a certificate was issued.
        transaction_id: The SCEP transaction id.
        csr: The request, when readable.
        certificate: The issued certificate, when readable.
        error: step-ca's error description (failures), or why a part was unreadable.
        error_code: step-ca's error code (0: none given).
    """

    issued: bool
    transaction_id: str
    csr: CsrFacts | None
    certificate: IssuedFacts | None
    error: str
    error_code: int

    @property
    def identifier(self) -> str | None:
        """The device as the certificate (else the request) names it (whole: logs keep it by
        `kept_identifier`)."""
        name = self.certificate.common_name if self.certificate else None
        return name or (self.csr.common_name if self.csr else None)

    @property
    def detail(self) -> dict[str, str]:
        """The audit log's detail: transaction id and serial and expiry, or the error."""
        detail = {
            "transaction_id": self.transaction_id,
            "event": "issued" if self.issued else "failed",
        }
        if self.certificate is not None:
            detail |= {
                "serial": self.certificate.serial,
                "expires": self.certificate.expires,
                "thumbprint": self.certificate.thumbprint,
            }
        if self.error:
            detail["error"] = self.error
        if self.error_code:
            detail["error_code"] = str(self.error_code)
        return detail


def read_notification(payload: ScepNotification) -> Notification:
    """Parse what a NOTIFYING body says; unreadable parts are noted, never fatal."""
    problems: list[str] = []
    csr: CsrFacts | None = None
    cert: IssuedFacts | None = None
    try:
        csr = read_csr(payload.x509_certificate_request.raw)
    except CsrError as exc:
        problems.append(str(exc))
    if payload.x509_certificate is not None:
        try:
            cert = read_certificate(payload.x509_certificate.raw)
        except CsrError as exc:
            problems.append(str(exc))
    error = "; ".join([payload.scep_error_description, *problems]).strip("; ")
    return Notification(
        issued=payload.issued,
        transaction_id=payload.scep_transaction_id[:MAX_TRANSACTION_ID],
        csr=csr,
        certificate=cert,
        error=error[:MAX_ERROR],
        error_code=payload.scep_error_code,
    )


def audit_entry(
    webhook: str,
    note: Notification,
    *,
    identifier: str | None,
    at: float,
    request_id: str | None,
) -> AuditEntry:
    """The audit log's record of a notification (allow = issued), naming it by `identifier`
    (`note.identifier` as the audit may keep it)."""
    return AuditEntry(
        at=at,
        webhook=webhook,
        webhook_kind="NOTIFYING",
        identifier=identifier,
        identifier_kind=None,
        allow=note.issued,
        code=None if note.issued else "issuance-failed",
        request_id=request_id,
        detail=note.detail,
    )


SENDING = 2
"""Reports sent at once. The rest wait their turn outside the HTTP client, which SCEPCHALLENGE
validations share: a burst of issuances must never stand in its queue before a validation (the
client would refuse the validation, that queue being too long for its budget)."""


class Notifier:
    """Runs reports to Intune in the background, bounded in number and `SENDING` at a time;
    waits for them at close."""

    def __init__(self, limit: int = 256, sending: int = SENDING) -> None:
        self.limit = limit
        self._sending = asyncio.Semaphore(sending)
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0
        """Reports not sent because `limit` were already under way."""

    def submit(self, work: Coroutine[Any, Any, None]) -> bool:
        """Start `work` unless `limit` reports are under way (then drop it and say so)."""
        if len(self._tasks) >= self.limit:
            work.close()
            self.dropped += 1
            log.error("scep.notify_dropped", pending=len(self._tasks))
            return False
        task = asyncio.create_task(self._in_turn(work), name="scep-notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _in_turn(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            async with self._sending:
                await work
        finally:
            work.close()  # cancelled before its turn came: never started (else: nothing to do)

    @property
    def pending(self) -> int:
        """Reports under way or waiting their turn."""
        return len(self._tasks)

    async def aclose(self, grace: float = 5.0) -> None:
        """Give reports under way `grace` seconds, then cancel the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def forward_to_intune(
    client: IntuneScepClient, settings: IntuneValidatorSettings, webhook: str, note: Notification
) -> None:
    """Report `note` to Intune (success or failure notification); log, never raise."""
    if note.csr is None or (note.issued and note.certificate is None):
        log.warning(
            "scep.intune_notify_skipped", webhook=webhook, transaction_id=note.transaction_id
        )
        return
    try:
        if note.certificate is not None:
            cert = note.certificate
            issued = IssuedCertificate(
                thumbprint=cert.thumbprint,
                serial=cert.serial,
                expires=cert.expires,
                issuer=cert.issuer_common_name,
                ca_configuration=settings.caller_info,
            )
            verdict = await client.notify_success(
                note.transaction_id, note.csr.base64_der, issued, budget=settings.notify_timeout
            )
        else:
            verdict = await client.notify_failure(
                note.transaction_id,
                note.csr.base64_der,
                hresult=note.error_code,
                description=note.error,
                budget=settings.notify_timeout,
            )
    except ProviderError as exc:
        log.warning(
            "scep.intune_notify_failed",
            webhook=webhook,
            transaction_id=note.transaction_id,
            error=exc.message,
        )
        return
    except Exception:  # a background task: a bug is logged here or nowhere
        log.exception("scep.intune_notify_failed", webhook=webhook)
        return
    event = "scep.intune_notified" if verdict.ok else "scep.intune_notify_refused"
    log.info(
        event,
        webhook=webhook,
        transaction_id=note.transaction_id,
        issued=note.issued,
        code=verdict.code,
    )
