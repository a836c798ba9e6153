"""A small RFC 8555 ACME client, enough for step-ca's device-attest-01 flow.

Requests are flattened JWS JSON objects (joserfc signs them; ECDSA signatures are raw r||s as
JWA requires) with `nonce` and `url` in the protected header, and `jwk` until the account
exists, `kid` after. Every problem document the server returns becomes an `AcmeError`, which
keeps the subproblems: step-ca puts a webhook's denial code there as
`urn:smallstep:acme:error:<code>`.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey

_JOSE = "application/jose+json"
_REGISTRY = jws.JWSRegistry(strict_check_header=False, algorithms=["ES256", "ES384"])
_ALG_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384"}
_BAD_NONCE = "urn:ietf:params:acme:error:badNonce"


def b64url(data: bytes) -> str:
    """Base64url without padding (step-ca rejects padded `attObj` values)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AcmeError(Exception):
    """When the ACME server answers with a problem document (or something that is not ACME)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.type = str(problem.get("type", ""))
        self.detail = str(problem.get("detail", ""))
        raw_subs = problem.get("subproblems") or []
        self.subproblems: tuple[dict[str, Any], ...] = tuple(
            s for s in raw_subs if isinstance(s, dict)
        )
        super().__init__(f"HTTP {status} {self.type}: {self.detail}")

    @property
    def types(self) -> tuple[str, ...]:
        """The problem type followed by every subproblem type."""
        return (self.type, *(str(s.get("type", "")) for s in self.subproblems))


@dataclass(frozen=True, slots=True)
class Order:
    """An ACME order as last seen.

    Attributes:
        url: the order's own URL (from the Location header).
        status: pending, ready, processing, valid or invalid.
        authorizations: URLs of its authorizations.
        finalize: URL to POST the CSR to.
        certificate: URL of the issued chain, once valid.
        error: the order's problem document, when invalid.
    """

    url: str
    status: str
    authorizations: tuple[str, ...]
    finalize: str
    certificate: str | None
    error: dict[str, Any] | None

    @classmethod
    def from_json(cls, url: str, body: dict[str, Any]) -> Order:
        """Read the RFC 8555 order object."""
        return cls(
            url=url,
            status=str(body["status"]),
            authorizations=tuple(body.get("authorizations", ())),
            finalize=str(body["finalize"]),
            certificate=body.get("certificate"),
            error=body.get("error"),
        )


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of an authorization.

    Attributes:
        type: e.g. `device-attest-01`.
        url: where to POST the response.
        token: the server's random token (the Apple nonce is its SHA-256).
        status: pending, processing, valid or invalid.
        error: problem document when invalid.
    """

    type: str
    url: str
    token: str
    status: str
    error: dict[str, Any] | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Challenge:
        """Read the RFC 8555 challenge object."""
        return cls(
            type=str(body["type"]),
            url=str(body["url"]),
            token=str(body.get("token", "")),
            status=str(body.get("status", "")),
            error=body.get("error"),
        )


