"""CSV and JSON inventories: schema, errors with file:line, lookups, reload and its failures."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from structlog.testing import capture_logs

from providers.base import DeviceRecord, GroupRef, ProviderNotReady, UserRecord
from providers.files import (
    CsvSettings,
    FileProvider,
    InventoryFileError,
    InventoryIndex,
    JsonSettings,
    build_index,
    parse_csv,
    parse_json,
)
from providers.files._build import build_image
from providers.files._load import _Grown, job_for, load_index, run_job
from providers.files._provider import UNSETTLED_POLLS
from providers.identifiers import DeviceIdentifier, IdentifierKind, classify

HEADER = "serial,udid,name,managed,supervised,last_contact,username,email,groups"


_T = TypeVar("_T")


def _serial(value: str) -> DeviceIdentifier:
    return classify(value, frozenset({IdentifierKind.SERIAL}))


SETTLE = 0.05  # the settle wait of the tests' providers (the service's is 1 s)


def _csv_provider(
    path: Path,
    *,
    reload_interval: float = 0,
    process_above: int = 1 << 20,
    settle_wait: float = SETTLE,
) -> FileProvider:
    settings = CsvSettings(kind="csv", path=path, reload_interval=reload_interval)
    return FileProvider("inv", settings, process_above=process_above, settle_wait=settle_wait)


async def _settled_reload(provider: FileProvider) -> bool:
    """One poll: it notices the change, sees it unchanged after the settle wait and loads it."""
    return await provider.reload()


def _replace(path: Path, text: str) -> None:
    """What exporters are told to do: write a temporary file beside it, rename it over."""
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(text, encoding="utf-8")
    staged.replace(path)


@pytest.fixture
async def csv_provider(tmp_path: Path) -> AsyncIterator[tuple[FileProvider, Path]]:
    """A started CSV provider (no watcher) over a two-device file."""
    path = tmp_path / "inventory.csv"
    path.write_text(f"{HEADER}\nC02A00000001,,old,true,,,,,\nC02A00000002,,two,true,,,,,\n")
    provider = _csv_provider(path)
    await provider.start()
    yield provider, path
    await provider.aclose()


def test_csv_schema_is_parsed_into_records() -> None:
    """Booleans, dates, user columns and the delimited `groups` list map onto the record."""
    text = (
        f"{HEADER}\n"
        "C02A00000001,,MBP,TRUE,0,2026-11-20T09:26:41Z,asharma,a@example.com, All ; MDA Pilot ;\n"
        ",00008110-000A1C2E3F40801E,Phone,yes,no,2026-11-21,,,\n"
    )
    rows = parse_csv(text, source="inv.csv")
    index = build_index(rows, provider="inv", source="inv.csv")
    mac = index["C02A00000001"]
    assert mac == DeviceRecord(
        provider="inv",
        serial="C02A00000001",
        name="MBP",
        managed=True,
        supervised=False,
        last_contact=datetime(2026, 11, 20, 9, 26, 41, tzinfo=UTC),
        user=UserRecord(username="asharma", email="a@example.com"),
        groups=(GroupRef("All"), GroupRef("MDA Pilot")),
    )
    phone = index["00008110-000A1C2E3F40801E"]
    assert (phone.managed, phone.supervised, phone.user, phone.groups) == (True, False, None, ())
    assert phone.last_contact == datetime(2026, 11, 21, tzinfo=UTC)
    assert [line for line, _ in rows] == [2, 3]


def test_csv_group_delimiter_is_configurable() -> None:
    """`group_delimiter` splits the groups cell, so group names may contain semicolons."""
    rows = parse_csv("serial,groups\nC02A00000001,A;1|B\n", source="x", group_delimiter="|")
    assert rows[0][1].to_record("inv").groups == (GroupRef("A;1"), GroupRef("B"))


def test_blank_csv_rows_are_skipped() -> None:
    """Rows of empty cells (spreadsheet padding) are no device; blank cells are unreported."""
    text = "serial,managed,name\nC02A00000001, ,a\n,,\n , ,  \nC02A00000002,true,b\n"
    rows = parse_csv(text, source="inv.csv")
    assert [(line, row.serial, row.managed) for line, row in rows] == [
        (2, "C02A00000001", None),
        (5, "C02A00000002", True),
    ]


def test_json_schema_accepts_group_names_and_objects() -> None:
    """JSON devices carry a nested user and groups as names or objects with id and smart."""
    document = {
        "devices": [
            {
                "serial": "C02A00000001",
                "managed": True,
                "owner_type": "company",
                "last_contact": "2026-11-20T10:00:00+01:00",
                "user": {"username": "bkim", "department": "Finance"},
                "groups": ["All", {"name": "Pilot", "id": "7", "smart": True}],
            }
        ]
    }
    [(line, row)] = parse_json(json.dumps(document, indent=2), source="inv.json")
    record = row.to_record("inv")
    assert line == 3
    assert record.user == UserRecord(username="bkim", department="Finance")
    assert record.groups == (GroupRef("All"), GroupRef("Pilot", id="7", smart=True))
    assert record.last_contact == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert record.owner_type == "company"


def test_json_bare_list_is_accepted() -> None:
    """A JSON file may be a bare list of device objects."""
    rows = parse_json('[{"udid": "4a6ec46c7aaf514cc1abf85c37a87fd0fda903e4"}]', source="x")
    assert rows[0][1].udid == "4a6ec46c7aaf514cc1abf85c37a87fd0fda903e4"


CSV_ERRORS = [
    ("serial,colour\nC02A00000001,red\n", "inv.csv:1: unknown column(s) colour"),
    (
        "serial,managed\nC02A00000001,true\nC02A00000002,maybe\n",
        "inv.csv:3: managed: Input should be a valid boolean",
    ),
    (
        "serial,last_contact\nC02A00000001,yesterday\n",
        "inv.csv:2: last_contact: Input should be a valid datetime",
    ),
    (
        "serial,name\nC02A00000001,a\n,nameless\n",
        "inv.csv:3: a device needs a serial or a udid",
    ),
    ("serial,name\nC02A00000001,a,extra\n", "inv.csv:2: more fields than header columns"),
    (
        "serial,owner_type\nC02A00000001,rented\n",
        "inv.csv:2: owner_type: Input should be 'company' or 'personal'",
    ),
    # Which of two cells counts would be a guess; a short row even let the fast loader serve
    # one the reference never checked (managed, and a group, from the first copy).
    (
        "serial,groups,managed,name,managed,groups\nC02A00000001,Admins,true\n",
        "inv.csv:1: column(s) named twice: groups, managed",
    ),
    ("serial,managed,name,managed\nC02A00000001,perhaps\n", "inv.csv:1: column(s) named twice"),
    # An exporter that truncated the file and has not written it yet: not "no devices".
    ("", "inv.csv:1: no header line"),
    ("\n", "inv.csv:1: no header line"),
    ("name,managed\nMBP,true\n", "inv.csv:1: no serial or udid column"),
    # Longer than the csv module reads: the fast loader split it, then lookups raised.
    (f"serial,name\nC02A00000001,{'x' * 140_000}\n", "inv.csv:2: field larger than field limit"),
    (f'serial,name\nC02A00000001,"{"x" * 140_000}"\n', "inv.csv:2: field larger than field limit"),
    # A file named by mistake: its first line is not quoted into the logs.
    (
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\nserial\n",
        "inv.csv:1: unknown column(s) 1 not shown (not like a column name",
    ),
    # A record over several lines is named by the line it starts on.
    (
        'serial,name\nC02A00000001,"two\nlines"\nC02A00000002,x,extra\n',
        "inv.csv:4: more fields than header columns",
    ),
    ('serial,name\nC02A00000001,"two\nlines",extra\n', "inv.csv:2: more fields than header"),
]
CSV_ERROR_IDS = [
    "unknown-column",
    "bad-boolean",
    "bad-date",
    "no-identifier",
    "extra-field",
    "bad-owner",
    "repeated-column-short-row",
    "repeated-column",
    "empty-file",
    "blank-header",
    "no-identifier-column",
    "long-cell",
    "long-quoted-cell",
    "not-a-header",
    "after-a-multi-line-record",
    "multi-line-record",
]


@pytest.mark.parametrize(("text", "message"), CSV_ERRORS, ids=CSV_ERROR_IDS)
def test_csv_errors_name_file_and_line(text: str, message: str) -> None:
    """Every CSV error starts with file:line and says what is wrong."""
    with pytest.raises(InventoryFileError) as info:
        parse_csv(text, source="inv.csv")
    assert str(info.value).startswith(message)


def test_a_duplicate_after_a_multi_line_record_names_where_each_starts() -> None:
    rows = parse_csv('serial,name\nC02A00000001,"a\nb\nc"\nc02a00000001,x\n', source="inv.csv")
    with pytest.raises(
        InventoryFileError, match=r"^inv\.csv:5: identifier c02a00000001 already on line 2$"
    ):
        build_index(rows, provider="inv", source="inv.csv")


def test_duplicate_serial_names_both_lines() -> None:
    """A serial listed twice (in any case) is refused, naming the second and the first line."""
    rows = parse_csv("serial\nC02A00000001\nC02A00000002\nc02a00000001\n", source="inv.csv")
    with pytest.raises(
        InventoryFileError, match=r"^inv\.csv:4: identifier c02a00000001 already on line 2$"
    ):
        build_index(rows, provider="inv", source="inv.csv")


JSON_ERRORS = [
    (
        '{\n  "devices": [\n    {"serial": "C02A00000001",}\n  ]\n}',
        "inv.json:3: Expecting property name",
    ),
    (
        '{\n  "devices": [\n    {"serial": "C02A00000001"},\n\n    {"serial": "C02A00000002",'
        ' "managed": "perhaps"}\n  ]\n}',
        "inv.json:5: devices[1].managed: Input should be a valid boolean",
    ),
    (
        '{"devices": [\n  {"serial": "C02A00000001"},\n  "C02A00000002"\n]}',
        "inv.json:3: devices[1] is not an object",
    ),
    (
        '{"devices": [\n  {"name": "nameless"}\n]}',
        "inv.json:2: a device needs a serial or a udid",
    ),
    ('{"devices": [], "extra": 1}', "inv.json:1: unknown top-level key(s) extra"),
    (
        '{"devices": [\n  {"serial": "C02A00000001", "colour": "red"}\n]}',
        "inv.json:2: devices[0].colour: Extra inputs",
    ),
    ('{"devices": {}}', 'inv.json:1: expected {"devices": [...]}'),
    (
        '{"devices": [\n  {"serial": "C02A00000001",\n   "asset": ' + "9" * 5000 + "}\n]}",
        "inv.json:3: a number of more than 4,300 digits",
    ),
    (
        '{"devices": [\n  {"serial": "C02A00000001", "name": "[[[["},\n'
        + '  {"serial": "C02A00000002", "x": '
        + "[" * 5000
        + "]" * 5000
        + "}\n]}",
        "inv.json:3: arrays and objects nested more than 512 deep",
    ),
]
JSON_ERROR_IDS = [
    "syntax",
    "bad-boolean",
    "not-object",
    "no-identifier",
    "top-level-key",
    "unknown-key",
    "not-list",
    "long-number",
    "too-deep",
]


@pytest.mark.parametrize(("text", "message"), JSON_ERRORS, ids=JSON_ERROR_IDS)
def test_json_errors_name_file_and_line(text: str, message: str) -> None:
    """Every JSON error starts with file:line; device errors name devices[i] and its line."""
    with pytest.raises(InventoryFileError) as info:
        parse_json(text, source="inv.json")
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "value",
    ["C02A00000001", "00008110-000a1c2e3f40801e", "00008110-000A1C2E3F40801E"],
    ids=["serial", "udid-lower", "udid-upper"],
)
async def test_lookup_is_case_insensitive(tmp_path: Path, value: str) -> None:
    """Serials and UDIDs match whatever case the file and the attestation use."""
    path = tmp_path / "inv.csv"
    path.write_text("serial,udid\nc02a00000001,\n,00008110-000a1c2e3f40801e\n", encoding="utf-8")
    provider = _csv_provider(path)
    await provider.start()
    try:
        record = await provider.lookup(classify(value))
    finally:
        await provider.aclose()
    assert record is not None
    assert record.provider == "inv"


@pytest.mark.parametrize("process_above", [1 << 30, 0], ids=["in-process", "worker"])
async def test_json_surrogate_escape_loads_as_u_fffd(tmp_path: Path, process_above: int) -> None:
    """A ``\\udc80`` escape in a JSON inventory (Python keeps it as a lone surrogate) loads
    with U+FFFD in its place, as for an upstream's JSON, instead of failing the load."""
    path = tmp_path / "inv.json"
    document = (
        '{"devices": [{"serial": "C02A00000001", "name": "Mac\\udc80", "groups": ["g\\ud800"]}]}'
    )
    path.write_text(document, encoding="utf-8")
    settings = JsonSettings(kind="json", path=path, reload_interval=0)
    provider = FileProvider("inv", settings, process_above=process_above)
    await provider.start()
    try:
        record = await provider.lookup(_serial("C02A00000001"))
    finally:
        await provider.aclose()
    assert record is not None
    assert record.name == "Mac\ufffd"
    assert [g.name for g in record.groups] == ["g\ufffd"]


