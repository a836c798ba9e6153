"""The listener in-process: read deadlines, idle keep-alive, the connection cap, TLS handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector import create_app
from connector.app import PROVIDERS_STARTED
from connector.connection import MAX_HEAD_BYTES
from connector.listener import Listener
from connector.server import make_listener, running
from connector.tls import ensure_dev_certificate, server_context
from tests.helpers import FIXED_NOW, config, enrich, make_settings, signed

PEOPLE = "/webhooks/people"


@dataclass(frozen=True)
class Served:
    """A running app behind a real `Listener` on 127.0.0.1."""

    listener: Listener
    port: int


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(inventory: Path) -> AsyncIterator[Serve]:
    """Start the real app behind the listener with `[server]` overrides; stop it afterwards."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(context: ssl.SSLContext | None = None, **server: Any) -> Served:
            settings = make_settings(
                config(inventory, server={"port": 0, "drain_period": 0, **server})
            )
            listener = make_listener(settings.server)
            listener.bind()
            if context is not None:
                listener.use_tls(context)
            app = create_app(settings, clock=lambda: FIXED_NOW)
            await stack.enter_async_context(running(app, listener, settings))
            await app[PROVIDERS_STARTED].wait()
            return Served(listener, listener.addresses[0][1])

        yield start


def _request(body: bytes, *, keep_alive: bool = True) -> bytes:
    headers = signed(body)
    lines = [
        f"POST {PEOPLE} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            return await reader.read() == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def _trickle(writer: asyncio.StreamWriter, lines: int) -> None:
    """Send a request head's header lines one at a time, 50 ms apart."""
    with contextlib.suppress(ConnectionError):
        for _ in range(lines):
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)


