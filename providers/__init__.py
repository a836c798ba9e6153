"""Inventory providers: the `Provider` seam, the normalised `DeviceRecord`, and the sources.

This package never imports `connector`: a provider knows its upstream, not the webhook.
Provider kinds are listed once, in `providers.registry`.
"""

from __future__ import annotations

from providers.abm import AbmProvider, AbmSettings
from providers.base import (
    DeviceLister,
    DeviceRecord,
    GroupRef,
    Provider,
    ProviderError,
    ProviderNotReady,
    UserRecord,
)
from providers.files import CsvSettings, FileProvider, JsonSettings
from providers.fleet import FleetProvider, FleetSettings
from providers.google import GoogleProvider, GoogleSettings
from providers.identifiers import DeviceIdentifier, IdentifierKind, IdentifierShapeError, classify
from providers.intune import IntuneProvider, IntuneSettings
from providers.jamf import JamfProvider, JamfSettings
from providers.kandji import KandjiProvider, KandjiSettings
from providers.mosyle import MosyleProvider, MosyleSettings
from providers.registry import ProviderSettings, build_provider, preflight_problems
from providers.workspaceone import WorkspaceOneProvider, WorkspaceOneSettings

__all__ = [
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
