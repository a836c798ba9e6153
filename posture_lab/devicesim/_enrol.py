"""One full device-attest-01 enrolment, the way an Apple device running ACME does it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography import x509

from posture_lab.devicesim._acme import AcmeClient, AcmeError
from posture_lab.devicesim._attestation import AttestationCA, SimulatedDevice

DEVICE_ATTEST = "device-attest-01"
PERMANENT_IDENTIFIER = "permanent-identifier"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """The outcome of a successful enrolment.

    Attributes:
        identifier: the permanent identifier used (serial or UDID).
        chain: the issued chain, leaf first.
        order_url: the ACME order, for diagnostics.
        seconds: wall time of the whole flow (new order to certificate download).
    """

    identifier: str
    chain: tuple[x509.Certificate, ...]
    order_url: str
    seconds: float

    @property
    def leaf(self) -> x509.Certificate:
        """The device certificate."""
        return self.chain[0]


def enrol(
    client: AcmeClient,
    device: SimulatedDevice,
    attestation_ca: AttestationCA,
    *,
    identifier: str | None = None,
    common_name: bool = False,
) -> Enrolment:
    """Order, attest, finalize and download a certificate for `device`.

    `identifier` is the ACME permanent identifier, the device serial by default (the UDID is
    the other value step-ca accepts). With `common_name` the CSR carries it as CN, otherwise
    the subject is empty. Raises `AcmeError` with step-ca's problem document on refusal.
    """
    started = time.perf_counter()
    value = identifier or device.serial
    order = client.new_order(PERMANENT_IDENTIFIER, value)
    for url in order.authorizations:
        authz = client.authorization(url)
        if authz.status == "valid":
            continue
        challenge = authz.challenge(DEVICE_ATTEST)
        answered = client.answer_device_attest(
            challenge, device.attestation_object(attestation_ca, challenge.token)
        )
        if answered.status != "valid":
            raise AcmeError(400, answered.error or {"detail": f"challenge {answered.status}"})
    order = client.finalize(order, device.csr(value if common_name else None))
    order = client.wait_for(order)
    if order.status != "valid" or order.certificate is None:
        raise AcmeError(400, order.error or {"detail": f"order ended {order.status}"})
    chain = client.certificate_chain(order.certificate)
    return Enrolment(
        identifier=value,
        chain=tuple(chain),
        order_url=order.url,
        seconds=time.perf_counter() - started,
    )
