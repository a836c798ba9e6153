"""TLS: development certificates, hot reload of the listener's pair, and mTLS with step-ca."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import pty
import select
import signal
import ssl
import stat
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.tls import CertificateReloader, CertPaths, ensure_dev_certificate, server_context
from tests.helpers import (
    AUTH_ID,
    FIXED_NOW,
    authorize,
    config,
    enrich,
    make_settings,
    signed,
    webhook,
)
from tests.pki import Issued, TestCA

AiohttpServer = Any  # pytest-aiohttp's factory fixture


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _client_context(ca: Path, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


async def _peer_serial(port: int, ca: Path) -> int:
    """Open a fresh TLS connection and return the serial of the certificate the server showed."""
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=_client_context(ca), server_hostname="localhost"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


def _install(issued: Issued, paths: CertPaths, stamp_ns: int) -> None:
    """Copy a pair over the live paths with a distinct mtime (coarse clocks may not move)."""
    paths.cert.write_bytes(issued.cert.read_bytes())
    paths.key.write_bytes(issued.key.read_bytes())
    for path in (paths.cert, paths.key):
        os.utime(path, ns=(stamp_ns, stamp_ns))


# --- development certificate ------------------------------------------------------------------


def test_dev_certificate_is_a_ca_and_a_localhost_leaf(tmp_path: Path) -> None:
    """The generated leaf chains to the generated CA and is valid for 127.0.0.1 and localhost."""
    paths, ca_path = ensure_dev_certificate(tmp_path / "tls")
    ca, leaf = _load(ca_path), _load(paths.cert)
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600


async def test_dev_certificate_serves_https_to_127_0_0_1(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """A client trusting only the dev CA completes a verified handshake with 127.0.0.1."""
    paths, ca_path = ensure_dev_certificate(tmp_path)
    app = web.Application()
    server: TestServer = await aiohttp_server(app, ssl=server_context(paths, None))
    context = ssl.create_default_context(cafile=str(ca_path))
    assert context.check_hostname  # so the handshake checks 127.0.0.1 against the IP SAN
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
    peer = writer.get_extra_info("peercert")
    writer.close()
    await writer.wait_closed()
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]


def test_dev_certificate_is_reused_while_valid(tmp_path: Path) -> None:
    """A second start reuses the files; near expiry they are replaced."""
    paths, ca_path = ensure_dev_certificate(tmp_path)
    first = (paths.cert.read_bytes(), paths.key.read_bytes(), ca_path.read_bytes())
    assert ensure_dev_certificate(tmp_path) == (paths, ca_path)
    assert (paths.cert.read_bytes(), paths.key.read_bytes(), ca_path.read_bytes()) == first
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=6, hours=12)
    ensure_dev_certificate(tmp_path, now=later)
    assert paths.cert.read_bytes() != first[0]
    assert _load(paths.cert).not_valid_after_utc > later + dt.timedelta(days=1)


def test_dev_certificate_keeps_an_existing_gitignore(tmp_path: Path) -> None:
    """A folder's own .gitignore is left alone; a new folder gets one ignoring the keys."""
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / ".gitignore").write_text("*.log\n", encoding="utf-8")
    ensure_dev_certificate(tmp_path / "own")
    ensure_dev_certificate(tmp_path / "new")
    assert (tmp_path / "own" / ".gitignore").read_text(encoding="utf-8") == "*.log\n"
    assert (tmp_path / "new" / ".gitignore").read_text(encoding="utf-8") == "*\n"


# --- hot reload -------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> TestCA:
    """A CA for server certificates."""
    return TestCA(tmp_path / "pki", "server CA")


async def _reloading(
    tmp_path: Path, pki: TestCA, aiohttp_server: AiohttpServer, first: Issued
) -> tuple[CertPaths, CertificateReloader, int]:
    """`first` installed as the server pair, a reloader for it (no poll), and a TLS server
    serving its live context: the paths, the reloader and the server's port."""
    paths = CertPaths(tmp_path / "server.crt", tmp_path / "server.key")
    _install(first, paths, 1_000_000_000_000_000_000)
    context = server_context(paths, None)
    reloader = CertificateReloader(context, paths, interval=0)
    server: TestServer = await aiohttp_server(web.Application(), ssl=context)
    assert server.port is not None
    return paths, reloader, server.port


async def test_reloader_serves_a_changed_pair_to_new_handshakes(
    tmp_path: Path, pki: TestCA, aiohttp_server: AiohttpServer
) -> None:
    """After `check()` sees new files, new connections get the new certificate."""
    old = pki.issue("old", dns_names=("localhost",))
    new = pki.issue("new", dns_names=("localhost",))
    paths, reloader, port = await _reloading(tmp_path, pki, aiohttp_server, old)
    assert await _peer_serial(port, pki.cert_path) == old.serial
    assert reloader.check() is False  # unchanged files

    _install(new, paths, 1_000_000_001_000_000_000)
    with capture_logs() as logs:
        assert reloader.check() is True
    assert await _peer_serial(port, pki.cert_path) == new.serial
    [event] = logs
    assert (event["event"], event["cert"]) == ("tls.reloaded", str(paths.cert))
    assert event["not_after"] == _load(new.cert).not_valid_after_utc.isoformat()