@dataclass(frozen=True, slots=True)
class Authorization:
    """An ACME authorization.

    Attributes:
        url: its URL.
        identifier: `{"type", "value"}` it authorizes.
        status: pending, valid, invalid, ...
        challenges: what the server offers to prove it.
    """

    url: str
    identifier: dict[str, str]
    status: str
    challenges: tuple[Challenge, ...]

    def challenge(self, kind: str) -> Challenge:
        """The challenge of type `kind`; `LookupError` when the server did not offer it."""
        for challenge in self.challenges:
            if challenge.type == kind:
                return challenge
        offered = ", ".join(c.type for c in self.challenges)
        raise LookupError(f"no {kind} challenge offered (got: {offered})")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A client TLS context trusting `ca_file` (step-ca's root), or the system store."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class AcmeClient:
    """A synchronous ACME client for one account (created on first use).

    `directory_url` is e.g. `https://127.0.0.1:9000/acme/<provisioner>/directory`.
    """

    def __init__(
        self,
        directory_url: str,
        *,
        ca_file: Path | None = None,
        account_key: ec.EllipticCurvePrivateKey | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._directory_url = directory_url
        self._http = httpx.Client(verify=tls_context(ca_file), timeout=timeout)
        key = account_key or ec.generate_private_key(ec.SECP256R1())
        self._alg = _ALG_BY_CURVE[key.curve.name]
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._jwk = ECKey.import_key(pem)
        self._directory: dict[str, Any] | None = None
        self._nonce: str | None = None
        self._kid: str | None = None

    def __enter__(self) -> AcmeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------

    def directory(self) -> dict[str, Any]:
        """The server's directory (fetched once)."""
        if self._directory is None:
            response = self._http.get(self._directory_url)
            self._directory = _json_or_raise(response)
        return self._directory

    def _fresh_nonce(self) -> str:
        if self._nonce is not None:
            nonce, self._nonce = self._nonce, None
            return nonce
        response = self._http.head(str(self.directory()["newNonce"]))
        fresh: str | None = response.headers.get("Replay-Nonce")
        if not fresh:
            raise AcmeError(response.status_code, {"detail": "newNonce returned no Replay-Nonce"})
        return fresh

    def _sign(self, url: str, payload: bytes) -> bytes:
        header: dict[str, Any] = {"alg": self._alg, "nonce": self._fresh_nonce(), "url": url}
        if self._kid is None:
            header["jwk"] = self._jwk.as_dict(private=False)
        else:
            header["kid"] = self._kid
        member: jws.HeaderDict = {"protected": header}
        signed = jws.serialize_json(member, payload, self._jwk, registry=_REGISTRY)
        return json.dumps(signed, separators=(",", ":")).encode()

    def post(self, url: str, payload: dict[str, Any] | None) -> httpx.Response:
        """POST a signed request (`payload=None` is POST-as-GET); retries once on badNonce."""
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        for attempt in (1, 2):
            response = self._http.post(
                url, content=self._sign(url, body), headers={"Content-Type": _JOSE}
            )
            self._nonce = response.headers.get("Replay-Nonce")
            if response.status_code < 400:
                return response
            error = _problem(response)
            if error.type == _BAD_NONCE and attempt == 1:
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    # -- RFC 8555 resources ---------------------------------------------------------------

    def register(self) -> str:
        """Create (or find) the account for our key; returns its URL (the JWS `kid`)."""
        if self._kid is None:
            response = self.post(self.directory()["newAccount"], {"termsOfServiceAgreed": True})
            self._kid = response.headers["Location"]
        return self._kid

    def new_order(self, identifier_type: str, value: str) -> Order:
        """Open an order for one identifier, e.g. `("permanent-identifier", serial)`."""
        self.register()
        response = self.post(
            self.directory()["newOrder"],
            {"identifiers": [{"type": identifier_type, "value": value}]},
        )
        return Order.from_json(response.headers["Location"], response.json())

    def order(self, url: str) -> Order:
        """Re-read an order."""
        return Order.from_json(url, self.post(url, None).json())

    def authorization(self, url: str) -> Authorization:
        """Read an authorization and its challenges."""
        body = self.post(url, None).json()
        return Authorization(
            url=url,
            identifier=dict(body["identifier"]),
            status=str(body["status"]),
            challenges=tuple(Challenge.from_json(c) for c in body.get("challenges", ())),
        )

    def answer_device_attest(self, challenge: Challenge, attestation_object: bytes) -> Challenge:
        """POST `{"attObj": base64url(CBOR)}`; step-ca validates it before answering."""
        response = self.post(challenge.url, {"attObj": b64url(attestation_object)})
        return Challenge.from_json(response.json())

    def finalize(self, order: Order, csr: x509.CertificateSigningRequest) -> Order:
        """Send the CSR; this is where step-ca calls the ENRICHING and AUTHORIZING webhooks."""
        der = csr.public_bytes(serialization.Encoding.DER)
        response = self.post(order.finalize, {"csr": b64url(der)})
        return Order.from_json(order.url, response.json())

    def wait_for(self, order: Order, *, timeout: float = 10.0, interval: float = 0.2) -> Order:
        """Poll while the order is processing (step-ca usually finishes within finalize)."""
        deadline = time.monotonic() + timeout
        while order.status == "processing" and time.monotonic() < deadline:
            time.sleep(interval)
            order = self.order(order.url)
        return order

    def certificate_chain(self, url: str) -> list[x509.Certificate]:
        """Download the PEM chain, leaf first."""
        response = self.post(url, None)
        return x509.load_pem_x509_certificates(response.content)


def _json_or_raise(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise _problem(response)
    body = response.json()
    if not isinstance(body, dict):
        raise AcmeError(response.status_code, {"detail": "expected a JSON object"})
    return body


def _problem(response: httpx.Response) -> AcmeError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text[:500]}
    return AcmeError(response.status_code, body)
