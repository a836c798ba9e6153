"""TLS for the listener: contexts, hot reload of the certificate, mTLS peer checks, dev certs.

step-ca issues 24-hour certificates, so the certificate files are re-read when they change; a
new handshake picks the new pair up, existing connections keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = structlog.get_logger("connector.tls")

# TLS 1.2 suites: Mozilla's "intermediate" profile without DHE, i.e. ECDHE with AES-GCM or
# ChaCha20-Poly1305 only (no CBC, no static RSA). Go's client (step-ca) offers these first, and
# step-ca's own default list is ECDHE-ECDSA with ChaCha20 / AES-128-GCM. TLS 1.3 suites are all
# AEAD and keep OpenSSL's defaults.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where the listener's certificate and key live.

    Attributes:
        cert: PEM certificate chain.
        key: PEM private key.
    """

    cert: Path
    key: Path


def server_context(paths: CertPaths, client_ca: Path | None) -> ssl.SSLContext:
    """A server context; with `client_ca`, clients are asked for a certificate chaining to it.

    The request is optional at the handshake (CERT_OPTIONAL) so health checks work without one;
    each webhook that requires it refuses requests that arrived without a verified certificate.
    TLS 1.2 is offered with AEAD suites only (`TLS12_CIPHERS`), TLS 1.3 as OpenSSL has it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(paths.cert, paths.key, password=no_passphrase)
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def no_passphrase() -> bytes:
    """The passphrase OpenSSL gets for an encrypted key: none. Without it OpenSSL asks on the
    terminal, which blocks the event loop for ever; an encrypted key is refused instead."""
    return b""


def _key_type(pem: bytes) -> str:
    """The private key's algorithm (RSA, EC, ...): ``unknown`` when it cannot be read here (the
    TLS load says why)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return "unknown"
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "unknown"


def _stamp(paths: CertPaths) -> tuple[int, int]:
    return (os.stat(paths.cert).st_mtime_ns, os.stat(paths.key).st_mtime_ns)


class CertificateReloader:
    """Polls the certificate files and loads a changed pair into the live context."""

    def __init__(self, context: ssl.SSLContext, paths: CertPaths, interval: float) -> None:
        self._context = context
        self._paths = paths
        self._interval = interval
        self._stamp = _stamp(paths)
        self._broken: tuple[int, int] | None = None
        self._key_type = _key_type(paths.key.read_bytes())

    def check(self) -> bool:
        """Reload if the files changed; returns whether a new pair is in use.

        The pair is read once into a private snapshot, validated on a scratch context, then loaded
        from the same snapshot into the live one: a pair being rewritten while we read can never
        go live half old, half new. A broken version is logged once, not on every poll.
        """
        try:
            stamp = _stamp(self._paths)
        except OSError as exc:
            return self._failed(None, exc)
        if stamp in (self._stamp, self._broken):
            return False
        try:
            with tempfile.TemporaryDirectory(prefix="posture-tls-") as tmp:
                cert = Path(tmp) / "cert.pem"
                key = Path(tmp) / "key.pem"
                cert.write_bytes(self._paths.cert.read_bytes())
                key.touch(mode=0o600)
                key.write_bytes(self._paths.key.read_bytes())
                scratch = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                scratch.load_cert_chain(cert, key, password=no_passphrase)
                key_type = _key_type(key.read_bytes())
                if key_type != self._key_type:
                    # OpenSSL keeps one pair per key type: loaded into the live context, the
                    # new pair would serve beside the old one, and clients may keep the old.
                    raise ValueError(
                        f"the key type changed ({self._key_type} to {key_type}); restart the "
                        "service to serve the new pair"
                    )
                self._context.load_cert_chain(cert, key, password=no_passphrase)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return self._failed(stamp, exc)
        self._stamp = stamp
        self._broken = None
        log.info("tls.reloaded", cert=str(self._paths.cert), not_after=_not_after(self._paths.cert))
        return True

    def _failed(self, stamp: tuple[int, int] | None, exc: Exception) -> bool:
        self._broken = stamp
        log.error("tls.reload_failed", cert=str(self._paths.cert), error=str(exc), kept="previous")
        return False

    async def ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context running the poll loop for the app's lifetime."""
        task = asyncio.create_task(self._loop()) if self._interval > 0 else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()


def _not_after(path: Path) -> str | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.isoformat()


def peer_certificate(request: web.Request) -> dict[str, Any] | None:
    """The verified client certificate of this connection, or None."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    cert = ssl_object.getpeercert()
    return cert or None


def peer_dns_names(cert: dict[str, Any]) -> set[str]:
    """DNS names in the certificate's subjectAltName."""
    return {value.lower() for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}


def ensure_dev_certificate(
    directory: Path, *, now: dt.datetime | None = None
) -> tuple[CertPaths, Path]:
    """A self-signed development CA and a localhost certificate, reused while valid.

    Returns the server pair and the CA certificate to give `send --cacert`.
    """
    moment = now or dt.datetime.now(dt.UTC)
    paths = CertPaths(directory / "server.crt", directory / "server.key")
    ca_path = directory / "ca.crt"
    if paths.cert.exists() and paths.key.exists() and ca_path.exists():
        expires = _not_after(paths.cert)
        if expires and dt.datetime.fromisoformat(expires) > moment + dt.timedelta(days=1):
            return paths, ca_path
    directory.mkdir(parents=True, exist_ok=True)
    ignore = directory / ".gitignore"
    if not ignore.exists():  # the folder may be the admin's own; never overwrite their file
        ignore.write_text("*\n", encoding="utf-8")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "posture-connector development CA")]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - dt.timedelta(minutes=5))
        .not_valid_after(moment + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - dt.timedelta(minutes=5))
        .not_valid_after(moment + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path.write_bytes(ca.public_bytes(pem))
    paths.cert.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a key file that already exists
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return paths, ca_path
