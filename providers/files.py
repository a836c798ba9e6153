"""CSV and JSON inventories: a file the admin keeps, validated at load, reloaded when it changes.

A reload parses the whole file first and swaps the index only if every row is valid, so a broken
edit keeps the last good inventory (and logs `provider.reload_failed` with the line at fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from providers.base import DeviceRecord, GroupRef, ProviderError, ProviderNotReady, UserRecord
from providers.config_types import ConfigPath
from providers.identifiers import DeviceIdentifier

log = structlog.get_logger("providers.files")


class CsvSettings(BaseModel):
    """``[providers.NAME]`` with ``kind = "csv"``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    matches_mac_provisioning_udid: ClassVar[bool] = True
    """The admin can write a Mac's provisioning UDID into the `udid` column."""

    kind: Literal["csv"]
    path: ConfigPath
    group_delimiter: str = Field(default=";", min_length=1, max_length=1)
    reload_interval: float = Field(default=2.0, ge=0, description="seconds; 0 disables reload")


class JsonSettings(BaseModel):
    """``[providers.NAME]`` with ``kind = "json"``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    matches_mac_provisioning_udid: ClassVar[bool] = True
    """The admin can write a Mac's provisioning UDID into a device's `udid`."""

    kind: Literal["json"]
    path: ConfigPath
    reload_interval: float = Field(default=2.0, ge=0, description="seconds; 0 disables reload")


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    id: str | None = None
    smart: bool | None = None


class _User(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    username: str | None = None
    email: str | None = None
    full_name: str | None = None
    department: str | None = None
    title: str | None = None


class InventoryRow(BaseModel):
    """One device in a file inventory (the documented schema of both formats)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    serial: str | None = None
    udid: str | None = None
    name: str | None = None
    model: str | None = None
    platform: str | None = None
    os_version: str | None = None
    managed: bool | None = None
    supervised: bool | None = None
    compliance: str | None = None
    owner_type: Literal["company", "personal"] | None = None
    last_contact: datetime | None = None
    user: _User | None = None
    groups: tuple[_Group, ...] = ()

    @field_validator("groups", mode="before")
    @classmethod
    def _names_or_objects(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("last_contact")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def to_record(self, provider: str) -> DeviceRecord:
        """Normalise into the provider-neutral record."""
        user = UserRecord(**self.user.model_dump()) if self.user else None
        return DeviceRecord(
            provider=provider,
            serial=self.serial,
            udid=self.udid,
            name=self.name,
            model=self.model,
            platform=self.platform,
            os_version=self.os_version,
            managed=self.managed,
            supervised=self.supervised,
            compliance=self.compliance,
            owner_type=self.owner_type,
            last_contact=self.last_contact,
            user=user,
            groups=tuple(GroupRef(name=g.name, id=g.id, smart=g.smart) for g in self.groups),
        )


class InventoryFileError(ValueError):
    """When an inventory file cannot be parsed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class _Stamp:
    mtime_ns: int
    size: int
    inode: int


_CSV_USER_COLUMNS = ("username", "email", "full_name", "department", "title")


def parse_csv(
    text: str, *, source: str, group_delimiter: str = ";"
) -> list[tuple[int, InventoryRow]]:
    """Parse a CSV inventory; the header names the columns, `groups` is a delimited list."""
    reader = csv.DictReader(io.StringIO(text))
    known = set(InventoryRow.model_fields) - {"user"} | set(_CSV_USER_COLUMNS)
    unknown = [c for c in reader.fieldnames or () if c not in known]
    if unknown:
        raise InventoryFileError(f"{source}:1: unknown column(s) {', '.join(unknown)}")
    rows: list[tuple[int, InventoryRow]] = []
    for raw in reader:
        line = reader.line_num
        if None in raw:
            raise InventoryFileError(f"{source}:{line}: more fields than header columns")
        cells = {k: v for k, v in raw.items() if v is not None and v.strip()}
        if not cells:  # a row of blank cells (spreadsheet padding) describes no device
            continue
        user = {k: cells.pop(k) for k in _CSV_USER_COLUMNS if k in cells}
        if user:
            cells["user"] = user
        if "groups" in cells:
            cells["groups"] = [
                g.strip() for g in cells["groups"].split(group_delimiter) if g.strip()
            ]
        rows.append((line, _validate(cells, source, line)))
    return rows


def parse_json(text: str, *, source: str) -> list[tuple[int, InventoryRow]]:
    """Parse a JSON inventory: ``{"devices": [...]}`` or a bare list of device objects."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InventoryFileError(f"{source}:{exc.lineno}: {exc.msg} (column {exc.colno})") from None
    devices = document.get("devices") if isinstance(document, dict) else document
    if isinstance(document, dict) and set(document) - {"devices"}:
        extra = ", ".join(sorted(set(document) - {"devices"}))
        raise InventoryFileError(f"{source}:1: unknown top-level key(s) {extra}")
    if not isinstance(devices, list):
        raise InventoryFileError(f'{source}:1: expected {{"devices": [...]}} or a list of devices')
    lines = _element_lines(text)
    rows = []
    for index, item in enumerate(devices):
        line = lines[index] if index < len(lines) else 1
        if not isinstance(item, dict):
            raise InventoryFileError(f"{source}:{line}: devices[{index}] is not an object")
        rows.append((line, _validate(item, source, line, f"devices[{index}]")))
    return rows


def _validate(cells: dict[str, Any], source: str, line: int, where: str = "") -> InventoryRow:
    try:
        row = InventoryRow.model_validate(cells)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where + '.' if where else ''}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise InventoryFileError(f"{source}:{line}: {problems}") from None
    if not row.serial and not row.udid:
        raise InventoryFileError(f"{source}:{line}: a device needs a serial or a udid")
    return row