async def test_unknown_device_is_none(csv_provider: tuple[FileProvider, Path]) -> None:
    """A device missing from the file is an answer (None), not an error."""
    provider, _ = csv_provider
    assert await provider.lookup(_serial("C02A00000009")) is None
    assert provider.ready
    assert provider.device_count == 2


async def test_excel_bom_is_ignored(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (as Excel writes) does not turn the first column unknown."""
    csv_path = tmp_path / "inv.csv"
    csv_path.write_bytes("\ufeffserial,name\nC02A00000001,a\n".encode())
    json_path = tmp_path / "inv.json"
    json_path.write_bytes('\ufeff{"devices": [{"serial": "C02A00000002"}]}'.encode())
    providers = [
        _csv_provider(csv_path),
        FileProvider("inv", JsonSettings(kind="json", path=json_path, reload_interval=0)),
    ]
    for provider in providers:
        await provider.start()
        await provider.aclose()
    assert await providers[0].lookup(_serial("C02A00000001")) is not None
    assert await providers[1].lookup(_serial("C02A00000002")) is not None


async def test_good_edit_is_picked_up(csv_provider: tuple[FileProvider, Path]) -> None:
    """A reload after a valid edit swaps in the new inventory."""
    provider, path = csv_provider
    path.write_text(f"{HEADER}\nC02A00000001,,renamed,false,,,,,\nC02A00000003,,three,true,,,,,\n")
    with capture_logs() as logs:
        assert await _settled_reload(provider) is True
    record = await provider.lookup(_serial("C02A00000001"))
    assert record is not None
    assert (record.name, record.managed) == ("renamed", False)
    assert await provider.lookup(_serial("C02A00000002")) is None
    assert await provider.lookup(_serial("C02A00000003")) is not None
    assert {
        "event": "provider.loaded",
        "provider": "inv",
        "path": str(path),
        "devices": 2,
        "log_level": "info",
    } in logs


async def test_unchanged_file_is_not_reparsed(csv_provider: tuple[FileProvider, Path]) -> None:
    """A reload with an unchanged file reports no swap."""
    provider, _ = csv_provider
    assert await provider.reload() is False


async def test_broken_edit_keeps_last_good_inventory(
    csv_provider: tuple[FileProvider, Path],
) -> None:
    """A broken edit is logged once with its line and the previous inventory stays in use."""
    provider, path = csv_provider
    path.write_text(f"{HEADER}\nC02A00000001,,new,true,,,,,\nC02A00000002,,two,sometimes,,,,,\n")
    with capture_logs() as logs:
        assert await _settled_reload(provider) is False
        assert await provider.reload() is False
    failures = [e for e in logs if e["event"] == "provider.reload_failed"]
    assert len(failures) == 1
    assert failures[0]["error"].startswith(f"{path}:3: managed:")
    assert failures[0]["kept"] == "previous"
    assert failures[0]["log_level"] == "error"
    record = await provider.lookup(_serial("C02A00000001"))
    assert record is not None
    assert record.name == "old"
    assert provider.ready

    path.write_text(f"{HEADER}\nC02A00000001,,fixed,true,,,,,\n")
    assert await _settled_reload(provider) is True
    fixed = await provider.lookup(_serial("C02A00000001"))
    assert fixed is not None
    assert fixed.name == "fixed"


async def test_a_version_that_could_not_be_read_is_read_again(
    csv_provider: tuple[FileProvider, Path],
) -> None:
    """A read that fails for the reader (out of file descriptors here; a permission fixed by
    chmod, an I/O error) says nothing about the file: its version is read at the next poll. It
    was remembered as broken, so a device removed in it stayed allowed until the next edit."""
    provider, path = csv_provider
    _replace(path, f"{HEADER}\nC02A00000001,,new,true,,,,,\n")  # C02A00000002 removed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)  # a new descriptor takes the lowest free
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # none below: no new one
    try:
        with capture_logs() as logs:
            assert await provider.reload() is False
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [e["event"] for e in logs] == ["provider.reload_failed"]
    assert await provider.lookup(_serial("C02A00000002")) is not None  # the last good one
    assert await provider.reload() is True  # the same, unchanged version
    assert await provider.lookup(_serial("C02A00000002")) is None


async def test_deleted_file_keeps_last_good_inventory(
    csv_provider: tuple[FileProvider, Path],
) -> None:
    """A file removed after loading leaves the service answering from the last inventory."""
    provider, path = csv_provider
    path.unlink()
    with capture_logs() as logs:
        assert await provider.reload() is False
    assert [e["event"] for e in logs] == ["provider.file_missing"]
    assert await provider.lookup(_serial("C02A00000001")) is not None


async def test_missing_file_at_start_is_not_ready(tmp_path: Path) -> None:
    """A missing file at start raises ProviderNotReady; lookups fail until the file appears."""
    path = tmp_path / "later.csv"
    provider = _csv_provider(path)
    with capture_logs() as logs, pytest.raises(ProviderNotReady, match=r"later\.csv"):
        await provider.start()
    try:
        assert not provider.ready
        assert [e["event"] for e in logs] == ["provider.load_failed"]
        with pytest.raises(ProviderNotReady):
            await provider.lookup(_serial("C02A00000001"))
        path.write_text("serial\nC02A00000001\n", encoding="utf-8")
        assert await _settled_reload(provider) is True
        assert provider.ready
    finally:
        await provider.aclose()


async def test_watcher_reloads_a_changed_file(tmp_path: Path) -> None:
    """With a reload interval the provider notices an edit by itself."""
    path = tmp_path / "inv.csv"
    path.write_text("serial,name\nC02A00000001,before\n", encoding="utf-8")
    provider = _csv_provider(path, reload_interval=0.01)
    await provider.start()
    try:
        path.write_text("serial,name\nC02A00000001,after-the-edit\n", encoding="utf-8")

        async def renamed() -> None:
            # Polls the provider's state: the watcher has no event to wait on.
            while (record := await provider.lookup(_serial("C02A00000001"))) is None or (  # noqa: ASYNC110
                record.name != "after-the-edit"
            ):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(renamed(), timeout=5)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("process_above", [1 << 20, 0], ids=["thread", "process"])
async def test_lookups_during_reload_see_old_or_new(tmp_path: Path, process_above: int) -> None:
    """The index is swapped whole: a lookup mid-reload sees the old or the new file, never a mix."""
    count = 3000

    def inventory(version: str) -> str:
        rows = "".join(f"C02A{n:08d},{version}\n" for n in range(count))
        return f"serial,name\n{rows}"

    path = tmp_path / "inv.csv"
    path.write_text(inventory("old"), encoding="utf-8")
    provider = _csv_provider(path, process_above=process_above)
    await provider.start()
    path.write_text(inventory("newer"), encoding="utf-8")
    reload = asyncio.create_task(provider.reload())
    seen: list[tuple[str | None, str | None]] = []
    while not reload.done():
        first = await provider.lookup(_serial("C02A00000000"))
        last = await provider.lookup(_serial(f"C02A{count - 1:08d}"))
        seen.append((first.name if first else None, last.name if last else None))
        await asyncio.sleep(0)
    assert await reload is True
    await provider.aclose()
    assert seen, "no lookup ran while the reload was in progress"
    assert set(seen) <= {("old", "old"), ("newer", "newer")}
    final = await provider.lookup(_serial("C02A00000000"))
    assert final is not None
    assert final.name == "newer"


LOST = "serial,name,groups\nC02A00000001,mac,Lost or Stolen\n"


class _Clock:
    """A hand-moved monotonic clock for the grace period."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _vanished(tmp_path: Path, grace: float, clock: _Clock) -> tuple[FileProvider, Path]:
    """A started provider (no watcher) whose file was then deleted."""
    path = tmp_path / "inv.csv"
    path.write_text(LOST, encoding="utf-8")
    settings = CsvSettings(kind="csv", path=path, reload_interval=0, missing_grace=grace)
    provider = FileProvider("inv", settings, clock=clock, settle_wait=SETTLE)
    await provider.start()
    path.unlink()
    return provider, path


async def test_file_rewritten_in_place_is_loaded_only_once_settled(tmp_path: Path) -> None:
    """A writer that truncates and pauses mid-row, for less than the settle wait, is not read
    half-way; the finished file is loaded at the next poll, unchanged since."""
    path = tmp_path / "inv.csv"
    path.write_text(LOST, encoding="utf-8")
    provider = _csv_provider(path, settle_wait=0.5)
    await provider.start()
    with path.open("r+", encoding="utf-8") as writer:  # same inode: an in-place rewrite
        writer.truncate(0)
        writer.write("serial,name,groups\nC02A00000001,mac,Lost or")
        writer.flush()
        poll = asyncio.create_task(provider.reload())
        await asyncio.sleep(0.1)  # the poll noticed the change and waits for it to settle
        writer.write(" Found;Pilot\n")
        writer.flush()
        assert await poll is False
        record = await provider.lookup(_serial("C02A00000001"))
        assert record is not None
        assert record.groups == (GroupRef("Lost or Stolen"),)
    assert await provider.reload() is True
    record = await provider.lookup(_serial("C02A00000001"))
    assert record is not None
    assert record.groups == (GroupRef("Lost or Found"), GroupRef("Pilot"))


class _Reading(ThreadPoolExecutor):
    """The loop's default executor, which says (on the loop, as the job is handed over) when a
    job arrives: the moment a poll starts reading the file on a thread."""

    def __init__(self, started: asyncio.Event) -> None:
        super().__init__(max_workers=1)
        self._started = started

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        """Say so, then run `fn` as any executor does."""
        self._started.set()
        return super().submit(fn, *args, **kwargs)


async def test_file_changed_while_reading_is_discarded(tmp_path: Path) -> None:
    """A load whose stat after the read differs from the one before it keeps the old inventory."""
    path = tmp_path / "inv.csv"
    path.write_text(LOST, encoding="utf-8")
    provider = _csv_provider(path, settle_wait=0)  # only the stamp across the read is checked
    await provider.start()
    path.write_text("serial,name,groups\nC02A00000001,mac,Pilot\n", encoding="utf-8")
    reading = asyncio.Event()
    asyncio.get_running_loop().set_default_executor(_Reading(reading))  # a small file's read
    reload = asyncio.create_task(provider.reload())
    await reading.wait()  # the poll took its stamps and hands the read to a thread
    with path.open("a", encoding="utf-8") as writer:
        writer.write("C02A00000002,half")
    assert await reload is False
    record = await provider.lookup(_serial("C02A00000001"))
    assert record is not None
    assert record.groups == (GroupRef("Lost or Stolen"),)
    assert await provider.reload() is True  # the new stamp is unchanged at this poll
    assert await provider.lookup(_serial("C02A00000002")) is not None


async def test_renamed_file_is_loaded_at_the_poll_that_notices_it(tmp_path: Path) -> None:
    """A file renamed over the inventory (atomic) is loaded by the poll that notices it."""
    path = tmp_path / "inv.csv"
    path.write_text(LOST, encoding="utf-8")
    provider = _csv_provider(path)
    await provider.start()
    _replace(path, "serial,name\nC02A00000002,new\n")
    assert await provider.reload() is True
    assert await provider.lookup(_serial("C02A00000001")) is None
    assert await provider.lookup(_serial("C02A00000002")) is not None


async def test_file_replaced_between_every_poll_is_loaded(tmp_path: Path) -> None:
    """An exporter that renames a new copy over the file more often than the polls come (the
    same content each time) does not keep the change out: each poll loads what it noticed."""
    path = tmp_path / "inv.csv"
    path.write_text(f"{HEADER}\nC02A00000001,,mac,true,,,,,\n", encoding="utf-8")
    provider = _csv_provider(path)
    await provider.start()
    unmanaged = f"{HEADER}\nC02A00000001,,mac,false,,,,,\n"
    loads = []
    for _ in range(3):
        _replace(path, unmanaged)  # a new inode before every poll
        loads.append(await provider.reload())
    assert loads == [True, True, True]
    record = await provider.lookup(_serial("C02A00000001"))
    assert record is not None
    assert record.managed is False


async def test_file_that_never_settles_is_logged_once(tmp_path: Path) -> None:
    """A change that keeps changing through every poll's settle wait is not loaded, and that is
    logged once after UNSETTLED_POLLS polls; once it stops changing the next poll loads it."""
    path = tmp_path / "inv.csv"
    path.write_text(LOST, encoding="utf-8")
    provider = _csv_provider(path, settle_wait=0.3)
    await provider.start()
    with capture_logs() as logs:
        for n in range(1, UNSETTLED_POLLS + 2):
            rows = "".join(f"C02B{i:08d},before,\n" for i in range(n))
            path.write_text(f"serial,name,groups\n{rows}", encoding="utf-8")
            poll = asyncio.create_task(provider.reload())
            await asyncio.sleep(0.1)  # within the poll's settle wait: the writer goes on
            path.write_text(f"serial,name,groups\n{rows}C02B99999999,busy,\n", encoding="utf-8")
            assert await poll is False
    record = await provider.lookup(_serial("C02A00000001"))
    assert record is not None
    assert record.groups == (GroupRef("Lost or Stolen"),)
    warnings = [e for e in logs if e["log_level"] != "debug"]
    assert warnings == [
        {
            "event": "provider.reload_unsettled",
            "provider": "inv",
            "path": str(path),
            "polls": UNSETTLED_POLLS,
            "kept": "previous",
            "log_level": "warning",
        }
    ]
    assert await provider.reload() is True  # unchanged since the last poll: settled
    assert await provider.lookup(_serial("C02B99999999")) is not None


async def test_vanished_file_serves_within_grace_and_logs_once(tmp_path: Path) -> None:
    """Within `missing_grace` the last inventory serves; the vanishing is logged once, not per poll."""
    clock = _Clock()
    provider, path = await _vanished(tmp_path, 300, clock)
    with capture_logs() as logs:
        for _ in range(5):
            clock.now += 59
            assert await provider.reload() is False
    assert provider.ready
    assert await provider.lookup(_serial("C02A00000001")) is not None
    assert logs == [
        {
            "event": "provider.file_missing",
            "provider": "inv",
            "path": str(path),
            "error": f"{path}: No such file or directory",
            "grace": 300,
            "log_level": "warning",
        }
    ]


async def test_vanished_file_fails_closed_after_grace(tmp_path: Path) -> None:
    """After `missing_grace` lookups raise ProviderNotReady; the file's return makes it ready again."""
    clock = _Clock()
    provider, path = await _vanished(tmp_path, 300, clock)
    with capture_logs() as logs:
        assert await provider.reload() is False
        clock.now += 300
        for _ in range(3):
            assert await provider.reload() is False
            clock.now += 60
    assert not provider.ready
    with pytest.raises(ProviderNotReady, match="missing"):
        await provider.lookup(_serial("C02A00000001"))
    with pytest.raises(ProviderNotReady):
        await provider.start()  # the service's retry does not bypass the settle rule
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("provider.file_missing", "warning"),
        ("provider.not_ready", "error"),
    ]

    path.write_text("serial,name\nC02A00000002,back\n", encoding="utf-8")
    with capture_logs() as logs:
        assert await _settled_reload(provider) is True
    assert [e["event"] for e in logs] == [
        "provider.file_restored",
        "provider.loaded",
        "provider.ready",
    ]
    assert logs[0]["missing_for"] == 480
    assert await provider.lookup(_serial("C02A00000002")) is not None


