"""What evaluating a policy produces: one outcome per configured rule, and the denial."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One rule's verdict on one device.

    Attributes:
        rule: The rule's config key (``groups.any_of`` for the group rules).
        passed: Whether it passed.
        code: Stable reason code when it failed, None when it passed.
        message: Human explanation, safe to show the device's user.
        observed: The value the rule saw, as text (None when the provider did not report it).
    """

    rule: str
    passed: bool
    code: str | None
    message: str
    observed: str | None


@dataclass(frozen=True, slots=True)
class PolicyError:
    """What goes into step-ca's ``error`` object on a denial.

    Attributes:
        code: The first failing rule's code.
        message: Its message, or every failure's message joined when ``report = "all"``.
    """

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """Every configured rule's outcome, in evaluation order.

    Attributes:
        outcomes: One entry per configured rule.
        report: The policy's ``report`` setting, applied by `error`.
    """

    outcomes: tuple[RuleOutcome, ...]
    report: Literal["first", "all"] = "first"

    @property
    def allow(self) -> bool:
        """True when every rule passed."""
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> tuple[RuleOutcome, ...]:
        """The rules that failed."""
        return tuple(o for o in self.outcomes if not o.passed)

    @property
    def error(self) -> PolicyError | None:
        """The denial step-ca shows the ACME client, or None when the device passed."""
        failures = self.failures
        if not failures:
            return None
        first = failures[0]
        if self.report == "first" or len(failures) == 1:
            return PolicyError(first.code or "policy-denied", first.message)
        return PolicyError(first.code or "policy-denied", "; ".join(f.message for f in failures))