def _element_lines(text: str) -> list[int]:
    """Line numbers where the device objects start, for error messages (best effort)."""
    decoder = json.JSONDecoder()
    start = text.find("[")
    if start < 0:
        return []
    lines: list[int] = []
    pos = start + 1
    length = len(text)
    while pos < length:
        while pos < length and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= length or text[pos] == "]":
            break
        lines.append(text.count("\n", 0, pos) + 1)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
    return lines


def build_index(
    rows: Iterable[tuple[int, InventoryRow]], *, provider: str, source: str
) -> dict[str, DeviceRecord]:
    """Index records by normalised serial and UDID; a duplicate identifier is an error."""
    index: dict[str, DeviceRecord] = {}
    seen: dict[str, int] = {}
    for line, row in rows:
        record = row.to_record(provider)
        for key in (row.serial, row.udid):
            if not key:
                continue
            norm = key.upper()
            if norm in seen:
                raise InventoryFileError(
                    f"{source}:{line}: identifier {key} already on line {seen[norm]}"
                )
            seen[norm] = line
            index[norm] = record
    return index


class FileProvider:
    """A CSV or JSON inventory kept in memory and reloaded when the file changes."""

    def __init__(self, name: str, settings: CsvSettings | JsonSettings) -> None:
        self._name = name
        self._settings = settings
        self._index: dict[str, DeviceRecord] | None = None
        self._stamp: _Stamp | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def ready(self) -> bool:
        """True once one version of the file has loaded."""
        return self._index is not None

    @property
    def cacheable(self) -> bool:
        """An in-memory index answers at once: caching it would only serve stale answers."""
        return False

    @property
    def device_count(self) -> int:
        """Distinct devices in the current inventory."""
        return len({id(r) for r in (self._index or {}).values()})

    async def start(self) -> None:
        """Load the file once, then watch it; a load failure raises `ProviderNotReady`."""
        try:
            await self.reload()
        finally:
            if self._settings.reload_interval > 0 and self._watcher is None:
                self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self._name}")

    async def reload(self) -> bool:
        """Re-read the file if it changed; returns whether a new inventory was swapped in."""
        path = self._settings.path
        try:
            stamp = _stamp(path)
            if stamp == self._stamp and self._index is not None:
                return False
            # utf-8-sig: spreadsheet exports start with a byte-order mark.
            text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
            index = await asyncio.to_thread(self._parse, text)
        except (OSError, InventoryFileError, UnicodeDecodeError) as exc:
            message = _describe(exc, path)
            if self._index is None:
                log.error("provider.load_failed", provider=self._name, error=message)
                raise ProviderNotReady(self._name, message) from None
            log.error("provider.reload_failed", provider=self._name, error=message, kept="previous")
            self._stamp = _safe_stamp(path)  # do not re-log the same broken version every tick
            return False
        self._index = index
        self._stamp = stamp
        log.info("provider.loaded", provider=self._name, path=str(path), devices=self.device_count)
        return True

    def _parse(self, text: str) -> dict[str, DeviceRecord]:
        source = str(self._settings.path)
        if isinstance(self._settings, CsvSettings):
            rows: Sequence[tuple[int, InventoryRow]] = parse_csv(
                text, source=source, group_delimiter=self._settings.group_delimiter
            )
        else:
            rows = parse_json(text, source=source)
        return build_index(rows, provider=self._name, source=source)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_interval)
            with contextlib.suppress(ProviderError):
                await self.reload()

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Find the device by serial or UDID, case-insensitively."""
        index = self._index
        if index is None:
            raise ProviderNotReady(self._name, "inventory not loaded")
        return index.get(identifier.normalized)

    async def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device once."""
        seen: set[int] = set()
        for record in (self._index or {}).values():
            if id(record) not in seen:
                seen.add(id(record))
                yield record

    async def aclose(self) -> None:
        """Stop watching the file."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None


def _stamp(path: Path) -> _Stamp:
    st = os.stat(path)
    return _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)


def _safe_stamp(path: Path) -> _Stamp | None:
    try:
        return _stamp(path)
    except OSError:
        return None


def _describe(exc: Exception, path: Path) -> str:
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path}: not UTF-8 text"
    return str(exc)
