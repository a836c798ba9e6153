"""The provider seam: what an inventory source answers and how it fails.

Exceptions::

    ProviderError            any failure to answer (network, auth, upstream error, bad data)
    ├── ProviderNotReady     the provider has not loaded yet (file missing, token refused)
    └── CursorRejected       a saved listing cursor cannot be continued: list from the start

A provider answers `None` for "this device is not in my inventory": that is an answer, not an
error. The chain in `connector.lookup` turns a `ProviderError` into a fail-closed deny.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from providers.identifiers import DeviceIdentifier


class ProviderError(Exception):
    """When a provider cannot answer; the message is safe to log (no secrets, no tokens)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class ProviderNotReady(ProviderError):
    """When a provider has not (yet) loaded its inventory or credentials."""


class CursorRejected(ProviderError):
    """When a listing cannot resume from a saved cursor (another config, an expired page link)."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    """The person a device is assigned to.

    Attributes:
        username: Login name (Jamf username, Entra UPN).
        email: E-mail address.
        full_name: Display name.
        department: Department name (resolved, never an id).
        title: Job title or position.
        id: The upstream's id for the user, if any.
    """

    username: str | None = None
    email: str | None = None
    full_name: str | None = None
    department: str | None = None
    title: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class GroupRef:
    """A group the device (or its user) belongs to.

    Attributes:
        name: Display name.
        id: Upstream id, as a string.
        smart: True for Jamf smart groups, False for static ones, None when unknown.
        directory: Named in an identity provider where users may create groups and name them
            as they like (Fleet's IdP groups, synced from Entra or Okta), and known by name
            only: such a name that looks like a group id never meets a rule written as an id.
    """

    name: str
    id: str | None = None
    smart: bool | None = None
    directory: bool = False


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device as an inventory reports it, normalised across providers.

    `None` always means "the provider does not report this", never "false": policy rules on a
    field a provider leaves `None` fail closed.

    Attributes:
        provider: Name of the configured provider that answered.
        record_id: The upstream's own id for the record.
        serial: Hardware serial number.
        udid: UDID.
        name: Device name.
        model: Marketing model name.
        platform: "macOS", "iOS", "iPadOS", "tvOS", "visionOS", ...
        os_version: Dotted OS version.
        managed: Whether the MDM currently manages it.
        supervised: Whether it is supervised.
        compliance: Compliance state (Intune's values: compliant, noncompliant, ...).
        owner_type: "company" or "personal".
        jailbroken: Whether the MDM reports it jailbroken.
        last_contact: Last check-in with the MDM (timezone-aware).
        user: The assigned user.
        groups: Device and user groups.
    """

    provider: str
    record_id: str | None = None
    serial: str | None = None
    udid: str | None = None
    name: str | None = None
    model: str | None = None
    platform: str | None = None
    os_version: str | None = None
    managed: bool | None = None
    supervised: bool | None = None
    compliance: str | None = None
    owner_type: str | None = None
    jailbroken: bool | None = None
    last_contact: datetime | None = None
    user: UserRecord | None = None
    groups: tuple[GroupRef, ...] = field(default=())


@runtime_checkable
class Provider(Protocol):
    """An inventory source.

    `start` loads files or checks credentials and may raise `ProviderError`; the service keeps
    running and `/readyz` reports the provider as not ready until a later `start` (or reload)
    succeeds. `lookup` answers `None` when the device is unknown. Listing every device is a
    separate seam, `DeviceLister`, offered only by providers that can list.
    """

    @property
    def name(self) -> str:
        """The configured provider name (the key under ``[providers]``)."""
        ...

    @property
    def ready(self) -> bool:
        """True once the provider can answer lookups."""
        ...

    @property
    def cacheable(self) -> bool:
        """Whether the chain may cache this provider's answers.

        False for providers that answer from an in-memory index (files, memory, the store):
        there a cache saves nothing and only delays a change the inventory has loaded.
        """
        ...

    async def start(self) -> None:
        """Load the inventory or verify credentials."""
        ...

    async def lookup(self, identifier: DeviceIdentifier) -> DeviceRecord | None:
        """Return the device with this identifier, or `None` when the inventory lacks it."""
        ...

    async def aclose(self) -> None:
        """Release connections, watchers and tasks."""
        ...


@runtime_checkable
class DeviceLister(Protocol):
    """A provider that can list its whole inventory (files, Jamf, Intune...), for a sync mode.

    Remote providers also list page by page, ``list_page(cursor)`` answering a
    `providers._listing.ListedPage`, so that a sync interrupted by a failure resumes.
    """

    def iter_devices(self) -> AsyncIterator[DeviceRecord]:
        """Every device, page by page; a failure raises `ProviderError`."""
        ...
