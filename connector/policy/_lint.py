"""``check-config``'s view of a valid policy: dead entries and likely typos.

The validators already refuse policies that deny every device; these findings are parts that
cannot have the effect an admin meant, and `check-config` rejects them so someone notices.
"""

from __future__ import annotations

from connector.policy._rules import RULES
from connector.policy._settings import PolicySettings


def check_policy(policy: PolicySettings) -> list[str]:
    """Meaningless but not contradictory parts of a valid policy, as ``key: problem`` lines.

    ``allow_unreported`` entries for rules that are off come first, then each rule's own
    findings in table order.
    """
    configured = {rule.key: rule.configured(policy) for rule in RULES}
    problems = [
        f"allow_unreported: {key} is listed but the {key} rule is off"
        for key in policy.allow_unreported
        if not configured[key]
    ]
    for rule in RULES:
        problems.extend(rule.lint(policy))
    return problems
