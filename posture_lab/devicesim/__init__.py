"""A simulated Apple device enrolling with step-ca over ACME device-attest-01.

Used by the lab (`posture-connector lab`) and the end-to-end tests; it never talks to Apple.
The attestation it produces only verifies against a step-ca whose provisioner lists
`AttestationCA.root` in `attestationRoots`.
"""

from posture_lab.devicesim._acme import (
    AcmeClient,
    AcmeError,
    Authorization,
    Challenge,
    Order,
    b64url,
    tls_context,
)
from posture_lab.devicesim._attestation import (
    OID_NONCE,
    OID_SEPOS_VERSION,
    OID_SERIAL,
    OID_UDID,
    AttestationCA,
    SimulatedDevice,
)
from posture_lab.devicesim._enrol import DEVICE_ATTEST, PERMANENT_IDENTIFIER, Enrolment, enrol

__all__ = [
    "DEVICE_ATTEST",
    "OID_NONCE",
    "OID_SEPOS_VERSION",
    "OID_SERIAL",
    "OID_UDID",
    "PERMANENT_IDENTIFIER",
    "AcmeClient",
    "AcmeError",
    "AttestationCA",
    "Authorization",
    "Challenge",
    "Enrolment",
    "Order",
    "SimulatedDevice",
    "b64url",
    "enrol",
    "tls_context",
]
