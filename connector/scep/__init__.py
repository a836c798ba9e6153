"""SCEP enrolment through step-ca's SCEPCHALLENGE and NOTIFYING webhooks.

Devices that cannot attest (Intel Macs, older iOS, Windows, MDM-pushed Wi-Fi and VPN profiles)
enrol over SCEP. step-ca asks every SCEPCHALLENGE webhook of a SCEP provisioner whether the
challenge in the CSR is good and tells NOTIFYING webhooks how the issuance ended. A webhook's
``[webhooks.validator]`` decides the challenge; once it vouches for a device, that device goes
through the same provider chain, policy and enrichment as an attested one.

Modules: `_settings` (the validator tables), `_csr` (CSR and certificate facts, pure),
`_validators` (Intune and one-time challenges), `_issue` (one-time challenges for an MDM),
`_decide` (SCEPCHALLENGE: validator, then posture), `_notify` (NOTIFYING: audit, then Intune in
the background); and, imported by name because they need the rest of the service, `runtime`
(what the app holds), `webhook` (what ``handlers.py`` hands verified SCEP calls to) and
`endpoint` (the challenge URL's handler).

Only the settings are imported here: ``connector.settings`` needs them while the rest of the
package needs ``connector.settings``.
"""

from connector.scep._settings import (
    DEFAULT_INTUNE_RESOURCE,
    ChallengeValidatorSettings,
    IntuneValidatorSettings,
    ValidatorSettings,
)

SCEP_KINDS = frozenset({"SCEPCHALLENGE", "NOTIFYING"})
"""Webhook kinds step-ca calls only from SCEP provisioners."""

__all__ = [
    "DEFAULT_INTUNE_RESOURCE",
    "SCEP_KINDS",
    "ChallengeValidatorSettings",
    "IntuneValidatorSettings",
    "ValidatorSettings",
]
