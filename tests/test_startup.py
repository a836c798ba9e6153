"""Provider start-up: the port answers at once, providers start concurrently and are retried."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED, ProviderKeeper
from connector.cli import main
from posture_lab import toml_document
from providers import ProviderError
from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app
from tests.helpers import config, make_settings, webhook

DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"
TOKEN_PATH = "/api/v1/oauth/token"


@pytest.fixture
def fake() -> FakeJamf:
    return FakeJamf.from_file(DEVICES)


@pytest.fixture
async def jamf_url(aiohttp_server: Any, fake: FakeJamf) -> str:
    server = await aiohttp_server(jamf_app(fake))
    return str(server.make_url("")).rstrip("/")


def _jamf_config(url: str, names: tuple[str, ...], folder: Path) -> dict[str, Any]:
    jamf = {
        "kind": "jamf",
        "url": url,
        "client_id": "posture-connector",
        "client_secret": "fake-secret",
        "backoff": 0.01,
    }
    return config(
        folder / "unused.csv",
        providers=dict.fromkeys(names, jamf),
        webhooks=[webhook(providers=names)],
    )


async def test_port_answers_before_slow_providers_are_ready(
    aiohttp_client: Any, fake: FakeJamf, jamf_url: str, tmp_path: Path
) -> None:
    """With a slow upstream the app serves at once: /healthz 200, /readyz 503 until ready."""
    fake.inject("slow", path=TOKEN_PATH, delay=1.0)
    app = create_app(make_settings(_jamf_config(jamf_url, ("jamf",), tmp_path)))
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    readyz = await client.get("/readyz")
    assert readyz.status == 503
    assert (await readyz.json())["providers"] == {"jamf": False}
    await asyncio.wait_for(app[PROVIDERS_STARTED].wait(), timeout=10)
    assert (await client.get("/readyz")).status == 200


async def test_providers_start_concurrently(
    aiohttp_client: Any, fake: FakeJamf, jamf_url: str, tmp_path: Path
) -> None:
    """Two providers behind a slow upstream have their start requests in flight together."""
    fake.inject("slow", path=TOKEN_PATH, delay=0.5, times=None)
    app = create_app(make_settings(_jamf_config(jamf_url, ("first", "second"), tmp_path)))
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[PROVIDERS_STARTED].wait(), timeout=10)
    assert fake.max_in_flight >= 2
    assert (await client.get("/readyz")).status == 200


async def test_a_start_failure_is_logged_once(
    aiohttp_client: Any, fake: FakeJamf, jamf_url: str, tmp_path: Path
) -> None:
    """An upstream failure at start is one error line, the app's `provider.not_ready`."""
    fake.inject("500", path=TOKEN_PATH, times=None)
    app = create_app(make_settings(_jamf_config(jamf_url, ("jamf",), tmp_path)))
    with capture_logs() as logs:
        await aiohttp_client(app)
        await asyncio.wait_for(app[PROVIDERS_STARTED].wait(), timeout=10)
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["provider"]) for e in errors] == [("provider.not_ready", "jamf")]


class Flaky:
    """A provider whose starts raise (or hang on) `failures` in turn, then succeed."""

    cacheable = False

    def __init__(self, name: str, failures: list[BaseException | asyncio.Event | None]) -> None:
        self.name = name
        self.ready = False
        self.starts = 0
        self._failures = failures

    async def start(self) -> None:
        self.starts += 1
        failure = self._failures.pop(0) if self._failures else None
        if isinstance(failure, asyncio.Event):
            await failure.wait()
        elif failure is not None:
            raise failure
        self.ready = True

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        return None

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def aclose(self) -> None:
        return None


async def _until_ready(keeper: ProviderKeeper, *providers: Flaky) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(keeper.run(started, ["people"]))
    try:
        async with asyncio.timeout(5):
            while not all(p.ready for p in providers):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_unexpected_start_errors_do_not_stop_the_retries() -> None:
    """A provider raising a non-provider exception is retried; its traceback is logged once."""
    flaky = Flaky("flaky", [RuntimeError("bug"), RuntimeError("bug"), KeyError("other")])
    keeper = ProviderKeeper([flaky], timeout=5, interval=0.01)
    with capture_logs() as logs:
        await _until_ready(keeper, flaky)
    failures = [e for e in logs if e["event"] == "provider.not_ready"]
    assert [(e["error"], e["exc_info"]) for e in failures] == [
        ("unexpected RuntimeError", True),
        ("unexpected RuntimeError", False),
        ("unexpected KeyError", True),
    ]
    assert flaky.starts == 4


async def test_a_hanging_start_is_bounded_and_does_not_delay_the_others() -> None:
    """A start that never returns is abandoned at the start timeout; other providers are ready."""
    hanging = Flaky("hanging", [asyncio.Event()])
    quick = Flaky("quick", [ProviderError("quick", "not yet")])
    keeper = ProviderKeeper([hanging, quick], timeout=0.2, interval=0.01)
    with capture_logs() as logs:
        await _until_ready(keeper, hanging, quick)
    errors = {e["provider"]: e["error"] for e in logs if e["event"] == "provider.not_ready"}
    assert errors == {"hanging": "start did not finish within 0.2s", "quick": "not yet"}


@pytest.mark.usefixtures("restore_logging")  # `lookup` configures logging for the process
async def test_cli_lookup_gives_a_hanging_start_only_provider_start_timeout(
    fake: FakeJamf, jamf_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lookup` waits `provider_start_timeout` for a start that hangs, says so, then decides."""
    fake.inject("slow", path=TOKEN_PATH, delay=5.0)  # the start's token request only
    mapping = _jamf_config(jamf_url, ("jamf",), tmp_path)
    mapping["server"]["provider_start_timeout"] = 0.3
    path = tmp_path / "connector.toml"
    path.write_text(toml_document(mapping), encoding="utf-8")
    args = ["lookup", "--config", str(path), "--webhook", "people", "C02FK3Q7MD6T", "--json"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    exit_code = await asyncio.to_thread(main, args)
    assert loop.time() - started < 4  # not the 5 s the hanging start would have taken
    out, err = capsys.readouterr()
    assert "provider jamf not ready: start did not finish within 0.3s" in err
    assert (exit_code, json.loads(out)["allow"]) == (0, True)
