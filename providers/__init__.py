"""Inventory providers: the `Provider` seam, the normalised `DeviceRecord`, and the sources.

This package never imports `connector`: a provider knows its upstream, not the webhook.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from providers.base import (
    DeviceRecord,
    GroupRef,
    Provider,
    ProviderError,
    ProviderNotReady,
    UserRecord,
)
from providers.files import CsvSettings, FileProvider, JsonSettings
from providers.identifiers import DeviceIdentifier, IdentifierKind, IdentifierShapeError, classify
from providers.intune import IntuneProvider, IntuneSettings
from providers.jamf import JamfProvider, JamfSettings
from providers.observe import NO_HOOKS, ProviderHook

ProviderSettings = Annotated[
    CsvSettings | JsonSettings | JamfSettings | IntuneSettings,
    Field(discriminator="kind"),
]
"""The ``[providers.NAME]`` table: one model per ``kind``."""


def build_provider(
    name: str, settings: ProviderSettings, *, hooks: ProviderHook = NO_HOOKS
) -> Provider:
    """Create the provider a config table describes (not started yet); `hooks` observe it."""
    del hooks  # wired by the vendor packages
    match settings:
        case CsvSettings() | JsonSettings():
            return FileProvider(name, settings)
        case JamfSettings():
            return JamfProvider(name, settings)
        case IntuneSettings():
            return IntuneProvider(name, settings)
    raise TypeError(f"no provider for {type(settings).__name__}")  # pragma: no cover


__all__ = [
    "CsvSettings",
    "DeviceIdentifier",
    "DeviceRecord",
    "FileProvider",
    "GroupRef",
    "IdentifierKind",
    "IdentifierShapeError",
    "IntuneProvider",
    "IntuneSettings",
    "JamfProvider",
    "JamfSettings",
    "JsonSettings",
    "Provider",
    "ProviderError",
    "ProviderNotReady",
    "ProviderSettings",
    "UserRecord",
    "build_provider",
    "classify",
]
