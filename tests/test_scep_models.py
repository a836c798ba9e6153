"""SCEP bodies are read as strictly as the others, and the pure SCEP pieces behave."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from pydantic import ValidationError

from connector.models import ScepChallengeRequest, ScepNotification, WireFormatError, parse_body
from connector.scep._csr import CsrError, read_certificate, read_csr
from connector.scep._notify import Notifier
from tests.scep_bodies import challenge_body, issued_certificate, notify_failure_body

TS = "2026-11-22T12:00:00Z"


def test_step_ca_shaped_bodies_parse() -> None:
    """A SCEPCHALLENGE body and a NOTIFYING failure (no scepErrorCode) read as step-ca means."""
    challenge = parse_body(challenge_body("C02TEST00001", "abc"), ScepChallengeRequest)
    failure = parse_body(notify_failure_body("C02TEST00001", "boom"), ScepNotification)

    assert (challenge.scep_challenge, challenge.provisioner_name) == ("abc", "wifi")
    assert read_csr(challenge.x509_certificate_request.raw).common_name == "C02TEST00001"
    assert (failure.issued, failure.scep_error_code, failure.scep_error_description) == (
        False,
        0,
        "boom",
    )


@pytest.mark.parametrize(
    "member",
    ['"SCEPChallenge":"x"', '"scepchallenge":"x"', '"ScepTransactionId":"x"'],
    ids=["upper", "lower", "mixed"],
)
def test_case_variant_scep_keys_are_refused(member: str) -> None:
    """A key Go would fold onto a SCEP field but spelled otherwise is refused."""
    raw = f'{{"timestamp":"{TS}","x509CertificateRequest":{{"raw":"MA=="}},{member}}}'.encode()

    with pytest.raises(WireFormatError, match="differs from step-ca's"):
        parse_body(raw, ScepChallengeRequest)


@pytest.mark.parametrize("value", ["1.0", '"5"', "true"], ids=["float", "string", "bool"])
def test_error_code_must_be_a_json_integer(value: str) -> None:
    """scepErrorCode is a Go int: another JSON type is refused, not coerced."""
    raw = (
        f'{{"timestamp":"{TS}","x509CertificateRequest":{{"raw":"MA=="}},"scepErrorCode":{value}}}'
    ).encode()

    with pytest.raises(ValidationError):
        parse_body(raw, ScepNotification)


def test_challenge_body_needs_the_request() -> None:
    """A SCEPCHALLENGE body without x509CertificateRequest is not step-ca's."""
    raw = json.dumps({"timestamp": TS, "scepChallenge": "x"}).encode()

    with pytest.raises(ValidationError):
        parse_body(raw, ScepChallengeRequest)


@pytest.mark.parametrize(
    "raw",
    [None, "", "%%%", "AAAA", "\u00e9", "\u0661"],
    ids=["none", "empty", "base64", "der", "e-acute", "arabic-indic"],
)
def test_unreadable_csr_raises(raw: str | None) -> None:
    """Missing, non-base64 and non-PKCS#10 requests all raise `CsrError`."""
    with pytest.raises(CsrError):
        read_csr(raw)


def test_certificate_facts_are_as_windows_shows_them() -> None:
    """Serial in upper-case hex, SHA-1 thumbprint in upper-case hex, expiry in UTC with Z."""
    cert = issued_certificate("C02TEST00001", days=10)
    raw = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    facts = read_certificate(raw)

    assert facts.serial == "1F2E3D4C5B6A"
    assert facts.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert facts.expires.endswith("Z")
    assert (facts.common_name, facts.issuer_common_name) == (
        "C02TEST00001",
        "Posture Lab Intermediate CA",
    )


def test_a_certificate_whose_issuer_name_is_not_utf8_raises() -> None:
    """cryptography reads names lazily: an issuer common name that is not UTF-8 is found only
    when read, and is a `CsrError` like any other unreadable certificate."""
    der = issued_certificate("C02TEST00001").public_bytes(serialization.Encoding.DER)
    broken = der.replace(b"Intermediate", b"Intermediat\xff")
    assert broken != der

    with pytest.raises(CsrError, match="holds a name that cannot be read"):
        read_certificate(base64.b64encode(broken).decode())


async def test_notifier_drops_reports_beyond_its_limit() -> None:
    """At the limit, a new report is dropped and counted instead of queued without bound."""
    notifier = Notifier(limit=2)
    release = asyncio.Event()
    ran: list[int] = []

    async def report(n: int) -> None:
        await release.wait()
        ran.append(n)

    accepted = [notifier.submit(report(n)) for n in range(3)]
    release.set()
    await notifier.aclose(grace=5.0)

    assert accepted == [True, True, False]
    assert sorted(ran) == [0, 1]
    assert notifier.dropped == 1


async def test_notifier_cancels_what_outlives_the_grace() -> None:
    """At shutdown a report still running after the grace period is cancelled."""
    notifier = Notifier()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    notifier.submit(stuck())
    await asyncio.sleep(0)
    await notifier.aclose(grace=0.05)

    assert cancelled.is_set()
    assert notifier.pending == 0
