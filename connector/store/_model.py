"""Values the store reads and writes, and how it fails.

Exceptions::

    StoreError              the database cannot be used (unreachable, locked, broken)
    └── SchemaTooNew        the database was migrated by a newer release; refused, never touched

Everything here is plain data: the store never sees a `DeviceRecord`, only the bytes the record
codec made of it, so it stays ignorant of vendors and of the connector's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class StoreError(Exception):
    """When the database cannot be used; the message names no password."""


class StoreRefused(StoreError):
    """When the database refuses the data itself (a constraint, a value it cannot hold): trying
    the same statement again would fail again."""


class SchemaTooNew(StoreError):
    """When the database's schema version is newer than this release knows."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the store's schema is version {found}, this release supports up to {supported}: "
            "upgrade posture-connector (the database was not changed)"
        )
        self.found = found
        self.supported = supported


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """One device of an inventory generation.

    Attributes:
        keys: Every lookup key it answers to (the normalised serial and UDID).
        payload: The encoded record.
        rank: Which of two records with one key wins: the higher (the last contact's Unix time).
    """

    keys: tuple[str, ...]
    payload: bytes
    rank: float = 0.0


AMBIGUOUS = b"\x00"
"""The payload of a key two different records claimed with the same rank (no encoded record is
one zero byte): which is current cannot be told, so the reader fails the lookup."""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A device found in a provider's current generation.

    Attributes:
        generation: The generation that answered (for the audit log).
        completed_at: Unix time that generation's listing began (its oldest rows; staleness
            counts from here).
        payload: The encoded record.
        age: Seconds since `completed_at` by the database's clock, the one every replica
            shares (a replica's own clock may be off by minutes).
    """

    generation: int
    completed_at: float
    payload: bytes
    age: float = field(compare=False)


@dataclass(frozen=True, slots=True)
class Generation:
    """A complete inventory snapshot of one provider.

    Attributes:
        id: Monotonic id across all providers.
        provider: Configured provider name.
        completed_at: Unix time its listing began, so its oldest rows are this old (set when
            it became current; staleness counts from here, not from the commit).
        devices: How many devices it holds.
        age: Seconds since `completed_at` by the database's clock (see `StoredAnswer`).
    """

    id: int
    provider: str
    completed_at: float
    devices: int
    age: float = field(compare=False)


@dataclass(frozen=True, slots=True)
class SyncState:
    """Where a provider's sync stands, shared by every replica.

    Attributes:
        provider: Configured provider name.
        building: Id of an unfinished generation a resumed sync continues, if any.
        cursor: The vendor's resume point inside it (opaque text, never a secret).
        last_success: Unix time of the last complete sync.
        last_attempt: Unix time of the last attempt.
        last_error: Why the last attempt failed, if it did.
        last_full: Unix time of the last full resync.
    """

    provider: str
    building: int | None = None
    cursor: str | None = None
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    last_full: float | None = None


@dataclass(frozen=True, slots=True)
class FailedRule:
    """A policy rule that refused (or, in shadow mode, would have refused) the device.

    Attributes:
        code: Stable reason code.
        message: Human explanation.
        observed: The value the rule saw.
    """

    code: str
    message: str
    observed: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One decision, as the audit log keeps it.

    Attributes:
        at: Unix time of the decision.
        webhook: Webhook name.
        webhook_kind: ENRICHING, AUTHORIZING, SCEPCHALLENGE, NOTIFYING.
        identifier: The attested identifier (truncated when it was invalid).
        identifier_kind: Its shape, when it passed the check.
        allow: The answer step-ca received.
        code: Reason code of a deny.
        provider: The provider that answered.
        source: What answered: ``live``, ``cache``, ``generation:<id>``.
        request_id: step-ca's request id (``X-Request-Id``).
        latency_ms: Time to decide.
        mode: ``enforce`` or ``shadow``.
        would_allow: The policy's own verdict (differs from `allow` only in shadow mode).
        failed_rules: Every failing rule.
        user: The device's user (only with the personal-data switch on).
        email: Their e-mail (likewise).
        detail: Extra facts (SCEP transaction id, certificate serial and expiry...).
        id: Row id, set when read back.
    """

    at: float
    webhook: str
    webhook_kind: str
    identifier: str | None
    identifier_kind: str | None
    allow: bool
    code: str | None = None
    provider: str | None = None
    source: str | None = None
    request_id: str | None = None
    latency_ms: float | None = None
    mode: str = "enforce"
    would_allow: bool | None = None
    failed_rules: tuple[FailedRule, ...] = field(default=())
    user: str | None = None
    email: str | None = None
    detail: dict[str, str] | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit entries to read; every field narrows the result.

    Attributes:
        identifier: Exact identifier (case-insensitive).
        since: Unix time, inclusive.
        until: Unix time, exclusive.
        denied_only: Only entries whose policy verdict was a deny (shadow would-denials too).
        code: Only entries with this reason code.
        webhook: Only this webhook.
        limit: At most this many, newest first.
    """

    identifier: str | None = None
    since: float | None = None
    until: float | None = None
    denied_only: bool = False
    code: str | None = None
    webhook: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Challenge:
    """A one-time SCEP challenge bound to a device; the store keeps only its digest.

    Attributes:
        digest: SHA-256 of the challenge (hex); the challenge itself is a secret.
        webhook: The webhook it is valid for.
        identity: The device identity the MDM named.
        expires_at: Unix time after which it is refused.
    """

    digest: str
    webhook: str
    identity: str
    expires_at: float
