"""The gate in front of each HTTP provider's connection pool: order, admission, fast refusal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from providers._http._gate import TRUSTED, Gate
from providers.base import DeviceRecord, ProviderError
from providers.identifiers import classify
from providers.intune import IntuneProvider, IntuneSettings
from providers.jamf import JamfProvider, JamfSettings
from tests.fakes.graph import FakeGraph
from tests.fakes.graph import create_app as graph_app
from tests.fakes.jamf import FakeJamf
from tests.fakes.jamf import create_app as jamf_app

JAMF_DEVICES = Path(__file__).parent / "fakes" / "jamf_devices.json"
GRAPH_DEVICES = Path(__file__).parent / "fakes" / "graph_devices.json"
MAC = "C02FK3Q7MD6T"
MAC_UDID = "5F0C2B7E-9A41-4D8C-B3E2-71A9C0D4E812"
IPHONE_UDID = "00008110-000A1C2E3F40801E"
OLD_IPHONE_UDID = "0123456789abcdef0123456789abcdef01234567"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def timed(gate: Gate, clock: Clock, seconds: float) -> None:
    """Exchanges of `seconds` through an idle gate, enough for a trusted estimate."""
    for _ in range(TRUSTED):
        entered = await gate.enter(clock.now + 10, "/warm-up")
        clock.now += seconds
        gate.leave(entered)


# --- the gate on its own -----------------------------------------------------------------------


async def test_waiting_requests_go_earliest_deadline_first() -> None:
    """A freed slot goes to the waiting request with the earliest deadline, not the oldest."""
    clock = Clock()
    gate = Gate("p", 1, clock=clock)
    held = await gate.enter(clock.now + 10, "/a")
    order: list[float] = []

    async def request(deadline: float) -> None:
        entered = await gate.enter(deadline, "/r")
        order.append(deadline)
        gate.leave(entered)

    tasks = [asyncio.create_task(request(clock.now + d)) for d in (9, 3, 6)]
    await asyncio.sleep(0)
    gate.leave(held)
    await asyncio.gather(*tasks)
    assert order == [clock.now + 3, clock.now + 6, clock.now + 9]


async def test_no_more_requests_than_slots_are_let_through() -> None:
    """However many requests wait, at most `slots` hold a slot at once."""
    gate = Gate("p", 3)
    inside = 0
    most = 0

    async def request() -> None:
        nonlocal inside, most
        entered = await gate.enter(time.monotonic() + 10, "/r")
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.001)
        inside -= 1
        gate.leave(entered)

    await asyncio.gather(*(request() for _ in range(30)))
    assert most == 3


async def test_a_cancelled_waiter_gives_its_place_to_the_next() -> None:
    """A request whose caller gave up while waiting never keeps a slot from the others."""
    clock = Clock()
    gate = Gate("p", 1, clock=clock)
    held = await gate.enter(clock.now + 10, "/a")
    gone = asyncio.create_task(gate.enter(clock.now + 1, "/gone"))
    kept = asyncio.create_task(gate.enter(clock.now + 2, "/kept"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    gate.leave(held)
    entered = await asyncio.wait_for(kept, 1)
    gate.leave(entered)
    assert gate.waiting == 0
    assert await asyncio.wait_for(gate.enter(clock.now + 1, "/next"), 1) == clock.now


async def test_nothing_is_refused_before_an_exchange_was_timed() -> None:
    """Without an estimate of an exchange's duration every lookup is admitted."""
    clock = Clock()
    gate = Gate("p", 1, clock=clock)
    tickets = [gate.admit(clock.now + 0.01, requests=3, rounds=2) for _ in range(100)]
    assert len(tickets) == 100
    assert gate.refused == 0


async def test_one_slow_first_exchange_refuses_nothing_yet() -> None:
    """A single timed exchange (a connection's first, with its set-up) is not trusted yet."""
    clock = Clock()
    gate = Gate("p", 1, clock=clock)
    entered = await gate.enter(clock.now + 10, "/first")
    clock.now += 5.0
    gate.leave(entered)
    assert gate.admit(clock.now + 1, requests=3, rounds=2) is not None
    assert gate.refused == 0


