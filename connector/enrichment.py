"""What an ENRICHING answer carries in `data`, read by the X.509 template as `.Webhooks.<name>`.

Default schema (absent values are omitted, never invented; ``groups`` is always a list)::

    {"device": {"serial", "udid", "name", "model", "platform", "os_version"},
     "user": {"username", "email", "full_name", "department", "title"},
     "groups": ["name", ...],
     "provider": "name"}

``[webhooks.enrichment] fields = {"out.path" = "source.path"}`` replaces the default mapping
with exactly the listed fields; ``exclude`` drops output paths (and everything under them);
``constants`` adds fixed values. ``provider`` is always present, so every certificate can be
traced to the inventory that vouched for it.

E-mail and full name are personal data: they are included only when ``personal_data`` is on,
and a custom mapping that names them without it is refused at load.

Size is bounded twice. At runtime, lists keep at most ``max_list_items`` entries (sorted, so the
cut is deterministic) and a string longer than ``max_value_bytes`` UTF-8 bytes is dropped rather
than cut (a shortened name would be a different name); both log ``enrichment.truncated``. At
load, the worst case of the mapping under those limits (every character escaped) must fit in
``max_bytes``, so no device can produce an oversized answer.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC
from functools import cached_property
from typing import Annotated, Any, Literal, get_args

import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from providers.base import DeviceRecord
from providers.identifiers import DeviceIdentifier

log = structlog.get_logger("connector.enrichment")

SourcePath = Literal[
    "device.serial",
    "device.udid",
    "device.name",
    "device.model",
    "device.platform",
    "device.os_version",
    "device.record_id",
    "device.managed",
    "device.supervised",
    "device.compliance",
    "device.owner_type",
    "device.jailbroken",
    "device.last_contact",
    "user.username",
    "user.email",
    "user.full_name",
    "user.department",
    "user.title",
    "user.id",
    "groups",
    "group_ids",
    "provider",
    "identifier",
    "identifier_kind",
]
SOURCES: frozenset[str] = frozenset(get_args(SourcePath))
PERSONAL_SOURCES = frozenset({"user.email", "user.full_name"})
LIST_SOURCES = frozenset({"groups", "group_ids"})
BOOL_SOURCES = frozenset({"device.managed", "device.supervised", "device.jailbroken"})

DEFAULT_FIELDS: Mapping[str, str] = {
    "device.serial": "device.serial",
    "device.udid": "device.udid",
    "device.name": "device.name",
    "device.model": "device.model",
    "device.platform": "device.platform",
    "device.os_version": "device.os_version",
    "user.username": "user.username",
    "user.email": "user.email",
    "user.full_name": "user.full_name",
    "user.department": "user.department",
    "user.title": "user.title",
    "groups": "groups",
    "provider": "provider",
}

# Segments a Go template can address as `.Webhooks.name.a.b` without `index`.
_OUTPUT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}(\.[A-Za-z_][A-Za-z0-9_]{0,31}){0,3}")
# Worst-case JSON bytes per UTF-8 byte of a string (a control byte becomes \u00XX).
_ESCAPE_FACTOR = 6


def _output_path(value: str) -> str:
    if not _OUTPUT_PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an output path: 1 to 4 dot-separated names of letters, digits"
            " and _ (not starting with a digit), so templates can read it as .Webhooks.NAME.path"
        )
    return value


OutputPath = Annotated[str, AfterValidator(_output_path)]


Constant = str | bool | int | float | list[str]


class EnrichmentSettings(BaseModel):
    """``[webhooks.enrichment]``: which inventory fields go into `data`, and how large it may be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    personal_data: bool = False
    fields: dict[OutputPath, SourcePath] | None = None
    exclude: tuple[OutputPath, ...] = ()
    constants: dict[OutputPath, Constant] = Field(default_factory=dict)
    max_list_items: int = Field(default=50, ge=0, le=1000)
    max_value_bytes: int = Field(default=128, ge=1, le=4096)
    max_bytes: int = Field(default=65536, ge=1024, le=1_048_576)

    @field_validator("constants", mode="before")
    @classmethod
    def _finite(cls, value: object) -> object:
        """TOML has nan and inf, JSON does not: step-ca could not read an answer with one."""
        if isinstance(value, Mapping):
            for key, constant in value.items():
                if isinstance(constant, float) and not math.isfinite(constant):
                    raise ValueError(f"{key}: nan and inf are not JSON values")
        return value

    @model_validator(mode="after")
    def _check_mapping(self) -> EnrichmentSettings:
        if self.fields is not None:
            if not self.fields:
                raise ValueError("fields is empty; remove it to use the default mapping")
            personal = sorted(k for k, v in self.fields.items() if v in PERSONAL_SOURCES)
            if personal and not self.personal_data:
                raise ValueError(
                    f"fields {', '.join(personal)} read personal data (e-mail, full name);"
                    " set personal_data = true to include them"
                )
            if "provider" in self.fields and self.fields["provider"] != "provider":
                raise ValueError('"provider" is reserved for the name of the answering inventory')
        base = dict(DEFAULT_FIELDS if self.fields is None else self.fields)
        for path in self.exclude:
            if path == "provider":
                raise ValueError("exclude: provider is always included")
            if not any(_under(out, path) for out in base):
                raise ValueError(f"exclude: {path} matches no field of the mapping")
        outputs = [*self.plan_outputs, *self.constants]
        for i, a in enumerate(outputs):
            for b in outputs[i + 1 :]:
                if _under(a, b) or _under(b, a):
                    raise ValueError(f"output paths {a} and {b} overlap; one would hide the other")
        worst = self.worst_case_bytes
        if worst > self.max_bytes:
            raise ValueError(
                f"the mapping can produce up to {worst} bytes of JSON, more than max_bytes ="
                f" {self.max_bytes}; lower max_list_items or max_value_bytes, or map fewer fields"
            )
        return self

    @cached_property
    def plan(self) -> tuple[tuple[tuple[str, ...], str], ...]:
        """(output path segments, source) pairs, computed once per settings object."""
        base = DEFAULT_FIELDS if self.fields is None else self.fields
        pairs = [
            (out, src)
            for out, src in base.items()
            if not any(_under(out, ex) for ex in self.exclude)
            and (self.personal_data or src not in PERSONAL_SOURCES)
        ]
        if "provider" not in base:
            pairs.append(("provider", "provider"))
        return tuple((tuple(out.split(".")), src) for out, src in pairs)

    @property
    def plan_outputs(self) -> list[str]:
        """Output paths of the mapped fields (constants excluded)."""
        return [".".join(segments) for segments, _ in self.plan]

    @cached_property
    def worst_case_bytes(self) -> int:
        """An upper bound on the JSON size of `data` for any device under these limits."""
        value = _ESCAPE_FACTOR * self.max_value_bytes + 2
        total = 2
        for segments, source in self.plan:
            total += sum(len(s) + 4 for s in segments) + 1
            if source in LIST_SOURCES:
                total += 2 + self.max_list_items * (value + 1)
            elif source in BOOL_SOURCES:
                total += 5
            else:
                total += value
        for path, constant in self.constants.items():
            encoded = json.dumps(constant, ensure_ascii=False).encode()
            total += sum(len(s) + 4 for s in path.split(".")) + 1
            total += _ESCAPE_FACTOR * len(encoded)
        return total


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def _user_attr(name: str) -> Callable[[DeviceRecord, DeviceIdentifier], object]:
    def read(device: DeviceRecord, _: DeviceIdentifier) -> object:
        return None if device.user is None else getattr(device.user, name)

    return read


