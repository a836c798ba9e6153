"""The listener offers TLS 1.2 with AEAD suites only, TLS 1.3 as usual, and Go's client still connects.

Each case opens a real TLS connection from a client restricted to one protocol version and suite
list to a listener built by `server_context`, with an ECDSA and with an RSA certificate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from connector.tls import CertPaths, server_context

# Go 1.26 crypto/tls defaultCipherSuites() for TLS 1.2, in its order: ECDHE AEADs, then ECDHE CBC.
GO_DEFAULT_TLS12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)
# step-ca's DefaultTLSCipherSuites (authority/config/tls_options.go), used by its webhook client.
STEP_CA_DEFAULT_TLS12 = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"


@dataclass(frozen=True, slots=True)
class Listener:
    """A TLS listener on 127.0.0.1 and the certificate a client must trust."""

    port: int
    cafile: Path
    kind: str  # "ECDSA" or "RSA", as in OpenSSL suite names


def _self_signed(directory: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> CertPaths:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    paths = CertPaths(directory / "server.crt", directory / "server.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(params=["ecdsa", "rsa"])
async def listener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Listener]:
    """`server_context` serving an ECDSA or an RSA certificate."""
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if request.param == "ecdsa"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    paths = _self_signed(tmp_path, key)

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context(paths, None))
    try:
        port = server.sockets[0].getsockname()[1]
        yield Listener(port=port, cafile=paths.cert, kind=str(request.param).upper())
    finally:
        server.close()
        await server.wait_closed()


async def _handshake(
    listener: Listener, version: ssl.TLSVersion, ciphers: str | None = None
) -> tuple[str, str]:
    """Connect with only `version` (and `ciphers`, if given); the negotiated version and suite."""
    context = ssl.create_default_context(cafile=str(listener.cafile))
    context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", listener.port, ssl=context, server_hostname="localhost"
    )
    try:
        name, protocol, _bits = writer.get_extra_info("cipher")
    finally:
        writer.close()
    return protocol, name


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE-{kind}-AES128-SHA",
        "ECDHE-{kind}-AES256-SHA",
        "ECDHE-{kind}-AES128-SHA256",
        "ECDHE-{kind}-AES256-SHA384",
    ],
    ids=["aes128-cbc-sha1", "aes256-cbc-sha1", "aes128-cbc-sha256", "aes256-cbc-sha384"],
)
async def test_tls12_cbc_suite_is_refused(listener: Listener, suite: str) -> None:
    """A TLS 1.2 client that offers only a CBC suite cannot complete the handshake."""
    # The server's handshake_failure alert reaches the client as an SSLError or, when the socket
    # is already closed by then, as a reset; either way no connection.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await _handshake(listener, ssl.TLSVersion.TLSv1_2, suite.format(kind=listener.kind))


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE-{kind}-AES128-GCM-SHA256",
        "ECDHE-{kind}-AES256-GCM-SHA384",
        "ECDHE-{kind}-CHACHA20-POLY1305",
    ],
    ids=["aes128-gcm", "aes256-gcm", "chacha20-poly1305"],
)
async def test_tls12_aead_suite_is_accepted(listener: Listener, suite: str) -> None:
    """A TLS 1.2 client offering one ECDHE AEAD suite gets exactly that suite."""
    wanted = suite.format(kind=listener.kind)
    assert await _handshake(listener, ssl.TLSVersion.TLSv1_2, wanted) == ("TLSv1.2", wanted)


async def test_go_client_default_suites_negotiate_aead(listener: Listener) -> None:
    """Go's default TLS 1.2 offer (AEADs, then CBC) ends on an AEAD suite, never CBC."""
    protocol, suite = await _handshake(listener, ssl.TLSVersion.TLSv1_2, GO_DEFAULT_TLS12)
    assert protocol == "TLSv1.2"
    assert suite.endswith(("GCM-SHA256", "GCM-SHA384", "CHACHA20-POLY1305"))


async def test_step_ca_client_defaults_connect(listener: Listener) -> None:
    """step-ca's client (TLS 1.2 to 1.3, its two ECDSA AEAD suites for 1.2) connects with TLS 1.3."""
    context = ssl.create_default_context(cafile=str(listener.cafile))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(STEP_CA_DEFAULT_TLS12)
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", listener.port, ssl=context, server_hostname="localhost"
    )
    protocol = writer.get_extra_info("ssl_object").version()
    writer.close()
    assert protocol == "TLSv1.3"


async def test_tls13_is_offered(listener: Listener) -> None:
    """TLS 1.3 keeps its (all-AEAD) suites: a TLS 1.3-only client connects."""
    protocol, suite = await _handshake(listener, ssl.TLSVersion.TLSv1_3)
    assert protocol == "TLSv1.3"
    assert suite.startswith("TLS_")