async def test_lookup_that_cannot_finish_in_its_budget_is_refused_at_once() -> None:
    """Behind the work already admitted, a lookup that could not finish is refused, with why."""
    clock = Clock()
    gate = Gate("jamf", 5, clock=clock)
    await timed(gate, clock, 0.05)
    # 5 connections at 50 ms: 4 s hold about 400 requests, less a margin (a tenth, and one
    # exchange): about 360.
    for _ in range(355):
        gate.admit(clock.now + 4, requests=1, rounds=1)
    with pytest.raises(ProviderError) as refused:
        gate.admit(clock.now + 4, requests=10, rounds=1)
    assert "lookup refused at once: 355 requests queued ahead for 5 connections" in str(
        refused.value
    )
    assert gate.refused == 1
    assert gate.admit(clock.now + 4, requests=1, rounds=1) is not None


async def test_rounds_of_requests_count_one_after_another() -> None:
    """A lookup of many rounds is refused when its rounds alone do not fit in the budget."""
    clock = Clock()
    gate = Gate("intune", 5, clock=clock)
    await timed(gate, clock, 1.0)
    gate.admit(clock.now + 4, requests=1, rounds=1)  # the gate is not idle (no probe)
    with pytest.raises(ProviderError, match="refused at once"):
        gate.admit(clock.now + 4, requests=3, rounds=3)
    assert gate.admit(clock.now + 4, requests=3, rounds=2) is not None


async def test_an_idle_gate_admits_a_probe_whatever_the_estimate() -> None:
    """A refused lookup times no exchange, so on an idle gate the next lookup goes through
    (one at a time): its exchanges bring a stale estimate back down."""
    clock = Clock()
    gate = Gate("jamf", 5, clock=clock)
    await timed(gate, clock, 3.0)  # a slow spell: no lookup of 2 s fits any more
    probe = gate.admit(clock.now + 2, requests=1, rounds=1)
    with pytest.raises(ProviderError, match="refused at once"):
        gate.admit(clock.now + 2, requests=1, rounds=1)  # not idle: judged as before
    for _ in range(3):  # the upstream is fast again
        entered = await gate.enter(probe.deadline, "/probe", probe)
        clock.now += 0.01
        gate.leave(entered, probe)
    gate.close(probe)
    assert gate.estimate is not None
    assert gate.estimate < 1.5
    assert gate.admit(clock.now + 2, requests=1, rounds=1) is not None


async def test_a_closed_lookup_frees_what_it_did_not_send() -> None:
    """Planned requests a lookup never sent (nothing found) stop counting once it ends."""
    clock = Clock()
    gate = Gate("p", 1, clock=clock)
    await timed(gate, clock, 0.1)
    first = gate.admit(clock.now + 1, requests=7, rounds=1)
    with pytest.raises(ProviderError):
        gate.admit(clock.now + 1, requests=2, rounds=1)
    gate.close(first)
    assert gate.admit(clock.now + 1, requests=2, rounds=1) is not None


async def test_admitted_lookups_that_can_no_longer_start_are_refused_when_exchanges_slow() -> None:
    """When the estimate grows, queued lookups that could not even start in time fail now."""
    clock = Clock()
    gate = Gate("p", 1, clock=clock)
    await timed(gate, clock, 0.01)
    held = await gate.enter(clock.now + 10, "/held")
    early = gate.admit(clock.now + 10, requests=1, rounds=1)
    late = gate.admit(clock.now + 0.5, requests=1, rounds=1)
    waiting_late = asyncio.create_task(gate.enter(late.deadline, "/late", late))
    waiting_early = asyncio.create_task(gate.enter(early.deadline, "/early", early))
    await asyncio.sleep(0)
    clock.now += 2.0  # the held exchange takes 2 s: the estimate jumps
    gate.leave(held)
    with pytest.raises(ProviderError, match="refused at once"):
        await waiting_late
    gate.leave(await asyncio.wait_for(waiting_early, 1), early)
    with pytest.raises(ProviderError, match="refused at once"):
        await gate.enter(late.deadline, "/late again", late)


