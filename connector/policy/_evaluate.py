"""Applying the rule table to one device, and re-applying only its time-dependent part."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connector.policy._result import PolicyResult, RuleOutcome
from connector.policy._rule import Rule, Subject
from connector.policy._rules import RULES
from connector.policy._settings import PolicySettings
from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A policy result and the rules whose verdicts depend on the time.

    Attributes:
        result: Every configured rule's outcome, in table order.
        timed: (position in `result.outcomes`, rule) of each rule that read the request time.
    """

    result: PolicyResult
    timed: tuple[tuple[int, Rule], ...]


def evaluate(
    policy: PolicySettings, device: DeviceRecord, identifier: DeviceIdentifier, *, now: datetime
) -> PolicyResult:
    """Judge the device by every configured rule, in table order; pure and clock-free."""
    return judge(policy, device, identifier, now=now).result


def judge(
    policy: PolicySettings, device: DeviceRecord, identifier: DeviceIdentifier, *, now: datetime
) -> Evaluation:
    """`evaluate`, noting which rules read `now` (each rule gets its own `Subject`)."""
    outcomes: list[RuleOutcome] = []
    timed: list[tuple[int, Rule]] = []
    for rule in RULES:
        if not rule.configured(policy):
            continue
        subject = Subject(device, identifier, now)
        outcomes.append(rule.judge(policy, subject))
        if subject.clock_read:
            timed.append((len(outcomes) - 1, rule))
    return Evaluation(PolicyResult(tuple(outcomes), policy.report), tuple(timed))


def rejudge(
    previous: Evaluation,
    policy: PolicySettings,
    device: DeviceRecord,
    identifier: DeviceIdentifier,
    *,
    now: datetime,
) -> Evaluation:
    """`judge` at another time, for the same policy, device and identifier as `previous`.

    Rules are pure: one that did not read the clock reaches the same verdict on the same
    inputs, so only the rules in `previous.timed` are judged again (and stay timed).
    """
    if not previous.timed:
        return previous
    outcomes = list(previous.result.outcomes)
    for position, rule in previous.timed:
        outcomes[position] = rule.judge(policy, Subject(device, identifier, now))
    return Evaluation(PolicyResult(tuple(outcomes), policy.report), previous.timed)
