"""What one rule unit is, and the helpers every unit shares to build its outcome.

A unit holds everything about one rule: its config key, its reason code, whether the policy
turns it on, how it judges a device (pure), the messages it explains itself with, and the
``check-config`` lint for its own settings. `evaluate` and `check_policy` only walk the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol

from connector.policy._result import RuleOutcome
from connector.policy._settings import PolicySettings, fold
from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier

UNREPORTED = "attribute-unreported"
# How many group names an `observed` value or a message lists before eliding the rest.
_LIST_LIMIT = 20


class Subject:
    """What a rule judges.

    Attributes:
        device: The record the provider chain found.
        identifier: The attested identifier that found it.
        now: The request time (rules never read the clock).
        clock_read: Whether a rule has read `now`. A rule is pure, so a verdict it reached
            without reading `now` holds at any other time for the same device and identifier
            (`connector.policy.rejudge` re-judges only the rules that read it).
    """

    __slots__ = ("_now", "clock_read", "device", "identifier")

    def __init__(self, device: DeviceRecord, identifier: DeviceIdentifier, now: datetime) -> None:
        self.device = device
        self.identifier = identifier
        self._now = now
        self.clock_read = False

    @property
    def now(self) -> datetime:
        """The request time; reading it marks the verdict as time-dependent."""
        self.clock_read = True
        return self._now


class Rule(Protocol):
    """One rule of the table."""

    @property
    def key(self) -> str:
        """The config key, also `RuleOutcome.rule` (``groups.any_of`` for the group rules)."""
        ...

    @property
    def code(self) -> str:
        """The reason code of a failure (`UNREPORTED` aside)."""
        ...

    @property
    def unreportable(self) -> bool:
        """Whether it reads a field a provider may leave `None`, so allow_unreported may list it."""
        ...

    def configured(self, policy: PolicySettings) -> bool:
        """Whether the policy turns the rule on."""
        ...

    def judge(self, policy: PolicySettings, subject: Subject) -> RuleOutcome:
        """The rule's verdict on one device; pure."""
        ...

    def lint(self, policy: PolicySettings) -> Iterator[str]:
        """Meaningless but valid parts of the rule's settings, as ``key: problem`` lines."""
        ...


MAX_MESSAGE = 512
"""Characters of a rule's message: it may quote an inventory's value (an OS version, a
compliance state) of any length, and it reaches step-ca's answer, the log and the audit log."""


def verdict(
    rule: Rule, ok: bool, message: str, observed: str | None, code: str | None = None
) -> RuleOutcome:
    """An outcome of ``rule``; a failure carries ``code`` or else the rule's own code."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return RuleOutcome(rule.key, ok, None if ok else code or rule.code, message, observed)


def unreported(rule: Rule, policy: PolicySettings, device: DeviceRecord, what: str) -> RuleOutcome:
    """The device lacks ``what``: fail closed unless allow_unreported lists the rule."""
    if rule.key in policy.allow_unreported_set:
        return RuleOutcome(
            rule.key,
            True,
            None,
            f"inventory {device.provider} does not report the {what}; allowed by allow_unreported",
            None,
        )
    return RuleOutcome(
        rule.key,
        False,
        UNREPORTED,
        f"inventory {device.provider} does not report the device's {what}",
        None,
    )


def elide(values: Iterable[str]) -> str:
    """Join names for a message, eliding all but the first twenty."""
    items = list(values)
    if not items:
        return "(none)"
    shown = ", ".join(items[:_LIST_LIMIT])
    more = len(items) - _LIST_LIMIT
    return f"{shown}, … (+{more} more)" if more > 0 else shown


def duplicates(key: str, values: Iterable[str]) -> Iterator[str]:
    """Each entry that repeats an earlier one after case folding."""
    seen: set[str] = set()
    for value in values:
        folded = fold(value)
        if folded in seen:
            yield f"{key}: {value!r} is listed twice (compared case-insensitively)"
        seen.add(folded)


def unknown(key: str, values: Iterable[str], known: Iterable[str], label: str) -> Iterator[str]:
    """Each entry outside the providers' vocabulary: likely a typo, never matched."""
    folded = {fold(k) for k in known}
    for value in values:
        if fold(value) not in folded:
            yield f"{key}: {value!r} is not {label} any provider reports"
