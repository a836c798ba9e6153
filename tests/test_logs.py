"""Logging: JSON lines through the real processor chain, request ids, and nothing sensitive."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import structlog

from connector.logs import JSON_OPTIONS, JsonLineRenderer, configure_logging, shown_escaped
from connector.logwriter import JsonLines
from connector.observe import USER_NAME_HIDDEN, kept_identifier
from connector.persistence import PERSISTENCE
from connector.store import AuditQuery
from tests.conftest import AppClient
from tests.helpers import AUTH_ID, SECRET, authorize, config, enrich, signed, webhook


class Lines:
    """The JSON events written to a configured in-memory stream."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]
        return [e for e in parsed if name is None or e["event"] == name]


@pytest.fixture
def json_logs() -> Iterator[Lines]:
    """configure_logging(json) into a buffer, undone after the test."""
    handlers, level = logging.root.handlers[:], logging.root.level
    lines = Lines()
    configure_logging("info", "json", stream=lines.stream)
    yield lines
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def test_json_events_carry_event_level_and_timestamp(json_logs: Lines) -> None:
    """Each line is one JSON object with the dotted event name, level, UTC timestamp and fields."""
    log = structlog.get_logger("connector")
    log.info("provider.loaded", provider="inventory", devices=3)
    log.debug("provider.lookup", provider="inventory")
    [event] = json_logs.events()
    assert event.pop("timestamp").endswith("Z")
    assert event == {
        "event": "provider.loaded",
        "level": "info",
        "provider": "inventory",
        "devices": 3,
    }


@pytest.mark.parametrize(
    ("fmt", "json_lines"), [("json", True), ("console", False), ("auto", True)], ids=str
)
def test_format_choice(fmt: str, json_lines: bool) -> None:
    """`json`, and `auto` off a terminal, write JSON lines; `console` writes for humans."""
    stream = io.StringIO()
    handlers = logging.root.handlers[:]
    try:
        configure_logging("info", fmt, stream=stream)  # type: ignore[arg-type]
        structlog.get_logger().info("service.started")
    finally:
        structlog.reset_defaults()
        logging.root.handlers[:] = handlers
    line = stream.getvalue().strip()
    assert "service.started" in line
    assert line.startswith("{") is json_lines


def _decisions(lines: Lines) -> list[dict[str, Any]]:
    return lines.events("webhook.decision")


async def test_request_id_is_bound_to_the_decision(json_logs: Lines, app_client: AppClient) -> None:
    """step-ca's X-Request-Id appears on `webhook.decision` and is gone after the request."""
    client = await app_client()
    body = enrich("C02TEST00001")
    response = await client.post(
        "/webhooks/people", data=body, headers=signed(body, request_id="req-7f3a")
    )
    assert response.status == 200
    structlog.get_logger().info("after.request")
    [decision] = _decisions(json_logs)
    assert decision["request_id"] == "req-7f3a"
    assert (decision["webhook"], decision["allow"], decision["identifier"]) == (
        "people",
        True,
        "C02TEST00001",
    )
    [after] = json_logs.events("after.request")
    assert "request_id" not in after


async def test_long_request_ids_are_truncated(json_logs: Lines, app_client: AppClient) -> None:
    """A request id is cut to 64 characters so a client cannot flood the log."""
    client = await app_client()
    body = enrich("C02TEST00001")
    headers = signed(body, request_id="r" * 500)
    assert (await client.post("/webhooks/people", data=body, headers=headers)).status == 200
    [decision] = _decisions(json_logs)
    assert decision["request_id"] == "r" * 64


@pytest.mark.parametrize("personal_data", [False, True], ids=["default", "personal-data"])
async def test_decision_log_holds_no_secret_csr_or_unasked_personal_data(
    json_logs: Lines, app_client: AppClient, inventory: Path, personal_data: bool
) -> None:
    """Secrets, signatures and the CSR never reach the log; e-mail only with personal_data."""
    mapping = config(
        inventory,
        webhooks=[webhook(enrichment={"personal_data": True})],
        logging={"personal_data": personal_data},
    )
    client = await app_client(mapping)
    body = enrich("C02TEST00001")
    headers = signed(body, request_id="req-1")
    response = await client.post("/webhooks/people", data=body, headers=headers)
    answer = await response.json()
    assert answer["allow"] is True
    assert "anika@example.com" in json.dumps(answer)  # the reply may carry it; the log may not
    csr = json.loads(body)["x509CertificateRequest"]
    [decision] = _decisions(json_logs)
    text = json_logs.text
    for sensitive in (SECRET, headers["X-Smallstep-Signature"], csr["raw"], csr["publicKey"]):
        assert sensitive not in text
    assert ("anika@example.com" in text) is personal_data
    assert ("email" in decision) is personal_data


