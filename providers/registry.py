"""Provider kinds: ``kind`` → (settings model, factory, preflight), the one table to extend.

Adding a provider kind is one new package (settings model with a ``kind`` literal, provider
class) plus ONE line in `KINDS`. `ProviderSettings` (the discriminated union of config tables)
and `build_provider` are derived from it, and `preflight_problems` lets the service check files
a config names without knowing any kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, Protocol, TypeVar, Union

from pydantic import BaseModel, Field

from providers.abm import AbmProvider, AbmSettings
from providers.base import Provider
from providers.files import CsvSettings, FileProvider, JsonSettings
from providers.fleet import FleetProvider, FleetSettings
from providers.google import GoogleProvider, GoogleSettings
from providers.intune import IntuneProvider, IntuneSettings
from providers.jamf import JamfProvider, JamfSettings
from providers.kandji import KandjiProvider, KandjiSettings
from providers.mosyle import MosyleProvider, MosyleSettings
from providers.observe import NO_HOOKS, ProviderHook
from providers.workspaceone import WorkspaceOneProvider, WorkspaceOneSettings

_S = TypeVar("_S", bound=BaseModel)
_S_contra = TypeVar("_S_contra", bound=BaseModel, contravariant=True)


class Factory(Protocol[_S_contra]):
    """Builds a provider that is not started yet (a provider class fits as it is)."""

    def __call__(self, name: str, settings: _S_contra, *, hooks: ProviderHook) -> Provider:
        """The provider called `name` for this config table, reporting to `hooks`."""
        ...


class ProviderConfig(Protocol):
    """What the service reads from any ``[providers.NAME]`` table."""

    @property
    def kind(self) -> str:
        """The table's ``kind``."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderKind(Generic[_S]):
    """One provider kind.

    Attributes:
        settings: The pydantic model of its config table (with a ``kind`` literal).
        factory: Builds the (not yet started) provider: ``factory(name, settings, hooks=...)``.
        preflight: ``key: problem`` lines found before start (files that do not exist).
    """

    settings: type[_S]
    factory: Factory[_S]
    preflight: Callable[[_S], Sequence[str]] = lambda settings: ()


def _file_provider(
    name: str, settings: CsvSettings | JsonSettings, *, hooks: ProviderHook
) -> Provider:
    del hooks  # a file inventory makes no upstream calls
    return FileProvider(name, settings)


def _inventory_file(settings: CsvSettings | JsonSettings) -> Sequence[str]:
    return () if settings.path.is_file() else (f"path: no such file: {settings.path}",)


KINDS: dict[str, ProviderKind[Any]] = {
    "csv": ProviderKind(CsvSettings, _file_provider, _inventory_file),
    "json": ProviderKind(JsonSettings, _file_provider, _inventory_file),
    "jamf": ProviderKind(JamfSettings, JamfProvider, JamfSettings.preflight),
    "intune": ProviderKind(IntuneSettings, IntuneProvider, IntuneSettings.preflight),
    "kandji": ProviderKind(KandjiSettings, KandjiProvider, KandjiSettings.preflight),
    "fleet": ProviderKind(FleetSettings, FleetProvider, FleetSettings.preflight),
    "mosyle": ProviderKind(MosyleSettings, MosyleProvider, MosyleSettings.preflight),
    "abm": ProviderKind(AbmSettings, AbmProvider, AbmSettings.preflight),
    "google": ProviderKind(GoogleSettings, GoogleProvider, GoogleSettings.preflight),
    "workspaceone": ProviderKind(
        WorkspaceOneSettings, WorkspaceOneProvider, WorkspaceOneSettings.preflight
    ),
}
"""Every provider kind by its ``kind`` value."""


def settings_union(kinds: Mapping[str, ProviderKind[Any]]) -> Any:
    """The ``kind``-discriminated union of the settings models in `kinds` (for pydantic)."""
    models = tuple(kind.settings for kind in kinds.values())
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 - built at runtime


if TYPE_CHECKING:
    ProviderSettings = ProviderConfig
else:
    ProviderSettings = settings_union(KINDS)
"""The ``[providers.NAME]`` table: one model per ``kind``, chosen by ``kind``.

For type checkers it is the `ProviderConfig` protocol; at runtime the union pydantic validates.
"""


def build_provider(
    name: str, settings: ProviderSettings, *, hooks: ProviderHook = NO_HOOKS
) -> Provider:
    """Create the provider a config table describes (not started yet); `hooks` observe it."""
    return KINDS[settings.kind].factory(name, settings, hooks=hooks)


def preflight_problems(settings: ProviderSettings) -> list[str]:
    """Problems of one provider table found before start, each as ``key: problem``."""
    return list(KINDS[settings.kind].preflight(settings))