@pytest.mark.parametrize("breakage", ["mismatched-key", "garbage-cert"], ids=str)
async def test_reloader_keeps_the_old_pair_on_a_broken_one(
    tmp_path: Path, pki: TestCA, aiohttp_server: AiohttpServer, breakage: str
) -> None:
    """A broken pair is logged once as `tls.reload_failed` and the old one stays live."""
    good = pki.issue("good", dns_names=("localhost",))
    other = pki.issue("other", dns_names=("localhost",))
    paths, reloader, port = await _reloading(tmp_path, pki, aiohttp_server, good)

    if breakage == "mismatched-key":
        paths.cert.write_bytes(other.cert.read_bytes())
    else:
        paths.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nbroken\n")
    os.utime(paths.cert, ns=(1_000_000_002_000_000_000,) * 2)
    with capture_logs() as logs:
        assert reloader.check() is False
        assert reloader.check() is False  # the same broken version is not logged again
    [event] = logs
    assert (event["event"], event["kept"], event["log_level"]) == (
        "tls.reload_failed",
        "previous",
        "error",
    )
    assert await _peer_serial(port, pki.cert_path) == good.serial


async def test_a_pair_of_another_key_type_waits_for_a_restart(
    tmp_path: Path, pki: TestCA, aiohttp_server: AiohttpServer
) -> None:
    """OpenSSL keeps one pair per key type: an RSA pair loaded beside the live EC one would
    serve next to it (clients may keep the old certificate until it expires). The reload is
    refused with the reason, and the old pair serves until a restart."""
    old = pki.issue("old", dns_names=("localhost",))
    paths, reloader, port = await _reloading(tmp_path, pki, aiohttp_server, old)
    _install(pki.issue("rsa", dns_names=("localhost",), rsa_key=True), paths, 10**18 + 10**9)
    with capture_logs() as logs:
        assert reloader.check() is False
    [event] = logs
    assert event["event"] == "tls.reload_failed"
    assert "the key type changed (EC to RSA); restart the service" in event["error"]
    assert await _peer_serial(port, pki.cert_path) == old.serial


def test_an_encrypted_key_is_refused_not_asked_for(tmp_path: Path, pki: TestCA) -> None:
    """OpenSSL asks for an encrypted key's passphrase on the terminal, which would block the
    event loop for ever: from a terminal (`serve` in a shell, `docker run -it`) the reload of
    such a key fails at once instead."""
    issued = pki.issue("server", dns_names=("localhost",))
    key = serialization.load_pem_private_key(issued.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    child = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from connector.tls import CertificateReloader, CertPaths, server_context\n"
        "cert, key, encrypted = map(Path, sys.argv[1:4])\n"
        "paths = CertPaths(cert, key)\n"
        "reloader = CertificateReloader(server_context(paths, None), paths, interval=0)\n"
        "key.write_bytes(encrypted.read_bytes())\n"
        "os.utime(key, ns=(10**18, 10**18))\n"
        "print(f'CHECK-RETURNED {reloader.check()} END', flush=True)\n"
    )
    pid, fd = pty.fork()  # a controlling terminal, where OpenSSL would prompt
    if pid == 0:
        os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        argv = [sys.executable, "-c", child, str(issued.cert), str(issued.key), str(encrypted)]
        os.execv(sys.executable, argv)  # noqa: S606 - this test's own child
    output, deadline = b"", time.monotonic() + 10
    try:
        # Until the whole line is in: a terminal may hand it over in more than one read.
        while time.monotonic() < deadline and b" END" not in output:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    output += os.read(fd, 4096)
                except OSError:
                    break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    assert b"CHECK-RETURNED False END" in output, output.decode(errors="replace")[-300:]


async def test_reload_loop_runs_with_the_app(
    tmp_path: Path, pki: TestCA, aiohttp_server: AiohttpServer
) -> None:
    """With an interval, the app's cleanup context polls and picks up a new pair by itself."""
    paths = CertPaths(tmp_path / "server.crt", tmp_path / "server.key")
    _install(pki.issue("old", dns_names=("localhost",)), paths, 1_000_000_000_000_000_000)
    context = server_context(paths, None)
    app = web.Application()
    app.cleanup_ctx.append(CertificateReloader(context, paths, interval=0.01).ctx)
    server: TestServer = await aiohttp_server(app, ssl=context)
    assert server.port is not None
    new = pki.issue("new", dns_names=("localhost",))
    _install(new, paths, 1_000_000_001_000_000_000)

    async def rotated() -> None:
        # Polls real handshakes: the background reloader has no event to wait on.
        while await _peer_serial(server.port or 0, pki.cert_path) != new.serial:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(rotated(), timeout=5)