async def test_rejections_are_logged_without_the_secret(
    json_logs: Lines, app_client: AppClient
) -> None:
    """A refused request logs `request.rejected` with its code and request id, not the secret."""
    client = await app_client()
    body = enrich("C02TEST00001")
    headers = signed(body, secret="d3Jvbmc=", request_id="req-bad")
    response = await client.post("/webhooks/people", data=body, headers=headers)
    assert response.status == 401
    [rejected] = json_logs.events("request.rejected")
    assert (rejected["code"], rejected["status"], rejected["request_id"]) == (
        "signature-invalid",
        401,
        "req-bad",
    )
    assert rejected["level"] == "warning"
    for sensitive in (SECRET, headers["X-Smallstep-Signature"]):
        assert sensitive not in json_logs.text


async def test_json_lines_escape_what_a_terminal_acts_on_but_json_leaves_raw(
    json_logs: Lines, app_client: AppClient
) -> None:
    """A request id with a C1 CSI and a bidi override (anyone may send one, before any check)
    is written as JSON escapes, so a log read in a terminal shows them; the parsed value is
    unchanged. (aiohttp refuses DEL in a header; the renderer escapes it too.)"""
    client = await app_client()
    sent = "\u009b2J\u202eevil"
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(  # raw: a well-behaved client refuses to send such a header
        b"POST /webhooks/people HTTP/1.1\r\nHost: x\r\nX-Request-Id: "
        + sent.encode()
        + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert (await reader.read()).startswith(b"HTTP/1.1 401")
    writer.close()
    [line] = [line for line in json_logs.text.splitlines() if "request.rejected" in line]
    assert re.search("[\x7f-\x9f\u202e]", line) is None, repr(line)
    assert "\\u009b2J\\u202eevil" in line
    assert json.loads(line)["request_id"] == sent
    assert (
        shown_escaped('{"a":"\x7f\u061c\u2066é"}'.encode())
        == b'{"a":"\\u007f\\u061c\\u2066\xc3\xa9"}'
    )


async def test_decision_line_explains_each_failed_rule(
    json_logs: Lines, app_client: AppClient, inventory: Path
) -> None:
    """A policy deny logs every failing rule with its code, message and the value it saw."""
    hooks = [webhook(policy={"supervised": True, "report": "all"})]
    client = await app_client(config(inventory, webhooks=hooks))
    body = enrich("C02TEST00002")
    assert (await client.post("/webhooks/people", data=body, headers=signed(body))).status == 200
    [decision] = _decisions(json_logs)
    assert (decision["allow"], decision["code"]) == (False, "device-unmanaged")
    assert decision["reasons"] == ["device-unmanaged", "device-unsupervised"]
    assert decision["failed_rules"] == [
        {
            "rule": "managed",
            "code": "device-unmanaged",
            "observed": "false",
            "message": "device is not managed",
        },
        {
            "rule": "supervised",
            "code": "device-unsupervised",
            "observed": "false",
            "message": "device is not supervised",
        },
    ]


async def test_invalid_identifier_is_logged_cut_short(
    json_logs: Lines, app_client: AppClient
) -> None:
    """An identifier that failed the shape check reaches the log cut to 64 characters."""
    client = await app_client()
    value = "<script>" + "A" * 500
    body = authorize(value)
    headers = signed(body, webhook_id=AUTH_ID)
    assert (await client.post("/webhooks/gate", data=body, headers=headers)).status == 200
    [decision] = _decisions(json_logs)
    assert (decision["code"], decision["identifier"]) == ("identifier-invalid", value[:64])
    assert "identifier_kind" not in decision
    assert value[:65] not in json_logs.text


def test_library_log_records_are_json_lines(json_logs: Lines) -> None:
    """A stdlib record (aiohttp, asyncio) is one JSON line: `library.message`, traceback inside."""
    try:
        raise ValueError("bad request line")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "10.0.0.1")
    logging.getLogger("aiohttp.server").info("below the level: dropped")
    lines = json_logs.text.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event.pop("timestamp").endswith("Z")
    assert "ValueError: bad request line" in event.pop("exception")
    assert event == {
        "event": "library.message",
        "level": "error",
        "logger": "aiohttp.server",
        "message": "Error handling request from 10.0.0.1",
    }


