"""Pydantic models of the Mosyle Manager JSON the provider reads, and how its envelope is read.

Mosyle answers HTTP 200 with ``{"status": "OK", "response": …}``; ``response`` is an object
for ``listdevices`` and a one-element list for other operations in Mosyle's own examples, so
both are read. A search that finds nothing answers a ``DEVICES_NOTFOUND`` status inside the
response instead of a 404; other statuses there (``MISSING_DATA``, ``UNKNOWN_COLUMNS``) are
errors. Scalars come as strings: flags as ``"1"``/``"true"``, dates as Unix seconds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from providers._records import flag
from providers.unicode import ascii_int

NOT_FOUND = re.compile(r"[A-Z_]*NOTFOUND")
"""``DEVICES_NOTFOUND`` and its siblings: "nothing matched", an answer rather than an error."""


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


def _names(value: Any) -> Any:
    """Tags come as a comma-separated string or a list (Mosyle does not document which)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [v.get("name") if isinstance(v, dict) else v for v in value if v is not None]
    return []


def _strings(value: Any) -> Any:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _number(value: Any) -> Any:
    if isinstance(value, str):
        return ascii_int(value.strip())
    return value


Flag = Annotated[bool | None, BeforeValidator(flag)]
Count = Annotated[int | None, BeforeValidator(_number)]


class MosyleDevice(_Lenient):
    """One device of ``listdevices``."""

    deviceudid: str | None = None
    serial_number: str | None = None
    device_name: str | None = None
    device_model: str | None = None
    device_model_name: str | None = None
    model_name: str | None = None
    os: str | None = None
    osversion: str | None = None
    status: str | None = None
    is_deleted: Flag = None
    is_supervised: Flag = None
    date_last_beat: str | None = None
    date_info: str | None = None
    userid: str | None = None
    useremail: str | None = None
    username: str | None = None
    tags: Annotated[list[str], BeforeValidator(_names)] = Field(default_factory=list)


class DevicesPayload(_Lenient):
    devices: list[MosyleDevice] = Field(default_factory=list)
    rows: Count = None
    page_size: Count = None


class DeviceGroup(_Lenient):
    id: str = Field(min_length=1)
    name: str | None = None
    deviceudids: Annotated[list[str], BeforeValidator(_strings)] = Field(default_factory=list)


class GroupsPayload(_Lenient):
    groups: list[DeviceGroup] = Field(default_factory=list)
    rows: Count = None
    page_size: Count = None


class Envelope(_Lenient):
    """``{"status", "response"}`` around every answer."""

    status: str | None = None
    info: Any = None
    response: Any = None


class MosyleRefusal(Exception):
    """When Mosyle's envelope carries an error status instead of data."""

    def __init__(self, code: str, info: object = None) -> None:
        super().__init__(code)
        self.code = code[:64]
        self.info = info[:120] if isinstance(info, str) else None


def payload(envelope: Envelope) -> dict[str, Any] | None:
    """The response object; None when it says nothing matched.

    Raises `MosyleRefusal` with Mosyle's status code when the answer is an error.
    """
    if (envelope.status or "").upper() != "OK":
        raise MosyleRefusal(envelope.status or "no status", envelope.info)
    body = envelope.response
    if isinstance(body, list):
        body = next((item for item in body if isinstance(item, dict)), None)
    if not isinstance(body, dict):
        raise MosyleRefusal("no response object")
    status = body.get("status")
    if isinstance(status, str) and status.upper() != "OK":
        if NOT_FOUND.fullmatch(status.upper()):
            return None
        raise MosyleRefusal(status, body.get("info"))
    return body
