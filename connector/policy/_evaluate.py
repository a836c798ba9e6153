"""Applying the rule table to one device."""

from __future__ import annotations

from datetime import datetime

from connector.policy._result import PolicyResult
from connector.policy._rule import Subject
from connector.policy._rules import RULES
from connector.policy._settings import PolicySettings
from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier


def evaluate(
    policy: PolicySettings, device: DeviceRecord, identifier: DeviceIdentifier, *, now: datetime
) -> PolicyResult:
    """Judge the device by every configured rule, in table order; pure and clock-free."""
    subject = Subject(device, identifier, now)
    outcomes = tuple(rule.judge(policy, subject) for rule in RULES if rule.configured(policy))
    return PolicyResult(outcomes, policy.report)
