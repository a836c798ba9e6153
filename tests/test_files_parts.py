"""A JSON inventory parsed in parts (forked processes): same records, same errors as one parse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic_core
import pytest

from providers.files import (
    FileProvider,
    InventoryFileError,
    InventoryIndex,
    JsonSettings,
    build_index,
    parse_json,
)
from providers.files._build import build_image
from providers.files._split import piece, split_devices


def _devices(count: int) -> list[dict[str, Any]]:
    """Devices in every shape the fast checks accept: nested objects, nulls, left-out keys."""
    shapes: list[dict[str, Any]] = [
        {
            "serial": " C02A{:08d} ",
            "udid": "00008110-{:016X}",
            "managed": True,
            "owner_type": "company",
            "last_contact": "2026-11-20T10:00:00+01:00",
            "user": {"username": "bkim", "department": "Finance"},
            "groups": ["All", {"name": "Pilot", "id": "7", "smart": True}],
        },
        {"udid": "{:040x}", "name": "", "user": None, "supervised": False},
        {"serial": "c02b{:08d}", "owner_type": "personal", "groups": []},
    ]
    out = []
    for i in range(count):
        shape = shapes[i % len(shapes)]
        out.append({k: v.format(i) if k in ("serial", "udid") else v for k, v in shape.items()})
    return out


LAYOUTS = {
    "indented": lambda d: json.dumps({"devices": d}, indent=2),
    "one-line": lambda d: json.dumps({"devices": d}),
    "compact-list": lambda d: json.dumps(d, separators=(",", ":")),
    "device-per-line": lambda d: "[\n" + ",\n".join(map(json.dumps, d)) + "\n]\n",
}


def _reference(text: str) -> dict[str, Any]:
    return build_index(parse_json(text, source="x"), provider="inv", source="x")


def _served(text: str, parts: int) -> InventoryIndex:
    image = build_image(text.encode(), kind="json", source="x", parts=parts)
    return InventoryIndex(b"".join(image.parts), "inv")


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_json_in_parts_serves_what_the_reference_parses(layout: str, parts: int) -> None:
    """A file cut into parts serves every record the reference parser reads, in file order."""
    text = LAYOUTS[layout](_devices(60))
    assert split_devices(text.encode(), parts) is not None  # the file is cut
    reference = _reference(text)
    index = _served(text, parts)
    assert {key: index.get(key) for key in reference} == reference
    assert list(index.records()) == list(dict.fromkeys(reference.values()))
    assert index.devices == 60


def _broken(change: str) -> str:
    """A one-device-per-line file broken in its last part."""
    lines = [json.dumps(d) for d in _devices(40)]
    if change == "duplicate":
        lines[-1] = json.dumps({"serial": "c02a00000003"})
    elif change == "bad-boolean":
        lines[-2] = json.dumps({"serial": "C02Z00000001", "managed": "perhaps"})
    elif change == "not-object":
        lines[-1] = '"C02Z00000001"'
    elif change == "syntax":
        lines[-3] = lines[-3][:-1] + ",}"
    return '{"devices": [\n' + ",\n".join(lines) + "\n]}\n"


@pytest.mark.parametrize("change", ["duplicate", "bad-boolean", "not-object", "syntax"])
def test_json_in_parts_reports_the_reference_error(change: str) -> None:
    """A file broken in a later part is refused with the reference parser's file:line message."""
    text = _broken(change)
    with pytest.raises(InventoryFileError) as reference:
        _reference(text)
    assert int(str(reference.value).split(":")[1]) > 21  # in the second half: the last part
    with pytest.raises(InventoryFileError) as info:
        build_image(text.encode(), kind="json", source="x", parts=2)
    assert str(info.value) == str(reference.value)


def test_a_cut_inside_a_device_falls_back_to_one_parse() -> None:
    """A cut that lands between nested objects does not parse, and the whole file is read."""
    groups = [{"name": f"group {i}"} for i in range(200)]
    devices = [
        {"name": "small", "serial": "C02A00000001"},
        {"name": "big", "groups": groups, "serial": "C02A00000002"},
    ]
    text = json.dumps(devices, separators=(",", ":"))
    spans = split_devices(text.encode(), 2)
    assert spans is not None
    with pytest.raises(ValueError, match="EOF"):
        pydantic_core.from_json(piece(text.encode(), spans[0]))
    reference = _reference(text)
    index = _served(text, 2)
    assert {key: index.get(key) for key in reference} == reference


@pytest.mark.parametrize(
    "text",
    ['{"devices": []}', "[]", '[{"serial": "C02A00000001"}]', '{"other": [{"a": 1}, {"a": 2}]}'],
    ids=["empty", "empty-list", "one-device", "other-key"],
)
def test_a_file_without_a_cut_is_parsed_whole(text: str) -> None:
    """No cut is made where there is no second device or no device array to cut."""
    assert split_devices(text.encode(), 2) is None


async def test_worker_process_parses_a_large_file_in_parts(tmp_path: Path) -> None:
    """The worker process (one part per core) serves what the reference parser reads."""
    path = tmp_path / "inv.json"
    text = LAYOUTS["device-per-line"](_devices(3000))
    path.write_text(text, encoding="utf-8")
    provider = FileProvider("inv", JsonSettings(kind="json", path=path), process_above=0)
    await provider.start()
    reference = _reference(text)
    assert [r async for r in provider.iter_devices()] == list(dict.fromkeys(reference.values()))
    await provider.aclose()
