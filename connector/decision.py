"""From an authentic request to allow/deny: identifier checks, provider chain, policy, data.

Every path that is not an explicit allow ends in a deny with a stable reason code; errors from
providers arrive here already translated and can only deny.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector import jsonbytes
from connector.enrichment import build_data
from connector.lookup import LookupResult, ProviderChain
from connector.models import AttestedRequest, ReplyError, WebhookReply
from connector.observe import clip
from connector.policy import (
    Evaluation,
    PolicyResult,
    RuleOutcome,
    evaluate,
    identifier_kind_refusal,
    judge,
    rejudge,
)
from connector.settings import WebhookSettings
from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier, IdentifierKind, IdentifierShapeError, classify
from providers.vocabulary import is_apple_platform, is_virtual_machine


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one webhook call and what explains it.

    Attributes:
        allow: The answer.
        code: Reason code of a deny (None on allow).
        message: Human reason shown to the ACME client on deny.
        data: Enrichment data (ENRICHING allows only).
        identifier: The attested identifier as received (may be invalid).
        kind: Its shape, when it passed the check.
        record: The device the chain found.
        lookup: The chain's answer, when it was asked.
        outcomes: Every policy rule's verdict, when the policy ran.
        detail: Extra facts for the audit log (a SCEP transaction id, the validator's code).
    """

    allow: bool
    code: str | None = None
    message: str | None = None
    data: dict[str, Any] | None = None
    identifier: str | None = None
    kind: str | None = None
    record: DeviceRecord | None = None
    lookup: LookupResult | None = None
    outcomes: tuple[RuleOutcome, ...] = field(default=())
    detail: dict[str, str] | None = None

    def reply(self) -> WebhookReply:
        """The JSON step-ca receives."""
        if self.allow:
            return WebhookReply(allow=True, data=self.data)
        return WebhookReply(
            allow=False,
            error=ReplyError(code=self.code or "denied", message=self.message or "denied"),
        )

    def reply_body(self) -> bytes:
        """`reply` as the JSON bytes sent, written directly (no model on the hot path)."""
        if self.allow:
            if self.data is None:
                return _ALLOW
            return jsonbytes.dumps({"allow": True, "data": self.data})
        error = {"code": self.code or "denied", "message": self.message or "denied"}
        return jsonbytes.dumps({"allow": False, "error": error})


_ALLOW = b'{"allow":true}'


def _deny(code: str, message: str, **fields: Any) -> Decision:
    return Decision(allow=False, code=code, message=message, **fields)


def check_identifier(hook: WebhookSettings, value: str) -> DeviceIdentifier | Decision:
    """The identifier if its shape is accepted for this webhook, else the deny."""
    try:
        return classify(value, hook.identifier_kinds)
    except IdentifierShapeError:
        pass
    try:
        other = classify(value)
    except IdentifierShapeError as exc:
        return _deny("identifier-invalid", str(exc), identifier=value)
    refusal = identifier_kind_refusal(other.kind, hook.identifier_kinds)
    return _deny(refusal.code, refusal.message, identifier=value, kind=other.kind.value)


def policy_error(result: PolicyResult) -> tuple[str, str]:
    """The code and message a failed policy puts into the reply's `error`."""
    error = result.error  # honours the policy's report = "first" | "all"
    if error is None:  # pragma: no cover - only called for a failed policy
        return "policy-denied", "denied by policy"
    return error.code, error.message


_APPLE_KINDS = frozenset({IdentifierKind.SERIAL, IdentifierKind.UDID})
"""Identifiers that Apple attests when ACME attests them (`_ATTESTED_KINDS`): the device must
be an Apple one (`not_apple_attested`).

Windows and Linux hosts report a serial number their firmware (or a virtual machine's
settings) chose, and an MDM takes it as given: a VM enrolled with a Mac's serial would
otherwise vouch for that Mac. A record with no platform is left to the policy's ``platform``
rule (`allow_unreported`)."""

_ATTESTED_KINDS = frozenset({"AUTHORIZING", "ENRICHING"})
"""Webhook kinds whose identifier is ACME device-attest-01's. A SCEP webhook's comes from the
CSR a device wrote (a Windows PC's serial in ``CN={{SerialNumber}}``): no Apple check there."""


def not_apple_attested(
    hook: WebhookSettings, identifier: DeviceIdentifier, record: DeviceRecord
) -> str | None:
    """Why `record` cannot be the device Apple attested `identifier` for, None when it can.

    Apple attests serials and UDIDs of its own hardware only: a record of another platform,
    or of a virtual machine (whose serial is whatever its settings say, a personal Mac's
    included), is another device that took the identifier.
    """
    if hook.kind not in _ATTESTED_KINDS or identifier.kind not in _APPLE_KINDS:
        return None
    if record.platform and not is_apple_platform(record.platform):
        return f"the inventory lists this Apple identifier on a {clip(record.platform, 40)} device"
    if record.model and is_virtual_machine(record.model):
        return (
            "the inventory lists this Apple identifier on a virtual machine "
            f"({clip(record.model, 40)}); Apple attests real devices only"
        )
    return None


MEMO_ENTRIES = 4096
"""Identifiers a `DecisionMemo` remembers (all forgotten at once when full)."""


@dataclass(frozen=True, slots=True)
class _Judged:
    """A policy evaluation and exactly what it judged."""

    record: DeviceRecord
    identifier: DeviceIdentifier
    evaluation: Evaluation