async def test_overload_is_logged_once_and_its_end_with_the_count() -> None:
    """The first refusal logs provider.overloaded; an empty queue logs how many were refused."""
    clock = Clock()
    gate = Gate("jamf", 1, clock=clock)
    await timed(gate, clock, 1.0)
    with capture_logs() as logs:
        ticket = gate.admit(clock.now + 3, requests=1, rounds=1)
        for _ in range(3):
            with pytest.raises(ProviderError):
                gate.admit(clock.now + 3, requests=2, rounds=1)
        gate.close(ticket)
    assert [e["event"] for e in logs] == ["provider.overloaded", "provider.overload_cleared"]
    assert logs[0] == {
        "event": "provider.overloaded",
        "log_level": "warning",
        "provider": "jamf",
        "queued": 1,
        "connections": 1,
        "exchange_ms": 1000.0,
    }
    assert logs[1]["refused"] == 3


# --- against the fake Jamf ---------------------------------------------------------------------


@pytest.fixture
def jamf() -> FakeJamf:
    return FakeJamf.from_file(JAMF_DEVICES, latency=0.05)


@pytest.fixture
async def jamf_provider(aiohttp_server: Any, jamf: FakeJamf) -> Any:
    server = await aiohttp_server(jamf_app(jamf))

    async def make(**overrides: Any) -> JamfProvider:
        settings = JamfSettings.model_validate(
            {
                "kind": "jamf",
                "url": str(server.make_url("")).rstrip("/"),
                "client_id": "posture-connector",
                "client_secret": "fake-secret",
                "computers_api_version": "auto",
                **overrides,
            }
        )
        provider = JamfProvider("jamf", settings)
        made.append(provider)
        await provider.start()
        return provider

    made: list[JamfProvider] = []
    yield make
    for provider in made:
        await provider.aclose()


async def test_burst_beyond_the_budget_is_refused_fast_never_queued_into_a_timeout(
    jamf_provider: Any, jamf: FakeJamf
) -> None:
    """More lookups than the connections can serve in the budget: each is found or refused at
    once (never sent), none runs out of time, and Jamf never sees more than max_connections."""
    # Exchanges of 200 ms, long against a busy machine's hiccups: about 8 fit in 2 s.
    jamf.latency = 0.2
    provider = await jamf_provider(max_connections=1, budget=2.0, device_classes="computers")
    await provider.lookup(classify(MAC))  # its department name is cached from now on
    jamf.max_connections = jamf.max_in_flight = 0
    before = len(jamf.requests)
    results = await asyncio.gather(
        *(provider.lookup(classify(MAC)) for _ in range(30)), return_exceptions=True
    )
    found = [r for r in results if not isinstance(r, BaseException)]
    errors = [str(r) for r in results if isinstance(r, BaseException)]
    assert found
    assert all(r is not None and r.serial == MAC for r in found)
    assert errors
    assert all("refused at once" in e for e in errors), errors[:3]
    assert len(jamf.requests) - before < 30
    assert jamf.max_connections <= 1
    assert jamf.max_in_flight <= 1


async def test_a_department_fetch_shared_by_admitted_lookups_is_never_refused(
    jamf_provider: Any, jamf: FakeJamf
) -> None:
    """The department name admitted lookups wait for is fetched even with a long queue: only
    whole lookups are refused, never the request they share."""
    jamf.latency = 0.2
    provider = await jamf_provider(max_connections=1, budget=2.0, device_classes="computers")
    for _ in range(TRUSTED):
        await provider.lookup(classify("C02NULLSECT1"))  # no department: times exchanges
    results = await asyncio.gather(
        *(provider.lookup(classify(MAC)) for _ in range(30)), return_exceptions=True
    )
    errors = [str(r) for r in results if isinstance(r, BaseException)]
    assert any(not isinstance(r, BaseException) for r in results)
    assert all("departments" not in e for e in errors), errors[:3]


async def test_burst_that_fits_the_budget_is_all_answered(
    jamf_provider: Any, jamf: FakeJamf
) -> None:
    """Lookups that the connections can serve within the budget are all answered."""
    provider = await jamf_provider(max_connections=5, budget=4.0, device_classes="computers")
    results = await asyncio.gather(*(provider.lookup(classify(MAC)) for _ in range(40)))
    assert all(r is not None and r.serial == MAC for r in results)


async def test_expired_token_in_a_busy_pool_is_renewed_without_deadlock(
    jamf_provider: Any, jamf: FakeJamf
) -> None:
    """A token renewal asked from inside a request's slot never waits for a slot itself."""
    provider = await jamf_provider(max_connections=1, budget=4.0, device_classes="computers")
    jamf.expire_tokens()
    results = await asyncio.wait_for(
        asyncio.gather(*(provider.lookup(classify(MAC)) for _ in range(5))), 3
    )
    assert all(r is not None for r in results)