async def test_zero_grace_is_not_ready_at_once(tmp_path: Path) -> None:
    """With `missing_grace = 0` the poll that finds the file gone turns the provider not ready."""
    provider, _ = await _vanished(tmp_path, 0, _Clock())
    assert await provider.reload() is False
    assert not provider.ready
    with pytest.raises(ProviderNotReady):
        await provider.lookup(_serial("C02A00000001"))


async def test_broken_file_is_logged_once_per_distinct_error(
    csv_provider: tuple[FileProvider, Path],
) -> None:
    """A file that stays broken is logged once per distinct error, whatever the number of saves."""
    provider, path = csv_provider
    broken = f"{HEADER}\nC02A00000001,,new,maybe,,,,,\n"
    with capture_logs() as logs:
        path.write_text(broken)
        assert await _settled_reload(provider) is False
        path.write_text(broken + "\n")  # saved again, same mistake
        assert await _settled_reload(provider) is False
        path.write_text(f"{HEADER}\nC02A00000001,,new,true,,,,,\nC02A00000001,,twice,,,,,,\n")
        assert await _settled_reload(provider) is False
        assert await provider.reload() is False
    errors = [e["error"] for e in logs if e["event"] == "provider.reload_failed"]
    assert errors == [
        f"{path}:2: managed: Input should be a valid boolean, unable to interpret input",
        f"{path}:3: identifier C02A00000001 already on line 2",
    ]