def _stock_json_line(method: str, event: dict[str, Any]) -> dict[str, Any]:
    """What structlog's own processors write for an event (the chain before JsonLineRenderer)."""
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(orjson.dumps, option=JSON_OPTIONS),
    ]
    for processor in processors:
        event = processor(None, method, event)
    return cast(dict[str, Any], orjson.loads(cast(bytes, event)))


class _Unrenderable:
    def __repr__(self) -> str:
        return "<unrenderable>"


class _Explains:
    def __structlog__(self) -> str:
        return "explained"


@pytest.mark.parametrize("method", ["info", "debug", "warning", "warn", "error", "exception"])
def test_json_line_renderer_writes_what_structlog_wrote(method: str) -> None:
    """Same keys in the same order, same values and level names; only the clock differs."""
    event = {
        "webhook": "gate",
        "allow": False,
        "reasons": ["device-unmanaged"],
        "failed_rules": [{"rule": "managed", "observed": None}],
        "latency_ms": 0.42,
        "odd": _Unrenderable(),
        "explained": _Explains(),
        "at": datetime(2026, 1, 2, tzinfo=UTC),
        "event": "webhook.decision",
        "request_id": "req-1",
    }
    ours = orjson.loads(JsonLineRenderer()(None, method, dict(event)))
    stock = _stock_json_line(method, dict(event))
    assert list(ours) == list(stock)
    assert ours.pop("timestamp")[:17] == stock.pop("timestamp")[:17]  # to the minute
    assert ours == stock


def test_json_line_renderer_keeps_exceptions_and_stacks() -> None:
    """An event with exc_info or stack_info still gets structlog's exception and stack text."""
    try:
        raise ValueError("boom")
    except ValueError:
        failed = orjson.loads(JsonLineRenderer()(None, "error", {"event": "x", "exc_info": True}))
    assert "ValueError: boom" in failed["exception"]
    assert "exc_info" not in failed
    stacked = orjson.loads(JsonLineRenderer()(None, "info", {"event": "y", "stack_info": True}))
    assert stacked["stack"].startswith("Stack (most recent call last):")


@pytest.mark.parametrize(
    "nanoseconds",
    [1_764_732_205_000_000_000, 1_764_732_205_000_000_999, 1_764_732_205_123_456_789, 0],
)
def test_json_line_timestamps_are_datetime_isoformat(nanoseconds: int) -> None:
    """The timestamp is `datetime.isoformat()` in UTC with Z, no fraction when it is zero."""
    renderer = JsonLineRenderer(clock_ns=lambda: nanoseconds)
    line = orjson.loads(renderer(None, "info", {"event": "x"}))
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanoseconds // 1000)
    assert line["timestamp"] == moment.isoformat().replace("+00:00", "Z")


async def _raw_post(client: Any, headers: list[bytes], body: bytes) -> bytes:
    """POST `body` to the people webhook with header lines written byte for byte."""
    head = [b"POST /webhooks/people HTTP/1.1", b"Host: localhost", b"Connection: close"]
    head += [*headers, b"Content-Length: " + str(len(body)).encode()]
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_header_that_is_not_utf8_is_refused_and_logged(
    json_logs: Lines, app_client: AppClient
) -> None:
    """A header that is not UTF-8 (aiohttp keeps its bytes as lone surrogates) is refused with
    its own code and logged as JSON with U+FFFD for the bytes, not turned into a 500."""
    client = await app_client()
    headers = [b"X-Smallstep-Webhook-ID: \xff\xfe-not-an-id", b"X-Smallstep-Signature: 00"]
    answer = await _raw_post(client, headers, enrich("C02TEST00001"))
    assert answer.startswith(b"HTTP/1.1 401 ")
    [rejected] = json_logs.events("request.rejected")
    assert rejected["code"] == "unknown-webhook"
    assert rejected["webhook_id"] == "\ufffd\ufffd-not-an-id"
    assert not json_logs.events("observe.hook_failed")


async def test_a_request_id_that_is_not_utf8_is_decided_logged_and_audited(
    json_logs: Lines, app_client: AppClient
) -> None:
    """step-ca's request id is only echoed: bytes that are not UTF-8 change nothing about the
    answer; the decision line and the audit log have U+FFFD in their place."""
    client = await app_client()
    body = enrich("C02TEST00001")
    headers = [f"{k}: {v}".encode() for k, v in signed(body).items() if k != "X-Request-Id"]
    answer = await _raw_post(client, [*headers, b"X-Request-Id: req-\xff"], body)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["allow"] is True
    [decision] = _decisions(json_logs)
    assert decision["request_id"] == "req-\ufffd"
    persistence = client.app[PERSISTENCE]
    await asyncio.wait_for(persistence.store.wait_ready(), timeout=30)
    await persistence.audit.aclose()  # flushes what is queued
    [entry] = await persistence.store.query_decisions(AuditQuery())
    assert entry.request_id == "req-\ufffd"
    assert not json_logs.events("observe.hook_failed")


