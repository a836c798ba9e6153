"""A real `serve` process: shutdown answers requests under way, JSON-only logs, a taken port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ENRICH_ID, INVENTORY_CSV, SECRET, enrich, signed

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = "/webhooks/people"
STORE_FILE = "posture-connector.sqlite3"  # the default store, beside the config

CONFIG = """\
[server]
plain_http = true
host = "127.0.0.1"
port = {port}
shutdown_timeout = 5
drain_period = {drain_period}
{extra}

[logging]
format = "json"

[providers.inventory]
kind = "csv"
path = "inventory.csv"
reload_interval = 0

[[webhooks]]
name = "people"
kind = "ENRICHING"
path = "/webhooks/people"
id = "{hook_id}"
secret = "{secret}"
providers = ["inventory"]
"""


@dataclass
class Process:
    """A `serve` subprocess writing its log to a file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _launch(folder: Path, port: int, extra: str = "", drain_period: float = 0) -> Process:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inventory.csv").write_text(INVENTORY_CSV, encoding="utf-8")
    config = folder / "connector.toml"
    text = CONFIG.format(
        port=port, extra=extra, drain_period=drain_period, hook_id=ENRICH_ID, secret=SECRET
    )
    config.write_text(text, encoding="utf-8")
    log = folder / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "serve", "--config", str(config)],
            cwd=folder,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return Process(process, port, log)


def _wait_ready(server: Process) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"serve exited early:\n{server.log.read_text(encoding='utf-8')}")
        try:
            if httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"serve never ready:\n{server.log.read_text(encoding='utf-8')}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start `serve` with extra `[server]` lines (no drain period unless given); stopped
    (SIGTERM) after the test."""
    started: list[Process] = []

    def start(extra: str = "", *, drain_period: float = 0) -> Process:
        server = _launch(tmp_path / f"serve{len(started)}", _free_port(), extra, drain_period)
        started.append(server)
        _wait_ready(server)
        return server

    yield start
    for server in started:
        server.stop()


def _head(body: bytes) -> bytes:
    lines = [
        f"POST {PEOPLE} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in signed(body).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_sigterm_answers_a_request_whose_body_is_still_arriving(serve: Any) -> None:
    """A request half-sent at SIGTERM is read to its end and answered, then the process exits 0."""
    server = serve()
    body = enrich("C02TEST00001", now=datetime.now(UTC))
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_head(body) + body[:50])
        time.sleep(0.3)  # the server has the head and is waiting for the body
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the server is draining now
        sock.sendall(body[50:])
        answer = _read_answer(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    head, _, payload = rest.partition(b"\r\n\r\n")
    assert status_line == b"HTTP/1.1 200 OK"
    assert b"Connection: close" in head
    assert json.loads(payload)["allow"] is True
    assert idle.recv(1) == b""  # an idle keep-alive connection is simply closed
    idle.close()
    assert server.process.wait(timeout=10) == 0
    events = [e["event"] for e in server.events()]
    assert events.index("server.stopping") < events.index("webhook.decision")
    assert events.index("webhook.decision") < events.index("service.stopped")
    assert "server.draining" not in events  # drain_period = 0: the listener closes at once
    # The decision made during shutdown reached the audit log, once, with no failed write.
    assert not {"audit.write_failed", "audit.flush_timeout"} & set(events)
    with contextlib.closing(sqlite3.connect(server.log.with_name(STORE_FILE))) as db:
        assert db.execute("SELECT identifier FROM decisions").fetchall() == [("C02TEST00001",)]


def _one_answer(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """Read one HTTP/1.1 answer (with a Content-Length) from a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an answer"
        data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(payload) < int(headers["content-length"]):
        payload += sock.recv(65536)
    return status_line.encode(), headers, payload


def _readyz(port: int) -> tuple[int, str]:
    response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    return response.status_code, response.json()["status"]


def _wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_sigterm_first_reports_draining_and_closes_connections_after_answers(serve: Any) -> None:
    """For the drain period after SIGTERM, /readyz says draining, new and reused connections are
    answered with `Connection: close`, and only then the port closes and the process exits 0."""
    server = serve(drain_period=2)
    body = enrich("C02TEST00001", now=datetime.now(UTC))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as kept:
        kept.sendall(_head(body) + body)
        status, headers, _ = _one_answer(kept)
        assert (status, headers.get("connection")) == (b"HTTP/1.1 200 OK", None)  # keep-alive
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _wait_for(lambda: _readyz(server.port) == (503, "draining"), timeout=1.5)
        fresh = httpx.post(
            f"http://127.0.0.1:{server.port}{PEOPLE}", content=body, headers=signed(body)
        )
        assert (fresh.status_code, fresh.headers["connection"]) == (200, "close")
        kept.sendall(_head(body) + body)  # the pooled connection: answered, then closed
        status, headers, payload = _one_answer(kept)
        assert (status, headers["connection"]) == (b"HTTP/1.1 200 OK", "close")
        assert json.loads(payload)["allow"] is True
        assert kept.recv(1) == b""
    assert server.process.wait(timeout=10) == 0
    assert time.monotonic() - signalled >= 2  # the port stayed open for the whole period
    events = server.events()
    names = [e["event"] for e in events]
    [draining] = [e for e in events if e["event"] == "server.draining"]
    assert draining["drain_period"] == 2
    assert names.index("server.draining") < names.index("server.stopping")
    assert names.count("webhook.decision") == 3
    assert names.index("server.stopping") < names.index("service.stopped")