# --- mTLS -------------------------------------------------------------------------------------


class MtlsSetup:
    """An HTTPS app requiring step-ca's client certificate on the `people` webhook."""

    def __init__(self, tmp_path: Path, inventory: Path) -> None:
        self.server_ca = TestCA(tmp_path / "server-pki", "server CA")
        self.client_ca = TestCA(tmp_path / "client-pki", "client CA")
        self.stranger_ca = TestCA(tmp_path / "stranger-pki", "stranger CA")
        self.server_pair = self.server_ca.issue("server", dns_names=("localhost",), ip="127.0.0.1")
        self.settings = make_settings(
            config(
                inventory,
                server={
                    "plain_http": False,
                    "tls_cert": str(self.server_pair.cert),
                    "tls_key": str(self.server_pair.key),
                    "client_ca": str(self.client_ca.cert_path),
                    "client_dns_names": ["CA.internal"],
                },
                webhooks=[
                    webhook(require_client_cert=True),
                    webhook("gate", "AUTHORIZING"),
                ],
            )
        )
        self.context = server_context(
            CertPaths(self.server_pair.cert, self.server_pair.key), self.client_ca.cert_path
        )

    async def post(
        self, port: int, path: str, client: Issued | None, *, secret: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST a signed request for a managed device, presenting `client` if given."""
        body = enrich("C02TEST00001")
        headers = signed(body) if secret is None else signed(body, secret=secret)
        context = _client_context(self.server_ca.cert_path, client)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{port}{path}", data=body, headers=headers, ssl=context
            ) as response,
        ):
            return response.status, await response.json()


@pytest.fixture
async def mtls(
    tmp_path: Path, inventory: Path, aiohttp_server: AiohttpServer
) -> tuple[MtlsSetup, int]:
    """The mTLS app running on 127.0.0.1."""
    setup = MtlsSetup(tmp_path, inventory)
    app = create_app(setup.settings, clock=lambda: FIXED_NOW)
    server: TestServer = await aiohttp_server(app, ssl=setup.context)
    await app[PROVIDERS_STARTED].wait()
    assert server.port is not None
    return setup, server.port


async def test_missing_client_certificate_is_refused(mtls: tuple[MtlsSetup, int]) -> None:
    """A webhook requiring mTLS answers 403 client-certificate-required without a certificate."""
    setup, port = mtls
    status, answer = await setup.post(port, "/webhooks/people", None)
    assert (status, answer["error"]["code"]) == (403, "client-certificate-required")


async def test_client_certificate_chaining_to_the_ca_passes(mtls: tuple[MtlsSetup, int]) -> None:
    """A certificate from the client CA with a pinned DNS name reaches the signature check."""
    setup, port = mtls
    client = setup.client_ca.issue("step-ca", dns_names=("ca.internal",), client=True)
    status, answer = await setup.post(port, "/webhooks/people", client)
    assert (status, answer["allow"]) == (200, True)
    status, answer = await setup.post(port, "/webhooks/people", client, secret="d3Jvbmc=")
    assert (status, answer["error"]["code"]) == (401, "signature-invalid")


async def test_client_certificate_with_other_names_is_refused(
    mtls: tuple[MtlsSetup, int],
) -> None:
    """A certificate from the right CA whose DNS names miss `client_dns_names` is refused."""
    setup, port = mtls
    client = setup.client_ca.issue("laptop", dns_names=("laptop.internal",), client=True)
    status, answer = await setup.post(port, "/webhooks/people", client)
    assert (status, answer["error"]["code"]) == (403, "client-certificate-name-mismatch")


async def test_client_certificate_from_another_ca_fails_the_handshake(
    mtls: tuple[MtlsSetup, int],
) -> None:
    """A certificate that does not chain to `client_ca` never gets a response."""
    setup, port = mtls
    client = setup.stranger_ca.issue("impostor", dns_names=("ca.internal",), client=True)
    with pytest.raises(aiohttp.ClientError):
        await setup.post(port, "/webhooks/people", client)


async def test_webhooks_without_the_requirement_and_health_need_no_certificate(
    mtls: tuple[MtlsSetup, int],
) -> None:
    """mTLS is optional at the handshake: health checks and other webhooks work without it."""
    setup, port = mtls
    context = _client_context(setup.server_ca.cert_path)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{port}/healthz", ssl=context) as response,
    ):
        assert response.status == 200
    body = authorize("C02TEST00001")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{port}/webhooks/gate",
            data=body,
            headers=signed(body, webhook_id=AUTH_ID),
            ssl=context,
        ) as response,
    ):
        assert (response.status, (await response.json())["allow"]) == (200, True)
