"""The admin's policy: pure rules over a `DeviceRecord`, each failure a stable reason code.

`evaluate` never does I/O, never reads the clock (``now`` is passed in) and never raises on
missing data: a rule on a field the provider does not report (`None`) fails closed with
``attribute-unreported`` unless the rule is listed in ``allow_unreported``.

Rules run in a fixed order (cheap identity checks first, groups last); ``report = "first"``
puts the first failure in step-ca's ``error`` object, ``report = "all"`` joins every failure's
message under the first failure's code. Every outcome stays on the `PolicyResult` for the
decision log and for ``posture-connector lookup``.

Contradictions that make a rule deny every device (an empty ``any_of``, a group in both
``all_of`` and ``none_of``, a version that does not parse) are refused by the validators, so
the service never starts with them; `check_policy` reports the softer, meaningless parts
(dead entries, typos of known values) for ``check-config``.

Modules: ``_settings`` (the validated config), ``_rules`` (the ordered rule table; one unit
per rule holds its key, code, judgement, messages and lint; the group units are in
``_groups``), ``_rule`` (what a unit is and the helpers units share), ``_evaluate`` and
``_lint`` (walking the table; `judge`/`rejudge` let a caller reuse a verdict and re-judge
only the rules that read the clock), ``_result``, ``_durations``.
"""

from connector.policy._durations import Duration, format_span, parse_duration
from connector.policy._evaluate import Evaluation, evaluate, judge, rejudge
from connector.policy._lint import check_policy
from connector.policy._result import PolicyError, PolicyResult, RuleOutcome
from connector.policy._rules import KIND_NOT_ALLOWED, RULES, identifier_kind_refusal
from connector.policy._settings import GroupRules, PolicySettings, UnreportableRule

__all__ = [
    "KIND_NOT_ALLOWED",
    "RULES",
    "Duration",
    "Evaluation",
    "GroupRules",
    "PolicyError",
    "PolicyResult",
    "PolicySettings",
    "RuleOutcome",
    "UnreportableRule",
    "check_policy",
    "evaluate",
    "format_span",
    "identifier_kind_refusal",
    "judge",
    "parse_duration",
    "rejudge",
]