def test_a_second_signal_ends_the_drain_period(serve: Any) -> None:
    """A second SIGTERM (or Ctrl-C) during the drain period closes the listener at once."""
    server = serve(drain_period=60)
    server.process.send_signal(signal.SIGTERM)
    _wait_for(lambda: _readyz(server.port) == (503, "draining"), timeout=1.5)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0
    names = [e["event"] for e in server.events()]
    assert names.index("server.drain_interrupted") < names.index("server.stopping")


def test_every_log_line_is_json_even_for_garbage_and_dropped_clients(serve: Any) -> None:
    """Malformed requests and clients leaving mid-body log one JSON line each, no traceback."""
    server = serve()
    for garbage in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/1.1\r\nHost\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(garbage)
            _read_answer(sock)
    body = enrich("C02TEST00001", now=datetime.now(UTC))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_head(body) + body[:10])
        time.sleep(0.3)
    assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
    assert server.stop() == 0
    events = server.events()  # every line parses as one JSON object
    # aiohttp keeps a first request that is not HTTP at all (the TLS hello) at debug level.
    [malformed] = [e for e in events if e["event"] == "request.malformed"]
    assert (malformed["level"], malformed["status"]) == ("info", 400)
    [gone] = [e for e in events if e["event"] == "request.client_disconnected"]
    assert (gone["level"], gone["path"]) == ("info", PEOPLE)
    assert not [e for e in events if "exception" in e or e["level"] == "error"]


@pytest.mark.parametrize(("extra", "loop"), [("", "uvloop"), ('event_loop = "asyncio"', "asyncio")])
def test_serve_runs_on_the_configured_event_loop(serve: Any, extra: str, loop: str) -> None:
    """uvloop by default, asyncio's own loop when asked; `server.listening` says which, and a
    signed call is answered on either."""
    server = serve(extra)
    body = enrich("C02TEST00001", now=datetime.now(UTC))
    answer = httpx.post(
        f"http://127.0.0.1:{server.port}{PEOPLE}", content=body, headers=signed(body), timeout=5
    )
    assert (answer.status_code, answer.json()["allow"]) == (200, True)
    assert server.stop() == 0
    [listening] = [e for e in server.events() if e["event"] == "server.listening"]
    assert listening["event_loop"] == loop


def test_a_log_reader_that_stalls_never_stops_the_answers(tmp_path: Path) -> None:
    """stderr is a pipe nobody reads (a hung log shipper): once it is full, lines wait in the
    service while calls are still answered; when the pipe is read again, every line arrives."""
    port = _free_port()
    folder = tmp_path / "stalled"
    folder.mkdir()
    (folder / "inventory.csv").write_text(INVENTORY_CSV, encoding="utf-8")
    config = folder / "connector.toml"
    text = CONFIG.format(port=port, extra="", drain_period=0, hook_id=ENRICH_ID, secret=SECRET)
    config.write_text(text, encoding="utf-8")
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "serve", "--config", str(config)],
        cwd=folder,
        stdout=write_end,
        stderr=write_end,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    os.close(write_end)
    received = bytearray()

    def read_until(marker: bytes, count: int = 1) -> None:
        deadline = time.monotonic() + 20
        while received.count(marker) < count:
            assert time.monotonic() < deadline, received[-2000:].decode(errors="replace")
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(read_end, 1 << 16):
                    received.extend(chunk)
            time.sleep(0.02)

    server = Process(process, port, folder / "unused.log")
    try:
        read_until(b'"service.started"')
        # Nobody reads from here on; each refused call logs a line, some 20 pipes' worth in all.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(3000):
                refused = client.post(PEOPLE, content=b"x", headers={"X-Smallstep-Webhook-ID": "x"})
                assert refused.status_code == 401
            body = enrich("C02TEST00001", now=datetime.now(UTC))
            answer = client.post(PEOPLE, content=body, headers=signed(body))
            assert (answer.status_code, answer.json()["allow"]) == (200, True)
        read_until(b'"webhook.decision"')  # the pipe is read again: what waited arrives, in order
        events = [json.loads(line) for line in received.decode().splitlines()]
        names = [e["event"] for e in events]
        assert names.count("request.rejected") == 3000
        assert names.index("webhook.decision") > max(
            i for i, name in enumerate(names) if name == "request.rejected"
        )
    finally:
        assert server.stop() == 0
        os.close(read_end)


def test_a_taken_port_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    """Serving on a port already in use exits 2 with one `server.listen_failed` line."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = _launch(tmp_path, holder.getsockname()[1])
        assert server.process.wait(timeout=20) == 2
    [event] = server.events()
    assert (event["event"], event["level"], event["port"]) == (
        "server.listen_failed",
        "error",
        server.port,
    )
    assert "address already in use" in event["error"].lower()
