"""The provider registry: one table of kinds from which settings, factories and checks derive."""

from __future__ import annotations

import typing
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

import providers
from providers.base import DeviceRecord, Provider
from providers.identifiers import DeviceIdentifier, classify
from providers.observe import NO_HOOKS, ProviderHook
from providers.registry import KINDS, ProviderKind, preflight_problems, settings_union


def test_each_kind_is_keyed_by_its_settings_kind_literal() -> None:
    """The table key and the model's ``kind`` literal agree, so a table cannot mis-route."""
    for key, kind in KINDS.items():
        assert typing.get_args(kind.settings.model_fields["kind"].annotation) == (key,)


def test_provider_settings_is_the_union_of_the_registry() -> None:
    """The config union has exactly the registered settings models."""
    union = typing.get_args(providers.ProviderSettings)[0]
    assert set(typing.get_args(union)) == {kind.settings for kind in KINDS.values()}


# --- worked example: what adding a kind takes ------------------------------------------------------
#
# A new vendor is one package, e.g. providers/acme/ (`_settings.py` with `kind: Literal["acme"]`,
# `_auth.py`, `_api.py`, `_models.py`, `_mapping.py`, `provider.py`, `__init__.py`), its fake in
# tests/fakes/acme.py and tests/test_acme.py, plus ONE line in providers.registry.KINDS:
#
#     "acme": ProviderKind(AcmeSettings, AcmeProvider, AcmeSettings.preflight),
#
# Nothing in connector/ changes: settings, build_provider and check-config derive from KINDS.
# Below, a tiny in-test kind goes through the same derivations.


class EchoSettings(BaseModel):
    """``kind = "echo"``: answers every serial it is given."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["echo"]
    broken_file: bool = False

    def preflight(self) -> list[str]:
        return ["path: no such file: echo.csv"] if self.broken_file else []


class EchoProvider:
    """The smallest provider: knows every device, never fails."""

    def __init__(self, name: str, settings: EchoSettings, *, hooks: ProviderHook) -> None:
        del settings, hooks
        self.name = name
        self.ready = True
        self.cacheable = False

    async def start(self) -> None:
        return None

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        return DeviceRecord(self.name, serial=identifier.value)

    async def aclose(self) -> None:
        return None


WITH_ECHO: dict[str, ProviderKind[Any]] = {
    **KINDS,
    "echo": ProviderKind(EchoSettings, EchoProvider, EchoSettings.preflight),
}


async def test_a_new_kind_is_one_registry_line() -> None:
    """With one more entry, its table validates, its provider builds and looks devices up."""
    adapter: TypeAdapter[Any] = TypeAdapter(settings_union(WITH_ECHO))
    settings = adapter.validate_python({"kind": "echo"})
    assert isinstance(settings, EchoSettings)
    provider = WITH_ECHO[settings.kind].factory("e", settings, hooks=NO_HOOKS)
    assert isinstance(provider, Provider)
    record = await provider.lookup(classify("C02FK3Q7MD6T"))
    assert record is not None
    assert record.serial == "C02FK3Q7MD6T"
    broken = adapter.validate_python({"kind": "echo", "broken_file": True})
    assert list(WITH_ECHO["echo"].preflight(broken)) == ["path: no such file: echo.csv"]
    with pytest.raises(ValidationError):
        TypeAdapter(providers.ProviderSettings).validate_python({"kind": "echo"})


def test_file_kinds_report_a_missing_inventory_before_start() -> None:
    """check-config's file check comes from the registry, not from a list of kinds."""
    settings = TypeAdapter(providers.ProviderSettings).validate_python(
        {"kind": "csv", "path": "/nonexistent/inventory.csv"}
    )
    assert preflight_problems(settings) == ["path: no such file: /nonexistent/inventory.csv"]