async def test_missing_file_at_start_is_logged_once(tmp_path: Path) -> None:
    """The service retrying a provider whose file is missing does not log the failure again."""
    provider = _csv_provider(tmp_path / "later.csv")
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(ProviderNotReady, match=r"later\.csv"):
                await provider.start()
    assert [e["event"] for e in logs] == ["provider.load_failed"]


RICH_CSV = (
    "serial,udid,name,model,platform,os_version,managed,supervised,compliance,owner_type,"
    "last_contact,username,email,full_name,department,title,groups\n"
    "C02A00000001,00008110-000A1C2E3F40801E,MBP,MacBook Pro,macOS,15.1,TRUE,no,compliant,"
    "company,2026-11-20T09:26:41Z,asharma,a@example.com,A Sharma,Finance,CFO, All ; Pilot ;\n"
    " c02a00000002 ,,  spaced  ,,iOS,,yes,1,,personal,2026-11-21,,,,,,\n"
    ",,,,,,,,,,,,,,,,\n"
    "\n"
    ",4a6ec46c7aaf514cc1abf85c37a87fd0fda903e4,old phone,,iOS,,0,,,,1700000000\n"
    "C02A00000004,,short row\n"
    "C02A00000005,,tz,,,,on,off,,,2026-11-20T10:00:00+01:00,,,,,,Lost or Stolen\n"
)
"""Every column, cells with spaces, blank and short rows, boolean and date spellings."""