class DecisionMemo:
    """One webhook's reusable work per attested identifier: the shape check, and the policy's
    evaluation of the record last found for it.

    An evaluation is reused only for the very record object it judged (records are frozen;
    the lookup cache and the file indexes hand out the same object until the answer changes,
    and a new object is judged afresh), and the rules in it that read the clock are judged
    again on every call (`rejudge`): a verdict never outlives the record or the time it rests
    on. Every other check of the call still runs each time. One memo serves one webhook's
    settings: handed another, it forgets everything first.
    """

    __slots__ = ("_evaluations", "_hook", "_identifiers")

    def __init__(self) -> None:
        self._hook: WebhookSettings | None = None
        self._identifiers: dict[str, DeviceIdentifier] = {}
        self._evaluations: dict[str, _Judged] = {}

    def _serve(self, hook: WebhookSettings) -> None:
        if hook is not self._hook:
            self._hook = hook
            self._identifiers.clear()
            self._evaluations.clear()

    def identifier(self, hook: WebhookSettings, value: str) -> DeviceIdentifier | Decision:
        """`check_identifier`, from memory for a value this webhook accepted before."""
        self._serve(hook)
        known = self._identifiers.get(value)
        if known is not None:
            return known
        checked = check_identifier(hook, value)
        if isinstance(checked, DeviceIdentifier):  # a refusal is not kept: it is cheap to redo
            if len(self._identifiers) >= MEMO_ENTRIES:
                self._identifiers.clear()
            self._identifiers[value] = checked
        return checked

    def evaluation(
        self,
        hook: WebhookSettings,
        record: DeviceRecord,
        identifier: DeviceIdentifier,
        now: datetime,
    ) -> PolicyResult:
        """`hook`'s policy verdict on `record` for `identifier` at `now`."""
        self._serve(hook)
        kept = self._evaluations.get(identifier.value)
        if kept is not None and kept.record is record and kept.identifier == identifier:
            evaluation = rejudge(kept.evaluation, hook.policy, record, identifier, now=now)
            return evaluation.result
        evaluation = judge(hook.policy, record, identifier, now=now)
        if len(self._evaluations) >= MEMO_ENTRIES:
            self._evaluations.clear()
        self._evaluations[identifier.value] = _Judged(record, identifier, evaluation)
        return evaluation.result


async def decide(
    hook: WebhookSettings,
    request: AttestedRequest,
    chain: ProviderChain,
    *,
    now: datetime,
    memo: DecisionMemo | None = None,
) -> Decision:
    """Run the checks in order; the first failing one decides.

    With `memo` (the webhook's own), work that cannot change between calls is reused.
    """
    value = request.permanent_identifier
    if not value:
        if hook.on_missing_identifier == "allow":
            return Decision(allow=True, data={} if hook.returns_data else None)
        return _deny("identifier-missing", "the request carries no attested permanent identifier")
    checked = check_identifier(hook, value) if memo is None else memo.identifier(hook, value)
    if isinstance(checked, Decision):
        return checked
    identifier = checked
    base: dict[str, Any] = {"identifier": value, "kind": identifier.kind.value}
    if hook.kind == "ENRICHING":
        common_name = request.csr_common_name
        if common_name and common_name != value:
            return _deny(
                "csr-mismatch", "the CSR common name differs from the attested identifier", **base
            )
    result = await chain.lookup(identifier)
    base["lookup"] = result
    if result.record is None:
        if result.failures:
            return _deny(
                "inventory-unavailable",
                "the device inventory could not be consulted; try again later",
                **base,
            )
        return _deny(
            "device-not-found", "the device is not in the organisation's inventory", **base
        )
    record = result.record
    mismatch = not_apple_attested(hook, identifier, record)
    if mismatch is not None:
        return _deny("platform-mismatch", mismatch, record=record, **base)
    if memo is None:
        verdict = evaluate(hook.policy, record, identifier, now=now)
    else:
        verdict = memo.evaluation(hook, record, identifier, now)
    if not verdict.allow:
        code, message = policy_error(verdict)
        return _deny(code, message, record=record, outcomes=verdict.outcomes, **base)
    data = build_data(hook.enrichment, record, identifier) if hook.returns_data else None
    return Decision(allow=True, data=data, record=record, outcomes=verdict.outcomes, **base)


def vouches(decision: Decision) -> bool:
    """Whether `decision.record` may be taken for the attested device (its user and groups
    may describe it): not a record of another device that took the identifier
    (``platform-mismatch``), nor one from an inventory the webhook's policy does not trust."""
    if decision.record is None or decision.code == "platform-mismatch":
        return False
    return not any(o.rule == "provider" and not o.passed for o in decision.outcomes)


def shadow_reply(hook: WebhookSettings, decision: Decision) -> WebhookReply:
    """What step-ca receives from a webhook in shadow mode: an allow, whatever the policy said.

    A device the policy refused still gets its enrichment data when the inventory knows it, so
    templates render as they will once the webhook enforces; an unknown device gets ``{}``, and
    so does one whose record cannot be taken for it (`vouches`): another person's user and
    groups must not reach its certificate.
    """
    if decision.allow:
        return decision.reply()
    if not hook.returns_data:
        return WebhookReply(allow=True)
    data: dict[str, Any] = {}
    record = decision.record
    if record is not None and vouches(decision) and decision.identifier and decision.kind:
        identifier = DeviceIdentifier(decision.identifier, IdentifierKind(decision.kind))
        data = build_data(hook.enrichment, record, identifier)
    return WebhookReply(allow=True, data=data)