async def test_stalled_body_is_answered_408_at_the_read_timeout(serve: Serve) -> None:
    """A body that stops arriving is refused with 408 request-timeout, then the connection closes."""
    served = await serve(read_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    request = _request(enrich("C02TEST00001"))
    writer.write(request[:-20])  # the head and most of the body; the rest never comes
    async with asyncio.timeout(5):
        status, headers, body = await _answer(reader)
    assert (status, json.loads(body)["error"]["code"]) == (408, "request-timeout")
    assert headers["connection"] == "close"
    assert await _closed(reader, within=5)
    writer.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("late", [False, True], ids=["with-the-head", "after-the-head"])
async def test_a_body_that_does_not_decode_is_a_400_not_a_500(
    serve: Serve, encoding: str, late: bool
) -> None:
    """aiohttp unpacks a ``Content-Encoding`` itself; a body that does not unpack is the
    sender's fault (400 payload-invalid, no error line), whether it came with the head or while
    the handler waited for it, before any id or signature is checked."""
    served = await serve(read_timeout=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    head = (
        f"POST {PEOPLE} HTTP/1.1\r\nHost: x\r\nContent-Encoding: {encoding}\r\n"
        "Content-Length: 16\r\n\r\n"
    ).encode()
    with capture_logs() as logs:
        writer.write(head if late else head + b"not compressed!!")
        if late:  # the body arrives while the handler waits in read_capped
            await asyncio.sleep(0.2)
            writer.write(b"not compressed!!")
        async with asyncio.timeout(5):
            status, _, body = await _answer(reader)
    writer.close()
    assert (status, json.loads(body)["error"]["code"]) == (400, "payload-invalid")
    assert [e["event"] for e in logs if e["log_level"] in ("error", "critical")] == []


async def test_a_request_head_past_its_size_limit_closes_the_connection_at_once(
    serve: Serve,
) -> None:
    """aiohttp holds up to 2 MiB of an unfinished head per connection (128 lines of 8 KiB),
    for `read_timeout`, from anyone: a gigabyte at the connection cap. A head past
    `MAX_HEAD_BYTES` is cut at once; a head within it, in as many reads, is answered."""
    served = await serve(read_timeout=30)
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    with capture_logs() as logs:
        writer.write(b"POST /webhooks/people HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_HEAD_BYTES // len(line) + 2):
                writer.write(line)
                await writer.drain()
        assert await _closed(reader, within=3)  # not at the read timeout, 30 s away
    writer.close()
    [refused] = [e for e in logs if e["event"] == "request.malformed"]
    assert refused["status"] == 431

    request = _request(enrich("C02TEST00001"))
    head, _, body = request.partition(b"\r\n\r\n")
    fillers = b"".join(line for _ in range(MAX_HEAD_BYTES // len(line) // 2))
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    for part in (head + b"\r\n", fillers[: len(fillers) // 2], fillers[len(fillers) // 2 :]):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.05)  # each its own read
    writer.write(b"\r\n" + body)
    async with asyncio.timeout(5):
        status, _, _ = await _answer(reader)
    writer.close()
    assert status == 200


async def test_request_head_sent_slowly_is_cut_at_the_read_timeout(serve: Serve) -> None:
    """A request head trickling in a byte at a time is closed once `read_timeout` has passed."""
    served = await serve(read_timeout=0.3, keepalive_timeout=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"POST /webhooks/people HTTP/1.1\r\n")
    trickling = asyncio.create_task(_trickle(writer, 100))
    assert await _closed(reader, within=3)
    trickling.cancel()
    writer.close()


async def test_a_later_head_on_a_kept_connection_gets_its_own_full_read_timeout(
    serve: Serve,
) -> None:
    """After an answered call, the next head trickling in is cut at its own deadline, not at
    the first call's, and not never."""
    served = await serve(read_timeout=1.0, keepalive_timeout=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(_request(enrich("C02TEST00001")))
    async with asyncio.timeout(5):
        status, _, _ = await _answer(reader)
    assert status == 200
    await asyncio.sleep(0.6)  # the first head's deadline would fall 0.4 s into the next head
    writer.write(b"POST /webhooks/people HTTP/1.1\r\n")
    trickling = asyncio.create_task(_trickle(writer, 200))
    assert not await _closed(reader, within=0.7)  # past the first head's deadline: still open
    assert await _closed(reader, within=5)
    trickling.cancel()
    writer.close()


async def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(serve: Serve) -> None:
    """A connection that sends nothing (or nothing more after an answer) is closed when idle."""
    served = await serve(keepalive_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(_request(enrich("C02TEST00001")))
    status, _, _ = await _answer(reader)
    assert status == 200
    assert await _closed(reader, within=3)
    writer.close()
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", served.port)
    assert await _closed(silent_reader, within=3)
    silent.close()


async def _at_cap(served: Served, count: int) -> None:
    async with asyncio.timeout(3):
        while served.listener.open_connections < count:  # accepting is asynchronous  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_connections_over_the_cap_are_refused_while_held_ones_are_answered(
    serve: Serve,
) -> None:
    """At `max_connections` of proven connections a new one is closed; held ones get answers."""
    served = await serve(max_connections=3, keepalive_timeout=60, read_timeout=60)
    held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(3)]
    for reader, writer in held:  # each has had an answer: a client's keep-alive pool
        writer.write(_request(enrich("C02TEST00001")))
        assert (await _answer(reader))[0] == 200
    await _at_cap(served, 3)
    extra_reader, extra = await asyncio.open_connection("127.0.0.1", served.port)
    assert await _closed(extra_reader, within=3)
    extra.close()
    for reader, writer in held:
        writer.write(_request(enrich("C02TEST00001")))
        status, _, body = await _answer(reader)
        assert (status, json.loads(body)["allow"]) == (200, True)
    for _, writer in held:
        writer.close()


async def test_silent_connections_at_the_cap_make_room_for_a_new_one(serve: Serve) -> None:
    """Connections that never sent a request are displaced, oldest first, by a newcomer."""
    served = await serve(max_connections=3, keepalive_timeout=60, read_timeout=60)
    silent = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(3)]
    await _at_cap(served, 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(_request(enrich("C02TEST00001")))
    status, _, body = await _answer(reader)
    assert (status, json.loads(body)["allow"]) == (200, True)
    assert await _closed(silent[0][0], within=3)
    assert not await _closed(silent[1][0], within=0.2)
    for _, silent_writer in [*silent, (reader, writer)]:
        silent_writer.close()


async def test_idle_connections_without_a_signed_call_make_room_for_step_ca(
    serve: Serve,
) -> None:
    """Keep-alive connections held open by anyone (pinging `/healthz`) cannot lock step-ca out:
    at the cap the oldest idle one that never carried a signed call is closed for a newcomer,
    while a connection that carried one is kept."""
    served = await serve(max_connections=3, keepalive_timeout=60, read_timeout=60)
    step_ca = await asyncio.open_connection("127.0.0.1", served.port)
    step_ca[1].write(_request(enrich("C02TEST00001")))
    assert (await _answer(step_ca[0]))[0] == 200
    pingers = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
    for reader, writer in pingers:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await _answer(reader))[0] == 200
    await _at_cap(served, 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(_request(enrich("C02TEST00001")))
    status, _, body = await _answer(reader)
    assert (status, json.loads(body)["allow"]) == (200, True)
    assert await _closed(pingers[0][0], within=3)  # the oldest pinger made room
    assert not await _closed(pingers[1][0], within=0.2)
    step_ca[1].write(_request(enrich("C02TEST00001")))  # step-ca's connection was kept
    assert (await _answer(step_ca[0]))[0] == 200
    for _, open_writer in [step_ca, *pingers, (reader, writer)]:
        open_writer.close()


async def test_unsigned_requests_under_way_make_room_for_step_ca(serve: Serve) -> None:
    """Requests anyone can send without a signature and hold open until `read_timeout` (a
    head, then a body that trickles; a second head trickling in on a kept connection) cannot
    lock step-ca out at the cap either: the oldest of them is closed for a newcomer."""
    served = await serve(max_connections=3, keepalive_timeout=60, read_timeout=30)
    slow_bodies = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
    for _, writer in slow_bodies:  # a complete head, one byte of the announced body
        writer.write(
            f"POST {PEOPLE} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode()
        )
    second_head = await asyncio.open_connection("127.0.0.1", served.port)
    second_head[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await _answer(second_head[0]))[0] == 200
    second_head[1].write(b"GET /healthz HTTP/1.1\r\n")  # and the rest never comes
    await _at_cap(served, 3)
    await asyncio.sleep(0.2)  # the two bodies are awaited in their handlers

    callers = []
    for _ in range(3):  # each newcomer displaces another of them, oldest first
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        callers.append((reader, writer))
        writer.write(_request(enrich("C02TEST00001")))
        async with asyncio.timeout(3):
            status, _, body = await _answer(reader)
        assert (status, json.loads(body)["allow"]) == (200, True)
    for reader, _ in [*slow_bodies, second_head]:
        assert await _closed(reader, within=3)
    for _, open_writer in [*slow_bodies, second_head, *callers]:
        open_writer.close()


async def test_a_freed_slot_accepts_again(serve: Serve) -> None:
    """Once a held connection closes, a new connection is served again."""
    served = await serve(max_connections=1, keepalive_timeout=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(_request(enrich("C02TEST00001"), keep_alive=False))
    assert (await _answer(reader))[0] == 200
    writer.close()
    while served.listener.open_connections:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(_request(enrich("C02TEST00001")))
    assert (await _answer(reader))[0] == 200
    writer.close()


async def test_tls_handshake_that_never_starts_is_cut_and_frees_its_slot(
    serve: Serve, tmp_path: Path
) -> None:
    """A TCP connection that never sends a ClientHello is closed at `read_timeout`."""
    paths, ca = ensure_dev_certificate(tmp_path)
    served = await serve(server_context(paths, None), read_timeout=0.3, keepalive_timeout=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    assert await _closed(reader, within=3)
    writer.close()
    async with asyncio.timeout(3):
        while served.listener.open_connections:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    client = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port, ssl=client)
    writer.write(_request(enrich("C02TEST00001")))
    status, _, body = await _answer(reader)
    assert (status, json.loads(body)["allow"]) == (200, True)
    writer.close()


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.mark.parametrize("held", ["silent", "idle-after-healthz"])
async def test_a_step_ca_handshake_outlives_a_newer_connect_at_the_cap(
    serve: Serve, tmp_path: Path, held: str
) -> None:
    """Anyone can hold every other slot with silent connections (or idle ones that asked for
    `/healthz` once): the next connect must then displace the oldest of those, not step-ca's
    handshake that is still under way (which would lock step-ca out with one connect per
    handshake)."""
    paths, ca = ensure_dev_certificate(tmp_path)
    served = await serve(
        server_context(paths, None), max_connections=3, read_timeout=30, keepalive_timeout=60
    )
    silent = [
        await asyncio.open_connection("127.0.0.1", served.port, ssl=_trusting(ca)) for _ in range(2)
    ]
    if held == "idle-after-healthz":
        for silent_reader, silent_writer in silent:
            silent_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = await _answer(silent_reader)
            assert status == 200
    await _at_cap(served, 2)
    step_ca = socket.create_connection(("127.0.0.1", served.port))  # its hello not yet sent
    await _at_cap(served, 3)
    newcomer = socket.create_connection(("127.0.0.1", served.port))  # never sends a byte
    await asyncio.sleep(0.1)

    reader, writer = await asyncio.open_connection(
        sock=step_ca, ssl=_trusting(ca), server_hostname="localhost"
    )
    writer.write(_request(enrich("C02TEST00001")))
    async with asyncio.timeout(5):
        status, _, body = await _answer(reader)

    assert (status, json.loads(body)["allow"]) == (200, True)
    assert await _closed(silent[0][0], within=3)  # the oldest silent one made room
    newcomer.close()
    for _, other in [*silent, (reader, writer)]:
        other.close()


async def test_a_displaced_tls_connection_lets_go_of_its_socket_at_once(
    serve: Serve, tmp_path: Path
) -> None:
    """A displaced connection is cut, not closed politely: a TLS close waits for the peer's
    close_notify, and a peer that never sends one would keep its socket (outside the cap)."""
    paths, ca = ensure_dev_certificate(tmp_path)
    served = await serve(
        server_context(paths, None), max_connections=2, read_timeout=30, keepalive_timeout=60
    )
    client = _trusting(ca)

    def handshake() -> ssl.SSLSocket:  # blocking: on a thread, the server shares this loop
        raw = socket.create_connection(("127.0.0.1", served.port))
        return client.wrap_socket(raw, server_hostname="localhost")

    # Handshakes done; they never read again (so never answer a close_notify).
    mute = [await asyncio.to_thread(handshake) for _ in range(2)]
    await _at_cap(served, 2)
    newcomer = socket.create_connection(("127.0.0.1", served.port))

    def gone(sock: socket.socket) -> bool:
        """The TCP connection beneath the TLS one ends within a second (read raw, past any
        TLS record): a polite close would end it at TLS_SHUTDOWN_TIMEOUT, 2 s."""
        deadline = time.monotonic() + 1.0
        while select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                if not os.read(sock.fileno(), 4096):
                    return True
            except ConnectionResetError:
                return True
        return False

    async with asyncio.timeout(3):
        while not served.listener.evicted_total:  # noqa: ASYNC110 - accepting is asynchronous
            await asyncio.sleep(0.01)
    assert await asyncio.to_thread(gone, mute[0])
    for sock in [*mute, newcomer]:
        sock.close()


async def test_blank_lines_before_a_request_do_not_lift_the_head_limit(serve: Serve) -> None:
    """The parser skips blank lines before a request line; they must not end the head that
    `MAX_HEAD_BYTES` counts (or anyone could park megabytes of head per connection)."""
    served = await serve(read_timeout=30)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    with capture_logs() as logs:
        writer.write(b"\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # its own read
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_HEAD_BYTES // len(line) + 2):
                writer.write(line)
                await writer.drain()
        assert await _closed(reader, within=3)
    writer.close()
    assert [e["status"] for e in logs if e["event"] == "request.malformed"] == [431]

    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"\r\n" + _request(enrich("C02TEST00001")))  # a blank line first is still read
    async with asyncio.timeout(5):
        status, _, _ = await _answer(reader)
    writer.close()
    assert status == 200


async def test_a_compressed_body_is_refused_unread(serve: Serve) -> None:
    """step-ca never compresses a call: a compressed body is refused, and never inflated
    (inflating 64 MiB from 64 KiB is CPU anyone could make the service spend before any
    signature is checked). The CPU measured is this process's (server and client): the bomb
    must cost about what a plain body of its size does, not the tenfold of inflating it."""
    served = await serve(read_timeout=5)
    packer = zlib.compressobj(9)
    bomb = packer.compress(b"\0" * (64 << 20)) + packer.flush()
    plain = b"{" + b"a" * (len(bomb) - 2) + b"}"

    async def spent(body: bytes, coding: str) -> tuple[float, int, dict[str, Any]]:
        started = time.process_time()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(
            f"POST {PEOPLE} HTTP/1.1\r\nHost: x\r\nContent-Encoding: {coding}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        async with asyncio.timeout(5):
            status, _, answer = await _answer(reader)
            await _closed(reader, within=3)  # whatever the server still reads of the body
        writer.close()
        return time.process_time() - started, status, json.loads(answer)["error"]

    baseline = min([(await spent(plain, "identity"))[0] for _ in range(3)])
    inflating, status, error = min([await spent(bomb, "deflate") for _ in range(3)])
    assert (status, error["code"]) == (400, "payload-invalid")
    assert "compressed" in error["message"]
    assert inflating < 5 * baseline + 0.02, (inflating, baseline)