async def test_lookups_are_served_again_after_a_slow_spell(
    jamf_provider: Any, jamf: FakeJamf
) -> None:
    """Jamf slow for a while (answers in 0.6 s of a 1 s budget: later lookups are refused at
    once), then fast again: lookups are found again, not refused for good."""
    provider = await jamf_provider(budget=1.0, device_classes="computers")
    jamf.latency = 0.6
    for _ in range(TRUSTED + 1):
        with contextlib.suppress(ProviderError):
            await provider.lookup(classify("C02NULLSECT1"))  # no department: one request
    slow = await asyncio.gather(
        *(provider.lookup(classify("C02NULLSECT1")) for _ in range(3)), return_exceptions=True
    )
    assert any("refused at once" in str(r) for r in slow)
    jamf.latency = 0.0
    outcomes = []
    for _ in range(10):
        try:
            outcomes.append(await provider.lookup(classify("C02NULLSECT1")))
        except ProviderError as exc:
            outcomes.append(str(exc))
    assert all(isinstance(o, DeviceRecord) for o in outcomes[-5:]), outcomes


@pytest.mark.parametrize(
    ("identifier", "searched"),
    [
        (MAC_UDID, {"computers-inventory"}),
        (OLD_IPHONE_UDID, {"mobile-devices"}),
        (IPHONE_UDID, {"computers-inventory", "mobile-devices"}),
        (MAC, {"computers-inventory", "mobile-devices"}),
    ],
    ids=["uuid-form-udid", "40-hex-udid", "8-16-form-udid", "serial"],
)
async def test_udid_form_decides_which_device_classes_are_searched(
    jamf_provider: Any, jamf: FakeJamf, identifier: str, searched: set[str]
) -> None:
    """A UDID of a form Apple gives only Macs (or only older iPhones) searches only that class."""
    provider = await jamf_provider()
    before = len(jamf.requests)
    await provider.lookup(classify(identifier))
    paths = [r.path for r in jamf.requests[before:] if "departments" not in r.path]
    assert {"computers-inventory" if "computers" in p else "mobile-devices" for p in paths} == (
        searched
    )


async def test_udid_of_a_class_the_provider_does_not_serve_is_not_found_without_a_request(
    jamf_provider: Any, jamf: FakeJamf
) -> None:
    """A Mac's UUID-form UDID is not found by a provider that serves mobile devices only."""
    provider = await jamf_provider(device_classes="mobile")
    before = len(jamf.requests)
    assert await provider.lookup(classify(MAC_UDID)) is None
    assert len(jamf.requests) == before


# --- against the fake Graph --------------------------------------------------------------------


async def test_intune_burst_beyond_the_budget_is_refused_fast(aiohttp_server: Any) -> None:
    """Intune lookups (three requests in two rounds) beyond the budget are refused at once,
    the admitted ones all answer, and Graph never sees more than max_connections."""
    fake = FakeGraph.from_file(GRAPH_DEVICES)
    tenant = fake.tenant_id
    client_id, secret = next(iter(fake.clients.items()))
    fake.delay = 0.2  # long against a busy machine's hiccups
    server = await aiohttp_server(graph_app(fake))
    url = str(server.make_url("")).rstrip("/")
    settings = IntuneSettings.model_validate(
        {
            "kind": "intune",
            "tenant_id": tenant,
            "client_id": client_id,
            "client_secret": secret,
            "authority_host": url,
            "graph_host": url,
            "max_connections": 1,
            "budget": 3.0,
        }
    )
    provider = IntuneProvider("intune", settings)
    await provider.start()
    try:
        await provider.lookup(classify("F17ZK8XJN72Q"))  # times one exchange
        fake.max_connections = 0
        results = await asyncio.gather(
            *(provider.lookup(classify("F17ZK8XJN72Q")) for _ in range(20)),
            return_exceptions=True,
        )
    finally:
        await provider.aclose()
    errors = [str(r) for r in results if isinstance(r, BaseException)]
    assert len(errors) < 20
    assert errors
    assert all("refused at once" in e for e in errors), errors[:3]
    assert fake.max_connections <= 1