@pytest.mark.parametrize(
    "text",
    [
        RICH_CSV,
        RICH_CSV.replace("\n", "\r\n"),
        RICH_CSV.replace("MacBook Pro", '"MacBook Pro, 14"""').replace(
            "CFO", '"Chief\nFinancial Officer"'
        ),
        "\ufeff" + RICH_CSV,
    ],
    ids=["plain", "crlf", "quoted", "bom"],
)
def test_fast_csv_load_serves_what_the_reference_parses(text: str) -> None:
    """Every record served from the compact image equals the reference parser's record."""
    reference = build_index(
        parse_csv(text.lstrip("\ufeff"), source="x"), provider="inv", source="x"
    )
    index = InventoryIndex(
        b"".join(build_image(text.encode(), kind="csv", source="x").parts), "inv"
    )
    assert {key: index.get(key) for key in reference} == reference
    assert list(index.records()) == list(dict.fromkeys(reference.values()))
    assert index.get("C02A00000009") is None
    assert index.devices == 5


RICH_JSON = {
    "devices": [
        {
            "serial": " C02A00000001 ",
            "udid": "00008110-000A1C2E3F40801E",
            "managed": True,
            "owner_type": "company",
            "last_contact": "2026-11-20T10:00:00+01:00",
            "user": {"username": "bkim", "department": "Finance"},
            "groups": ["All", {"name": "Pilot", "id": "7", "smart": True}],
        },
        {"udid": "4a6ec46c7aaf514cc1abf85c37a87fd0fda903e4", "name": "", "user": None},
        {"serial": "C02A00000003", "last_contact": 1700000000, "managed": "yes"},
        {"serial": "C02A00000004", "owner_type": "personal", "groups": []},
    ]
}
"""Nested user and group objects, nulls, empty strings, values only lax validation accepts."""