def test_json_line_renderer_writes_lone_surrogates_as_u_fffd() -> None:
    """orjson refuses a lone surrogate; the line is written all the same (keys in order, NaN
    as null as orjson writes it), with U+FFFD in its place."""
    event = {"user": "a\udc80b", "ratio": float("nan"), "event": "x"}
    line = JsonLineRenderer()(None, "info", event)
    assert list(json.loads(line)) == ["user", "ratio", "event", "level", "timestamp"]
    assert json.loads(line)["user"] == "a\ufffdb"
    assert json.loads(line)["ratio"] is None


@pytest.fixture
def piped_logs() -> Iterator[tuple[int, JsonLines]]:
    """configure_logging(json) into a pipe (its read end, non-blocking), with 16 KiB of lines
    allowed to wait; undone after the test."""
    handlers, level = logging.root.handlers[:], logging.root.level
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    configure_logging("info", "json", stream=stream, max_pending=16 * 1024)
    lines = structlog.get_config()["logger_factory"]()
    yield read_end, lines
    lines.close()
    structlog.reset_defaults()
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)
    stream.close()
    os.close(read_end)


def _read(read_end: int, into: bytearray) -> list[dict[str, Any]]:
    """Every whole line arrived so far (the writer may be part-way through the next one)."""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(read_end, 1 << 16):
            into.extend(chunk)
    whole = into[: into.rfind(b"\n") + 1]
    return [json.loads(line) for line in whole.decode().splitlines()]


async def test_lines_a_stalled_stream_cannot_take_are_dropped_counted_and_reported(
    piped_logs: tuple[int, JsonLines],
) -> None:
    """A pipe nobody reads: logging never blocks the event loop; past `max_pending` lines are
    dropped, and once the pipe is read again the lines that waited arrive in order, followed by
    `log.lines_dropped` with how many went."""
    read_end, _ = piped_logs
    log = structlog.get_logger("test")
    for index in range(2000):  # some 300 KiB: the pipe holds 64 KiB (a blocked loop hangs here)
        log.info("test.line", index=index, padding="x" * 100)
        if index % 50 == 49:
            await asyncio.sleep(0)  # a loop iteration ends: its lines are written or handed over
    received = bytearray()
    async with asyncio.timeout(10):
        while not [e for e in _read(read_end, received) if e["event"] == "log.lines_dropped"]:  # noqa: ASYNC110 - a pipe
            await asyncio.sleep(0.01)
    async with asyncio.timeout(10):  # until every line is written or reported dropped
        while _accounted(_read(read_end, received)) < 2000:  # noqa: ASYNC110 - a pipe
            await asyncio.sleep(0.01)
    events = _read(read_end, received)
    reports = [e for e in events if e["event"] == "log.lines_dropped"]
    assert {(e["level"], e["max_pending"]) for e in reports} == {("warning", 16 * 1024)}
    expected = 0  # each report stands where its lines were lost
    for event in events:
        if event["event"] == "log.lines_dropped":
            expected += event["dropped"]
        else:
            assert event["index"] == expected
            expected += 1
    assert expected == 2000


def _accounted(events: list[dict[str, Any]]) -> int:
    """Lines written, plus lines reported dropped."""
    return sum(e["dropped"] if e["event"] == "log.lines_dropped" else 1 for e in events)


async def test_a_line_from_another_thread_is_written_while_the_loop_is_busy(
    piped_logs: tuple[int, JsonLines],
) -> None:
    """The watchdog reports a stalled loop from its thread: that line (and the loop's lines
    before it, in order) is written at once, not when the loop next runs."""
    read_end, _ = piped_logs
    log = structlog.get_logger("test")
    log.info("on.loop")  # due at the end of this loop iteration, which has not come
    thread = threading.Thread(target=lambda: log.warning("from.thread"))
    thread.start()
    thread.join(5)
    assert [e["event"] for e in _read(read_end, bytearray())] == ["on.loop", "from.thread"]


