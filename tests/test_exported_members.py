"""The public names of each package: exactly these, and each one importable from it."""

from __future__ import annotations

import types
import typing

import pytest

import connector
import posture_lab
import providers

PROVIDERS_API = [
    "AbmProvider",
    "AbmSettings",
    "CsvSettings",
    "DeviceIdentifier",
    "DeviceLister",
    "DeviceRecord",
    "FileProvider",
    "FleetProvider",
    "FleetSettings",
    "GoogleProvider",
    "GoogleSettings",
    "GroupRef",
    "IdentifierKind",
    "IdentifierShapeError",
    "IntuneProvider",
    "IntuneSettings",
    "JamfProvider",
    "JamfSettings",
    "JsonSettings",
    "KandjiProvider",
    "KandjiSettings",
    "MosyleProvider",
    "MosyleSettings",
    "Provider",
    "ProviderError",
    "ProviderNotReady",
    "ProviderSettings",
    "UserRecord",
    "WorkspaceOneProvider",
    "WorkspaceOneSettings",
    "build_provider",
    "classify",
    "preflight_problems",
]


def test_connector_exports_create_app_only() -> None:
    """The service package's only public name is the app factory."""
    assert connector.__all__ == ["create_app"]
    assert callable(connector.create_app)


def test_providers_exports() -> None:
    """The providers package exports the seam, the records, the sources and their settings."""
    assert sorted(providers.__all__) == PROVIDERS_API


@pytest.mark.parametrize("module", [connector, providers, posture_lab], ids=lambda m: m.__name__)
def test_exported_names_are_defined(module: types.ModuleType) -> None:
    """Every name in __all__ exists on the package (a stale entry would break `import *`)."""
    for name in module.__all__:
        assert hasattr(module, name), name


def test_provider_settings_union_covers_every_settings_class() -> None:
    """Each exported *Settings class is a member of the `kind`-discriminated union."""
    union = typing.get_args(providers.ProviderSettings)[0]
    members = set(typing.get_args(union))
    exported = {
        getattr(providers, name)
        for name in providers.__all__
        if name.endswith("Settings") and name != "ProviderSettings"
    }
    assert members == exported
