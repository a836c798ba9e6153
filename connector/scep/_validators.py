"""The two ways a SCEPCHALLENGE webhook judges a challenge, behind one `Validator` protocol.

- `IntuneValidator`: Intune decrypts its own challenge and checks the CSR against the profile
  it made it for (subject, SANs, key usage, expiry); only its ``Success`` passes. The identity
  it vouches for is the CSR's common name, which Intune has just compared with the profile.
- `ChallengeValidator`: a one-time challenge the connector handed out is used up atomically
  (`Store.burn_challenge`: one ``UPDATE ... RETURNING``, so two replicas cannot both accept it)
  and must be bound to the device the CSR's common name names, which is also the only name its
  subject alternative names may hold (``csr_names = "bound"``). A challenge presented with
  another device's CSR is used up too: it was seen by the wrong device, so it is spent. A good
  challenge whose device is then refused (posture, or an inventory that could not answer) is
  given back (`Verdict.release`): it issued nothing, and the device's SCEP client retries with
  the challenge its profile holds. A challenge bound to no device (``unbound = "csr"``) comes
  back only when the inventory could not answer: else one challenge could try device after
  device until the policy passes one.

Every failure (Intune away, store away, timeout) is a deny with its own reason code.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from connector.observe import kept_identifier
from connector.scep._csr import CsrFacts
from connector.scep._settings import ChallengeValidatorSettings, IntuneValidatorSettings
from connector.store import Store, StoreError
from providers.base import ProviderError
from providers.identifiers import ascii_upper
from providers.intune import IntuneScepClient

log = structlog.get_logger("connector.scep")

MAX_TRANSACTION_ID = 128
"""Characters of a SCEP transaction id that reach a log line or the audit log (clients pick it)."""
UNBOUND = "*"
"""The identity stored for a challenge issued without a device (``unbound = "csr"``)."""
UNAVAILABLE = "inventory-unavailable"
"""The denial that says nothing about the device: its inventory could not be consulted."""


def challenge_digest(challenge: str) -> str:
    """What the store keeps instead of the challenge: its SHA-256, hex."""
    return hashlib.sha256(challenge.encode("utf-8", "surrogateescape")).hexdigest()


def same_device(bound: str, named: str | None) -> bool:
    """Whether the CSR names the bound device: serials and UUIDs compare without ASCII case
    (Unicode's case mapping takes a long s, U+017F, for an S)."""
    return named is not None and ascii_upper(bound) == ascii_upper(named) != ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a validator decided about one challenge.

    Attributes:
        allow: Whether the challenge is good.
        code: Reason code of a refusal.
        message: What the refusal tells step-ca's log.
        identity: The device the validation vouches for, when it knows one.
        detail: Facts for the audit log (never the challenge).
        release: Gives a good one-time challenge back when its device is then refused with the
            code passed, waiting no later than the event-loop time passed (None: its own
            timeout); never raises; True if given back by then. None where nothing was used up.
    """

    allow: bool
    code: str | None = None
    message: str | None = None
    identity: str | None = None
    detail: Mapping[str, str] = field(default_factory=dict)
    release: Callable[[str | None, float | None], Awaitable[bool]] | None = None


def refuse(code: str, message: str, **detail: str) -> Verdict:
    """A refusal."""
    return Verdict(allow=False, code=code, message=message, detail=detail)


class Validator(Protocol):
    """Judges the challenge of one SCEPCHALLENGE call."""

    timeout: float
    """Seconds it may take; the provider chain gets the rest of the decision budget."""

    async def validate(
        self, challenge: str, transaction_id: str, csr: CsrFacts, *, now: float
    ) -> Verdict:
        """The verdict; never raises for an upstream or store failure (that is a refusal)."""
        ...


class IntuneValidator:
    """Asks Intune's SCEP request validation service."""

    def __init__(self, client: IntuneScepClient, settings: IntuneValidatorSettings) -> None:
        self._client = client
        self._identity = settings.identity
        self.timeout = settings.timeout

    async def validate(
        self, challenge: str, transaction_id: str, csr: CsrFacts, *, now: float
    ) -> Verdict:
        """Intune's ``Success`` allows, any other code or failure refuses."""
        del now
        if not challenge:
            return refuse("challenge-missing", "the CSR carries no challenge password")
        try:
            verdict = await self._client.validate(
                transaction_id, csr.base64_der, budget=self.timeout
            )
        except ProviderError as exc:
            log.warning(
                "scep.intune_unavailable",
                transaction_id=transaction_id[:MAX_TRANSACTION_ID],
                error=exc.message,
            )
            return refuse(
                "intune-unavailable",
                "Intune's SCEP validation could not be asked; try again later",
                error=exc.message,
            )
        if not verdict.ok:
            return refuse(
                "intune-refused",
                f"Intune refused the request: {verdict.code}",
                intune_code=verdict.code,
            )
        identity = csr.common_name if self._identity == "common_name" else None
        return Verdict(allow=True, identity=identity, detail={"intune_code": verdict.code})


class ChallengeValidator:
    """Accepts each one-time challenge once, for the device it was issued for."""

    def __init__(self, webhook: str, store: Store, settings: ChallengeValidatorSettings) -> None:
        self._webhook = webhook
        self._store = store
        self._unbound = settings.unbound
        self._csr_names = settings.csr_names
        self.timeout = settings.timeout
        self._returning: set[asyncio.Task[bool]] = set()  # give-backs that outlived their call

    async def settle(self) -> None:
        """Wait for the give-backs still under way (each bounded by `timeout`)."""
        if self._returning:
            await asyncio.wait(set(self._returning))

    async def validate(
        self, challenge: str, transaction_id: str, csr: CsrFacts, *, now: float
    ) -> Verdict:
        """Use the challenge up; allow only if it was live and bound to the CSR's device."""
        del transaction_id
        if not challenge:
            return refuse("challenge-missing", "the CSR carries no challenge password")
        digest = challenge_digest(challenge)
        try:
            async with asyncio.timeout(self.timeout):
                used = await self._store.burn_challenge(digest, self._webhook, now)
        except (StoreError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self.timeout:g}s"
            log.warning("scep.challenge_store_unavailable", webhook=self._webhook, error=reason)
            return refuse(
                "challenge-store-unavailable", "the challenge could not be checked; try again"
            )
        if used is None:
            return refuse("challenge-invalid", "the challenge is unknown, already used or expired")
        if used.identity == UNBOUND:
            if self._unbound != "csr":  # issued before the webhook was set to "probe"
                return refuse(
                    "challenge-invalid",
                    'the challenge names no device, and this webhook now has unbound = "probe"',
                )
            if csr.common_name is None:
                return refuse("csr-identity-missing", "the CSR names no device (subject CN)")
            if (names := self._other_names(csr, csr.common_name)) is not None:
                return names
            return Verdict(
                allow=True,
                identity=csr.common_name,
                detail={"binding": "csr"},
                release=self._giving_back(digest, now, after=frozenset({UNAVAILABLE})),
            )
        if not same_device(used.identity, csr.common_name):
            log.warning(
                "scep.challenge_device_mismatch",
                webhook=self._webhook,
                bound=used.identity,
                presented=kept_identifier(csr.common_name, personal_data=False),
            )
            return refuse(
                "challenge-device-mismatch",
                "the challenge was issued for another device than the CSR names",
                bound=used.identity,
            )
        if (names := self._other_names(csr, used.identity)) is not None:
            return names
        return Verdict(
            allow=True,
            identity=used.identity,
            detail={"binding": "device"},
            release=self._giving_back(digest, now),
        )

    def _other_names(self, csr: CsrFacts, identity: str) -> Verdict | None:
        """The refusal of a CSR that asks for names other than `identity` (``csr_names =
        "bound"``); None when it asks for none, or may."""
        if self._csr_names == "any":
            return None
        if csr.alt_names is None:
            return refuse(
                "csr-names-unbound",
                "the CSR carries more than one extension request, so which names step-ca would "
                "sign cannot be checked",
            )
        names = (*csr.alt_names, *csr.subject_names)
        others = [n for n in names if n is None or not same_device(identity, n)]
        if not others:
            return None
        # How many, not which: they may be users' e-mail addresses or UPNs (personal data).
        log.warning(
            "scep.challenge_names_mismatch",
            webhook=self._webhook,
            bound=identity,
            other_names=len(others),
        )
        return refuse(
            "csr-names-unbound",
            f"the CSR asks for {len(others)} name(s) other than the device the challenge vouches "
            'for, in its subject alternative names or subject (set csr_names = "any" if the '
            "template copies neither)",
            other_names=str(len(others)),
        )

    def _giving_back(
        self, digest: str, used_at: float, *, after: frozenset[str] | None = None
    ) -> Callable[[str | None, float | None], Awaitable[bool]]:
        """A `Verdict.release` for the challenge used up at `used_at`: after a denial with one
        of the codes `after` (None: any). A store that fails keeps it spent.

        The answer waits for it only until the deadline it is given (what is left of the
        decision budget: a late answer is lost, step-ca retries). A give-back still under way
        then goes on beside the answer, bounded by `timeout`: a store statement cannot always
        be abandoned (SQLite finishes it), and it only undoes this call's own use.
        """

        async def give_back() -> bool:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._store.release_challenge(digest, self._webhook, used_at)
            except (StoreError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {self.timeout:g}s"
                log.warning("scep.challenge_release_failed", webhook=self._webhook, error=reason)
                return False

        async def release(code: str | None, deadline: float | None) -> bool:
            if after is not None and code not in after:
                return False
            task = asyncio.create_task(give_back(), name="scep-challenge-release")
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)
            try:
                async with asyncio.timeout_at(deadline):
                    return await asyncio.shield(task)
            except TimeoutError:
                log.warning(
                    "scep.challenge_release_failed",
                    webhook=self._webhook,
                    error="no time left in the decision budget (it goes on after the answer)",
                )
                return False

        return release