def _device_attr(name: str) -> Callable[[DeviceRecord, DeviceIdentifier], object]:
    def read(device: DeviceRecord, _: DeviceIdentifier) -> object:
        return getattr(device, name)

    return read


def _last_contact(device: DeviceRecord, _: DeviceIdentifier) -> object:
    seen = device.last_contact
    if seen is None:
        return None
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _group_names(device: DeviceRecord, _: DeviceIdentifier) -> object:
    return [g.name for g in device.groups]


def _group_ids(device: DeviceRecord, _: DeviceIdentifier) -> object:
    return [g.id for g in device.groups if g.id]


_READERS: Mapping[str, Callable[[DeviceRecord, DeviceIdentifier], object]] = {
    **{
        f"device.{a}": _device_attr(a)
        for a in (
            "serial",
            "udid",
            "name",
            "model",
            "platform",
            "os_version",
            "record_id",
            "managed",
            "supervised",
            "compliance",
            "owner_type",
            "jailbroken",
        )
    },
    "device.last_contact": _last_contact,
    **{
        f"user.{a}": _user_attr(a)
        for a in ("username", "email", "full_name", "department", "title", "id")
    },
    "groups": _group_names,
    "group_ids": _group_ids,
    "provider": lambda device, _: device.provider,
    "identifier": lambda _, identifier: identifier.value,
    "identifier_kind": lambda _, identifier: identifier.kind.value,
}
assert set(_READERS) == SOURCES  # noqa: S101  # every source path has a reader


def build_data(
    settings: EnrichmentSettings, device: DeviceRecord, identifier: DeviceIdentifier
) -> dict[str, Any]:
    """The `data` object for an allowed ENRICHING call, bounded by the settings' limits."""
    data: dict[str, Any] = {}
    limit = settings.max_value_bytes
    for segments, source in settings.plan:
        value = _READERS[source](device, identifier)
        output = ".".join(segments)
        if isinstance(value, list):
            value = _bounded_list(value, limit, settings.max_list_items, output, device)
        elif value is None:
            continue
        elif isinstance(value, str) and len(value.encode()) > limit:
            log.warning(
                "enrichment.truncated",
                field=output,
                reason="value_too_long",
                length=len(value.encode()),
                limit=limit,
                provider=device.provider,
            )
            continue
        _put(data, segments, value)
    for path, constant in settings.constants.items():
        _put(data, tuple(path.split(".")), constant)
    return data


def _bounded_list(
    values: list[str], limit: int, max_items: int, output: str, device: DeviceRecord
) -> list[str]:
    kept = sorted({v for v in values if len(v.encode()) <= limit}, key=lambda v: (v.casefold(), v))
    too_long = len({v for v in values if len(v.encode()) > limit})
    dropped = max(len(kept) - max_items, 0)
    if too_long or dropped:
        log.warning(
            "enrichment.truncated",
            field=output,
            reason="list_too_long" if dropped else "value_too_long",
            kept=min(len(kept), max_items),
            dropped=dropped + too_long,
            limit=max_items if dropped else limit,
            provider=device.provider,
        )
    return kept[:max_items]


def _put(data: dict[str, Any], segments: tuple[str, ...], value: object) -> None:
    node = data
    for segment in segments[:-1]:
        node = node.setdefault(segment, {})
    node[segments[-1]] = value