def test_fast_json_load_serves_what_the_reference_parses() -> None:
    """Every JSON record served from the compact image equals the reference parser's record."""
    text = json.dumps(RICH_JSON, indent=2)
    reference = build_index(parse_json(text, source="x"), provider="inv", source="x")
    index = InventoryIndex(
        b"".join(build_image(text.encode(), kind="json", source="x").parts), "inv"
    )
    assert {key: index.get(key) for key in reference} == reference
    assert list(index.records()) == list(dict.fromkeys(reference.values()))
    assert index.devices == 4


DUPLICATE = (
    "serial\nC02A00000001\nC02A00000002\nc02a00000001\n",
    "inv.csv:4: identifier c02a00000001",
)


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [("csv", *case) for case in [*CSV_ERRORS, DUPLICATE]] + [("json", *c) for c in JSON_ERRORS],
    ids=[f"csv-{i}" for i in [*CSV_ERROR_IDS, "duplicate"]] + [f"json-{i}" for i in JSON_ERROR_IDS],
)
def test_fast_load_reports_the_reference_error(kind: str, text: str, message: str) -> None:
    """The fast loader refuses every broken file with the reference parser's file:line message."""
    with pytest.raises(InventoryFileError) as info:
        build_image(text.encode(), kind="csv" if kind == "csv" else "json", source=f"inv.{kind}")
    assert str(info.value).startswith(message)


