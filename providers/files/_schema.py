"""The inventory row schema both formats share, and the error that names file and line.

`InventoryRow` is the reference: every row a provider serves was validated by it, and a lookup
converts the stored raw row with it again, so fast load-time checks can never change a value.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from providers._records import utc
from providers.base import DeviceRecord, GroupRef, UserRecord


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
        return utc(value)

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


class InventoryUnreadable(InventoryFileError):
    """When the file could not be read at all (permissions, an I/O error, no descriptor left):
    this says nothing of its content, so the same version is read again at the next poll."""


CSV_USER_COLUMNS = ("username", "email", "full_name", "department", "title")
CSV_COLUMNS = frozenset(InventoryRow.model_fields) - {"user"} | set(CSV_USER_COLUMNS)


def csv_cells(raw: dict[str, str | None], group_delimiter: str) -> dict[str, Any] | None:
    """One CSV row (column -> cell) as `InventoryRow` input; None for a row of blank cells."""
    cells: dict[str, Any] = {k: v for k, v in raw.items() if v is not None and v.strip()}
    if not cells:  # a row of blank cells (spreadsheet padding) describes no device
        return None
    user = {k: cells.pop(k) for k in CSV_USER_COLUMNS if k in cells}
    if user:
        cells["user"] = user
    if "groups" in cells:
        cells["groups"] = [g.strip() for g in cells["groups"].split(group_delimiter) if g.strip()]
    return cells


def validate_row(cells: dict[str, Any], source: str, line: int, where: str = "") -> InventoryRow:
    """Validate one device; `InventoryFileError` names file, line and (JSON) `devices[i]`."""
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


def describe(exc: Exception, path: Path) -> str:
    """An admin-facing message for a failure to read `path` (no traceback, no internals)."""
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, UnicodeDecodeError):
        if isinstance(exc.object, bytes):  # the whole file: say where (an Excel export, often)
            line = exc.object.count(b"\n", 0, exc.start) + 1
            return f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
        return f"{path}: not UTF-8 text"
    if isinstance(exc, MemoryError):
        return f"{path}: out of memory while loading"
    return str(exc)