def test_a_line_logged_while_the_writer_holds_its_lock_does_not_deadlock(
    piped_logs: tuple[int, JsonLines],
) -> None:
    """A garbage collection inside the writer's critical section may run a destructor that
    logs: the lock is re-entrant, so that line is written rather than waiting for ever."""
    read_end, lines = piped_logs

    def nested() -> None:
        with lines._lock:  # as during a flush
            logging.getLogger("gc").error("from a destructor")

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    [event] = _read(read_end, bytearray())
    assert (event["event"], event["message"]) == ("library.message", "from a destructor")


def test_a_library_record_with_a_unicode_line_break_stays_one_json_line(
    json_logs: Lines,
) -> None:
    """U+2028 in a stdlib record (a peer's text in an exception) is inside its JSON line."""
    logging.getLogger("aiohttp.server").error("before\u2028after")
    [line] = json_logs.text.split("\n")[:-1]
    assert json.loads(line)["message"] == "before\u2028after"


def test_library_records_take_no_lock_besides_the_writers(json_logs: Lines) -> None:
    """The stdlib's handler holds no lock of its own: with two locks, a destructor logging
    through it during a collection inside the writer could deadlock two threads."""
    [handler] = [
        h
        for h in logging.root.handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    assert handler.lock is None
    logging.getLogger("aiohttp.server").warning("still written")
    assert json.loads(json_logs.text)["message"] == "still written"


@pytest.mark.usefixtures("restore_logging")
async def test_console_lines_escape_control_characters_callers_chose(
    app_client: AppClient,
) -> None:
    """The console format (a terminal, the quickstart) writes values a caller chose with their
    control characters escaped: a C1 CSI in any caller's ``X-Request-Id`` before verification,
    ESC sequences in a signed call's identifier. Only the renderer's own colours remain."""
    out = io.StringIO()
    configure_logging("info", "console", out)
    client = await app_client()
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        b"POST /webhooks/people HTTP/1.1\r\nHost: x\r\nX-Request-Id: \xc2\x9b2J\xc2\x9bH\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert (await reader.read()).startswith(b"HTTP/1.1 401")
    writer.close()
    body = enrich("\x1b]0;owned\x07\x1b[2J\x1b[1A\x1b[2K")
    response = await client.post(
        "/webhooks/people", data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
    )
    assert response.status == 200
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # the renderer's own colours
    rejected = [line for line in text.splitlines() if "request.rejected" in line]
    decided = [line for line in text.splitlines() if "webhook.decision" in line]
    assert rejected
    assert decided
    controls = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
    assert controls.search(rejected[0]) is None, repr(rejected[0])
    assert controls.search(decided[0]) is None, repr(decided[0])
    assert "\\x9b2J" in rejected[0]
    assert "\\x1b]0;owned" in decided[0]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_a_log_reader_that_is_gone_fails_no_answer(app_client: AppClient, fmt: str) -> None:
    """The log shipper died (the pipe's reader is closed), or the terminal hung up: every write
    fails, and no answer may (the console format wrote straight to the stream and failed every
    call with a 500)."""
    client = await app_client()
    reader, writer = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(writer, "w"), write_through=True)
    configure_logging("info", fmt, stream)  # type: ignore[arg-type]
    os.close(reader)
    try:
        for serial in ("C02TEST00001", "C02TEST00002"):
            body = enrich(serial)
            response = await client.post("/webhooks/people", data=body, headers=signed(body))
            assert response.status == 200
            assert "allow" in await response.json()
    finally:
        with contextlib.suppress(OSError):
            stream.close()


@pytest.mark.parametrize(
    ("value", "personal_data", "kept"),
    [
        ("C02TEST00001", False, "C02TEST00001"),
        ("anika@contoso.example", False, USER_NAME_HIDDEN),
        ("anika@contoso.example", True, "anika@contoso.example"),
        ("a" * 70 + "@contoso.example", False, USER_NAME_HIDDEN),  # the @ past what is kept
        ("x" * 70, False, "x" * 64),
        (None, False, None),
    ],
)
def test_an_identifier_naming_a_person_is_kept_only_with_personal_data(
    value: str | None, personal_data: bool, kept: str | None
) -> None:
    assert kept_identifier(value, personal_data=personal_data) == kept


@pytest.mark.usefixtures("restore_logging")
def test_a_library_traceback_stays_whole_in_the_console_format() -> None:
    """A library's record and its chained traceback come out together, blank lines kept."""
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        try:
            raise KeyError("first")
        except KeyError as exc:
            raise ValueError("second") from exc
    except ValueError:
        logging.getLogger("some.library").exception("it broke")
    text = stream.getvalue()
    assert "\n\nThe above exception was the direct cause of the following exception:\n\n" in text
