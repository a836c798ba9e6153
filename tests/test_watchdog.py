"""The event-loop watchdog and readiness: a stalled loop is seen from a thread and kept out."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.readiness import Readiness
from connector.settings import ConfigError
from connector.watchdog import LoopWatchdog
from tests.conftest import AppClient
from tests.helpers import config, make_settings


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _keep_time(dog: LoopWatchdog, clock: Clock, until: float, step: float = 0.1) -> None:
    """The loop beats and the thread looks every `step` seconds until `until`."""
    while clock.now < until - 1e-9:
        clock.now = round(clock.now + step, 6)
        dog.beat()
        dog.check()


def test_a_stall_is_logged_once_and_readiness_returns_only_after_recovery() -> None:
    """A heartbeat over `timeout` late logs one `server.loop_stalled` and turns readiness off;
    it returns once the loop has kept time for `recovery` seconds, not before."""
    clock, readiness = Clock(), Readiness()
    dog = LoopWatchdog(readiness, timeout=1.0, recovery=3.0, clock=clock)
    with capture_logs() as logs:
        _keep_time(dog, clock, until=1.0)
        for now in (1.5, 2.2, 3.0):  # the loop is stuck; the thread keeps looking
            clock.now = now
            dog.check()
        assert readiness.loop_stalled
        _keep_time(dog, clock, until=5.9)
        assert readiness.loop_stalled  # 2.9 s of keeping time is not enough
        _keep_time(dog, clock, until=6.2)
    assert not readiness.loop_stalled
    assert logs == [
        {
            "event": "server.loop_stalled",
            "log_level": "warning",
            "stalled_ms": 1200,
            "timeout_ms": 1000,
        },
        {
            "event": "server.loop_recovered",
            "log_level": "info",
            "stalled_ms": 2100,
            "ready_in_ms": 3000,
        },
    ]


def test_a_new_stall_during_recovery_keeps_the_replica_out() -> None:
    """A loop that stalls again before `recovery` is over stays not ready, and each stall is
    logged."""
    clock, readiness = Clock(), Readiness()
    dog = LoopWatchdog(readiness, timeout=0.5, recovery=3.0, clock=clock)
    with capture_logs() as logs:
        for _ in range(2):
            clock.now += 1.0
            dog.check()  # stalled
            _keep_time(dog, clock, until=clock.now + 2.0)  # recovering, not long enough
            assert readiness.loop_stalled
        _keep_time(dog, clock, until=clock.now + 3.0)
    assert not readiness.loop_stalled
    assert [e["event"] for e in logs] == [
        "server.loop_stalled",
        "server.loop_recovered",
        "server.loop_stalled",
        "server.loop_recovered",
    ]


@pytest.mark.parametrize(
    ("draining", "stalled", "providers_ready", "status"),
    [
        (False, False, True, "ready"),
        (False, False, False, "not-ready"),
        (False, True, True, "loop-stalled"),
        (True, True, False, "draining"),
    ],
    ids=["ready", "providers", "stalled", "draining-first"],
)
def test_readiness_names_the_most_lasting_reason(
    draining: bool, stalled: bool, providers_ready: bool, status: str
) -> None:
    """Only a replica with ready providers, no drain and a punctual loop is ready; a draining
    replica says so whatever else holds."""
    readiness = Readiness(draining=draining, loop_stalled=stalled)
    assert readiness.status(providers_ready=providers_ready) == status


async def test_a_blocked_loop_is_seen_by_the_thread_and_readyz_says_so(
    app_client: AppClient, inventory: Path
) -> None:
    """While the loop is blocked the watchdog thread logs `server.loop_stalled`; once it runs
    again /readyz answers 503 `loop-stalled`, and the stall's length is logged."""
    client = await app_client(config(inventory, server={"loop_stall_timeout": 0.5}))
    assert (await client.get("/readyz")).status == 200
    with capture_logs() as logs:
        time.sleep(1.2)  # noqa: ASYNC251 - blocking the event loop is the point
        response = await client.get("/readyz")
        deadline = time.monotonic() + 2
        while not [e for e in logs if e["event"] == "server.loop_recovered"]:
            assert time.monotonic() < deadline
            await client.get("/healthz")
    assert (response.status, (await response.json())["status"]) == (503, "loop-stalled")
    [stalled] = [e for e in logs if e["event"] == "server.loop_stalled"]
    [recovered] = [e for e in logs if e["event"] == "server.loop_recovered"]
    assert stalled["stalled_ms"] >= 500
    assert recovered["stalled_ms"] >= 1100


@pytest.mark.parametrize("timeout", [0.05, 0.4])
def test_a_stall_limit_of_few_heartbeats_is_refused(inventory: Path, timeout: float) -> None:
    """The heartbeat runs every 0.1 s: a limit of a few heartbeats is exceeded by an idle loop
    (/readyz would say loop-stalled for ever), so the config is refused with the bound."""
    with pytest.raises(ConfigError) as refused:
        make_settings(config(inventory, server={"loop_stall_timeout": timeout}))
    assert "use 0 (no watchdog) or at least 0.5 seconds" in refused.value.problems[0]


def _watchdogs() -> int:
    return sum(thread.name == "loop-watchdog" for thread in threading.enumerate())


async def test_the_watchdog_thread_lives_as_long_as_the_app(inventory: Path) -> None:
    """The watchdog thread starts with the app and is gone after cleanup; 0 turns it off."""
    before = _watchdogs()
    for timeout, threads in ((2.0, 1), (0, 0)):
        app = create_app(make_settings(config(inventory, server={"loop_stall_timeout": timeout})))
        async with TestClient(TestServer(app)) as client:
            await app[PROVIDERS_STARTED].wait()
            assert (await client.get("/readyz")).status == 200
            assert _watchdogs() == before + threads
        assert _watchdogs() == before