async def test_a_file_grown_since_its_stat_is_parsed_in_the_worker(tmp_path: Path) -> None:
    """The thread or the worker process is chosen by the size the poll saw; a file written in
    place may hold far more by the time it is read. A thread never parses past the limit (it
    would hold the GIL, and so the decisions, for seconds): the worker does."""
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(RICH_JSON), encoding="utf-8")
    settings = JsonSettings(kind="json", path=path, reload_interval=0)
    with pytest.raises(_Grown):
        run_job(job_for(path, settings), max_bytes=16)
    index = await load_index(path, settings, "inv", size=8, process_above=16)  # a stale size
    assert index.devices == 4


async def test_worker_process_loads_and_reports_like_a_thread(tmp_path: Path) -> None:
    """A file parsed in the worker process serves the same records, and a broken one the same error."""
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(RICH_JSON), encoding="utf-8")
    settings = JsonSettings(kind="json", path=path, reload_interval=0)
    provider = FileProvider("inv", settings, process_above=0, settle_wait=SETTLE)
    await provider.start()
    reference = build_index(parse_json(path.read_text(), source="x"), provider="inv", source="x")
    assert [r async for r in provider.iter_devices()] == list(dict.fromkeys(reference.values()))
    assert await provider.lookup(classify("4a6ec46c7aaf514cc1abf85c37a87fd0fda903e4")) is not None

    path.write_text('{"devices": [\n  {"serial": "C02A00000001", "managed": "perhaps"}\n]}')
    with capture_logs() as logs:
        assert await _settled_reload(provider) is False
    [failure] = [e for e in logs if e["event"] == "provider.reload_failed"]
    assert failure["error"].startswith(f"{path}:2: devices[0].managed: Input should be a valid")
    assert provider.device_count == 4


class _OomKiller:
    """Ends every inventory worker with SIGKILL as it starts, as the kernel's OOM killer (or a
    container's memory limit) does, while `killing`; counts the workers started."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.killing = True
        self.started = 0
        self._spawn = asyncio.create_subprocess_exec
        monkeypatch.setattr(asyncio, "create_subprocess_exec", self._started)

    async def _started(self, *args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process = await self._spawn(*args, **kwargs)
        self.started += 1
        if self.killing:
            process.send_signal(signal.SIGKILL)
        return process


async def test_a_reload_whose_worker_is_killed_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed for its memory says nothing of the file: the version is read again
    (less and less often while it keeps failing), so a device taken out is not served on."""
    path = tmp_path / "inv.csv"
    path.write_text("serial,name\nC02A00000001,kept\nC02A00000002,stolen\n", encoding="utf-8")
    now = [1000.0]
    settings = CsvSettings(kind="csv", path=path, reload_interval=10)
    provider = FileProvider("inv", settings, clock=lambda: now[0], process_above=0, settle_wait=0)
    await provider.start()
    _replace(path, "serial,name\nC02A00000001,kept\n")
    killer = _OomKiller(monkeypatch)

    with capture_logs() as logs:
        assert await provider.reload() is False  # killed
        assert await provider.reload() is False  # read again at the next poll: killed again
        assert await provider.reload() is False  # not due for another reload_interval
    assert killer.started == 2
    [failure] = [e for e in logs if e["event"] == "provider.reload_failed"]
    assert "inventory worker failed (-9)" in failure["error"]
    assert await provider.lookup(_serial("C02A00000002")) is not None  # the old one serves

    killer.killing = False
    now[0] += 10
    assert await provider.reload() is True
    assert await provider.lookup(_serial("C02A00000002")) is None
    await provider.aclose()


