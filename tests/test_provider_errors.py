"""Providers' error branches against the fake Jamf and fake Graph: every failure is a
`ProviderError` (so the chain fails closed), with a reason that names what to fix and no secret.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from providers import (
    IntuneSettings,
    JamfSettings,
    Provider,
    ProviderError,
    ProviderNotReady,
    build_provider,
)
from tests.fakes.graph import FakeGraph, Fault
from tests.fakes.graph import create_app as graph_app
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app
from tests.test_intune import CERT_CLIENT_ID, intune_table, serial, write_certificate
from tests.test_jamf import DEVICES as JAMF_DEVICES
from tests.test_jamf import MAC, jamf_settings

GRAPH_DEVICES = Path(__file__).parent / "fakes" / "graph_devices.json"
KEY_PASSWORD = "k3y-passphrase"


@dataclass
class Upstream:
    """A fake upstream running on 127.0.0.1 and the providers built against it."""

    url: str
    made: list[Provider]

    def build(self, settings: JamfSettings | IntuneSettings) -> Provider:
        """A provider for `settings` (closed after the test)."""
        provider = build_provider("upstream", settings)
        self.made.append(provider)
        return provider


Serve = Callable[[web.Application], Awaitable[Upstream]]


@pytest.fixture
async def serve(aiohttp_server: Any) -> AsyncIterator[Serve]:
    """Start a fake app; providers built through the returned `Upstream` are closed after."""
    upstreams: list[Upstream] = []

    async def start(app: web.Application) -> Upstream:
        server = await aiohttp_server(app)
        upstream = Upstream(str(server.make_url("")).rstrip("/"), [])
        upstreams.append(upstream)
        return upstream

    yield start
    for upstream in upstreams:
        for provider in upstream.made:
            await provider.aclose()


def jamf_document() -> dict[str, Any]:
    """A fresh copy of the fake Jamf's devices."""
    document: dict[str, Any] = json.loads(JAMF_DEVICES.read_text(encoding="utf-8"))
    return copy.deepcopy(document)


# --- Jamf ---------------------------------------------------------------------------------------


async def test_jamf_token_that_is_already_expired_leaves_the_provider_not_ready(
    serve: Serve,
) -> None:
    """A user token whose `expires` has passed is refused at start-up, not used."""
    upstream = await serve(jamf_app(FakeJamf.from_document(jamf_document(), token_lifetime=-60)))
    provider = upstream.build(
        jamf_settings(upstream.url, username="api-reader", password="fake-password")
    )
    with pytest.raises(ProviderNotReady, match="already expired token"):
        await provider.start()
    assert not provider.ready


async def test_jamf_refusal_with_an_html_body_names_the_credentials(
    serve: Serve,
) -> None:
    """A token refusal whose body is not JSON still says which credentials to check, no secret."""
    fake = FakeJamf.from_document(jamf_document())
    fake.inject("html403", path="/api/", times=2)  # both OAuth token paths
    upstream = await serve(jamf_app(fake))
    provider = upstream.build(jamf_settings(upstream.url))
    with pytest.raises(ProviderNotReady, match=r"OAuth client credentials .*HTTP 403") as caught:
        await provider.start()
    assert "fake-secret" not in str(caught.value)
    assert not provider.ready


async def test_jamf_answer_of_an_unexpected_shape_is_a_provider_error(
    serve: Serve,
) -> None:
    """A record Jamf sends in a shape the provider cannot read fails the lookup, naming where."""
    document = jamf_document()
    [mac] = [c for c in document["computers"] if c["hardware"]["serialNumber"] == MAC]
    mac["groupMemberships"] = "not a list"
    upstream = await serve(jamf_app(FakeJamf.from_document(document)))
    provider = upstream.build(jamf_settings(upstream.url))
    await provider.start()
    with pytest.raises(
        ProviderError, match=r"unexpected JSON shape at results\.0\.groupMemberships"
    ):
        await provider.lookup(serial(MAC))


# --- Intune -------------------------------------------------------------------------------------


@pytest.fixture
async def graph(serve: Serve) -> tuple[FakeGraph, Upstream]:
    """The fake tenant of ``graph_devices.json``, served."""
    fake = FakeGraph.from_file(GRAPH_DEVICES)
    return fake, await serve(graph_app(fake))


async def test_token_refusal_without_an_entra_body_is_reported_by_status(
    graph: tuple[FakeGraph, Upstream],
) -> None:
    """A 400 from the token endpoint that is not Entra's error JSON is reported as its status."""
    fake, upstream = graph
    fake.faults.append(Fault(400, path="/oauth2/v2.0/token"))
    provider = upstream.build(IntuneSettings.model_validate(intune_table(upstream.url)))
    with pytest.raises(ProviderNotReady, match=r"Entra refused the token request \(HTTP 400\)"):
        await provider.start()
    assert not provider.ready


def _credential_files(folder: Path, case: str) -> tuple[Path, Path]:
    """A certificate and an encrypted key, then broken the way `case` says."""
    cert, key, _ = write_certificate(folder, "app")
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    key.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    if case == "certificate-missing":
        cert.unlink()
    elif case == "certificate-not-pem":
        cert.write_text("not a certificate\n", encoding="utf-8")
    elif case == "key-missing":
        key.unlink()
    return cert, key


@pytest.mark.parametrize(
    ("case", "password", "reason"),
    [
        ("certificate-missing", KEY_PASSWORD, "cannot read certificate"),
        ("certificate-not-pem", KEY_PASSWORD, "is not a PEM certificate"),
        ("key-missing", KEY_PASSWORD, "cannot read private key"),
        ("wrong-password", "not-the-passphrase", "not a PEM private key"),
    ],
    ids=["certificate-missing", "certificate-not-pem", "key-missing", "wrong-password"],
)
async def test_unusable_certificate_credential_is_not_ready(
    graph: tuple[FakeGraph, Upstream], tmp_path: Path, case: str, password: str, reason: str
) -> None:
    """Unreadable credential files stop the provider before Entra is asked; no password shown."""
    fake, upstream = graph
    cert, key = _credential_files(tmp_path, case)
    table = intune_table(
        upstream.url,
        client_id=CERT_CLIENT_ID,
        client_secret=None,
        certificate=str(cert),
        private_key=str(key),
        private_key_password=password,
    )
    provider = upstream.build(IntuneSettings.model_validate(table))
    with pytest.raises(ProviderNotReady, match=reason) as caught:
        await provider.start()
    assert password not in str(caught.value)
    assert fake.token_fetches == 0


async def test_graph_answer_of_an_unexpected_shape_is_a_provider_error(
    graph: tuple[FakeGraph, Upstream],
) -> None:
    """A managed device Graph sends in a shape the provider cannot read fails the lookup."""
    fake, upstream = graph
    [device] = [d for d in fake.managed_devices if d.get("serialNumber") == "C02FK3Q7MD6T"]
    device["lastSyncDateTime"] = "last Tuesday"
    provider = upstream.build(IntuneSettings.model_validate(intune_table(upstream.url)))
    await provider.start()
    with pytest.raises(ProviderError, match=r"unexpected JSON shape at value\.0\.lastSyncDateTime"):
        await provider.lookup(serial("C02FK3Q7MD6T"))
