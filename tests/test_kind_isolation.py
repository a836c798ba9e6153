"""The same digits are a serial to one webhook and a YubiKey serial to another: an answer for one
kind never decides the other, whether it comes from the lookup cache, a concurrent lookup or a
synced copy of the inventory.

Jamf knows Apple serials and UDIDs only, so it answers "not found" for a YubiKey serial. With the
kind left out of the cache key, a Mac's cached record allowed a YubiKey whose serial had the
Mac's digits (a wrong allow), and the YubiKey's cached miss denied the Mac.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app
from tests.provider_webhook import GATE, call, provider_config, start_service
from tests.test_sync_mode import PILOT, SYNC_KEYS, readyz

DIGITS = "12345678"
"""A serial's shape (Windows and Android machines have such serials) and a YubiKey serial's."""
JAMF_DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"


def jamf_with_a_numeric_serial(latency: float) -> FakeJamf:
    """The sample inventory plus a managed pilot Mac whose serial is `DIGITS`."""
    fake = FakeJamf.from_file(JAMF_DEVICES)
    fake.latency = latency
    mac = copy.deepcopy(fake.computers[0])
    mac["id"] = "9001"
    mac["udid"] = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"
    mac["hardware"]["serialNumber"] = DIGITS
    fake.computers.append(mac)
    return fake


async def two_kinds(
    aiohttp_client: Any,
    aiohttp_server: Any,
    *,
    latency: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> TestClient[Any, Any]:
    """Jamf behind the people webhook (serials, UDIDs) and the gate webhook (YubiKeys only)."""
    fake = jamf_with_a_numeric_serial(latency)
    url = str((await aiohttp_server(jamf_app(fake))).make_url(""))
    table = {
        "kind": "jamf",
        "url": url.rstrip("/"),
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "backoff": 0.01,
        **(extra or {}),
    }
    mapping = provider_config("jamf", table, PILOT)
    mapping["webhooks"][1]["identifier_kinds"] = ["yubikey-serial"]
    mapping["server"]["provider_retry_interval"] = 0.1
    return await start_service(aiohttp_client, mapping)


async def test_a_macs_cached_record_never_allows_a_yubikey(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """The Mac is allowed (and cached); a YubiKey with the same digits is still not found."""
    client = await two_kinds(aiohttp_client, aiohttp_server)
    assert (await call(client, DIGITS))["allow"] is True
    answer = await call(client, DIGITS, path=GATE)
    assert answer["allow"] is False
    assert answer["error"]["code"] == "device-not-found"


async def test_a_yubikeys_cached_miss_never_denies_the_mac(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """The other order: the YubiKey's "not found" is cached for its kind only."""
    client = await two_kinds(aiohttp_client, aiohttp_server)
    assert (await call(client, DIGITS, path=GATE))["allow"] is False
    assert (await call(client, DIGITS))["allow"] is True


async def test_concurrent_lookups_of_two_kinds_are_not_shared(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """Both kinds asked at once (Jamf slow enough for both lookups to be under way together):
    each webhook's chain runs its own lookup, never joining the other's."""
    client = await two_kinds(aiohttp_client, aiohttp_server, latency=0.3)
    mac, key = await asyncio.gather(call(client, DIGITS), call(client, DIGITS, path=GATE))
    assert mac["allow"] is True
    assert key["allow"] is False


async def test_a_synced_copy_never_answers_a_yubikey_with_a_devices_serial(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """In sync mode the store indexes serials and UDIDs: a YubiKey serial is never in it."""
    client = await two_kinds(aiohttp_client, aiohttp_server, extra=SYNC_KEYS)
    async with asyncio.timeout(20):  # until the first sync made a generation
        while True:
            if (await readyz(client))[1]["sync"]["jamf"]["generation"] is not None:
                break
            await asyncio.sleep(0.05)
    assert (await call(client, DIGITS))["allow"] is True
    answer = await call(client, DIGITS, path=GATE)
    assert answer["allow"] is False
    assert answer["error"]["code"] == "device-not-found"