async def test_a_first_load_whose_worker_is_killed_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "inv.csv"
    path.write_text("serial,name\nC02A00000001,kept\n", encoding="utf-8")
    provider = _csv_provider(path, process_above=0)
    killer = _OomKiller(monkeypatch)
    with pytest.raises(ProviderNotReady, match="inventory worker failed"):
        await provider.start()
    killer.killing = False
    await provider.start()  # what the service does for a provider that is not ready
    assert provider.ready


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    """An export in Windows-1252 (Excel's): the message says where, not only what."""
    path = tmp_path / "inv.csv"
    rows = "".join(f"C02A{i:08d},ok\n" for i in range(3))
    path.write_bytes(b"serial,name\n" + rows.encode() + b"C02A99999999,Jos\xe9\n")
    with pytest.raises(InventoryFileError) as info:
        run_job({"path": str(path), "kind": "csv", "group_delimiter": ";"})
    assert str(info.value) == f"{path}:5: not UTF-8 text (byte 0xe9)"


async def test_worker_process_ignores_a_providers_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker imports this service's parser even when the working directory has another."""
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "__init__.py").write_text("raise SystemExit('wrong providers')\n")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "inv.csv"
    path.write_text("serial\nC02A00000001\n", encoding="utf-8")
    provider = _csv_provider(path, process_above=0)
    await provider.start()
    assert await provider.lookup(_serial("C02A00000001")) is not None


def test_repeat_lookup_in_one_inventory_version_decodes_once() -> None:
    """Enriching and authorizing calls for one device share a decoded record of that image."""
    image = build_image(b"serial,name\nC02A00000001,mac\n", kind="csv", source="x")
    index = InventoryIndex(b"".join(image.parts), "inv")
    first = index.get("C02A00000001")
    assert first is not None
    assert index.get("C02A00000001") is first
    assert InventoryIndex(b"".join(image.parts), "inv").get("C02A00000001") is not first


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_a_serial_other_than_ascii_answers_for_no_attested_identifier(
    kind: Literal["csv", "json"],
) -> None:
    """'\ufb01'.upper() is "FI": a row whose serial holds the ligature must not answer for the
    attested (ASCII) ABCDEFGHFI; an ASCII row in any case still does."""
    rows = [("ABCDEFGH\ufb01", "ligature"), ("c02a00000001", "lower")]
    if kind == "csv":
        data = "serial,name\n" + "".join(f"{s},{n}\n" for s, n in rows)
    else:
        data = json.dumps({"devices": [{"serial": s, "name": n} for s, n in rows]})
    image = build_image(data.encode(), kind=kind, source="x")
    index = InventoryIndex(b"".join(image.parts), "inv")
    assert index.get("ABCDEFGHFI") is None
    found = index.get("C02A00000001")
    assert found is not None
    assert found.name == "lower"


def test_a_tpm_ek_in_an_inventory_is_found_in_any_case() -> None:
    """An EK (base64) written as a file's serial is found by the EK step-ca attests: lookups
    compare in upper case, as for every identifier."""
    ek = "urn:ek:sha256:Ab3dEf5gHi7jKl9mNo1pQr3sTu5vWx7yZa9bCd1eFg3hIj5"
    image = build_image(f"serial,name\n{ek},tpm\n".encode(), kind="csv", source="x")
    found = InventoryIndex(b"".join(image.parts), "inv").get(classify(ek).normalized)
    assert found is not None
    assert found.name == "tpm"


async def test_a_provider_closed_while_it_starts_does_not_watch_its_file(tmp_path: Path) -> None:
    """A reload retires a provider whose first start is still under way (the service retries
    starts in the background): the start ends, but no watcher is left polling for nobody."""
    path = tmp_path / "inv.csv"
    path.write_text("serial\nC02A00000001\n", encoding="utf-8")
    provider = _csv_provider(path, reload_interval=1, process_above=0)  # a worker: it takes a while
    starting = asyncio.create_task(provider.start())
    await asyncio.sleep(0)  # under way
    await provider.aclose()
    await starting
    assert [t for t in asyncio.all_tasks() if t.get_name() == "watch-inv"] == []


async def test_a_version_unreadable_for_days_is_still_read_again(tmp_path: Path) -> None:
    """The wait between reads of an unreadable version grows, then stays at its limit: a
    thousand failures in a row (days at the limit) must not end the retries."""
    path = tmp_path / "inv.csv"
    path.write_text("serial\nC02A00000001\nC02A00000002\n", encoding="utf-8")
    now = [1000.0]
    settings = CsvSettings(kind="csv", path=path, reload_interval=2)
    provider = FileProvider("inv", settings, clock=lambda: now[0], settle_wait=0)
    await provider.start()
    path.unlink()
    path.mkdir()  # there, but not readable as a file: the same failure at every read
    with capture_logs():
        for _ in range(1100):
            assert await provider.reload() is False
            now[0] += 400
    path.rmdir()
    path.write_text("serial\nC02A00000001\n", encoding="utf-8")
    assert await provider.reload() is True
    assert await provider.lookup(_serial("C02A00000002")) is None
    await provider.aclose()
