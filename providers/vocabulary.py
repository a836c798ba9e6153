"""The normalised vocabulary of `DeviceRecord`: the values providers put into its enum-like fields.

Providers write these exact spellings; the policy compares them case-insensitively and its
``check-config`` lint flags a configured value outside them as a likely typo. A provider that
learns a new value adds it here, so the policy accepts it without a second edit.
"""

from __future__ import annotations

COMPLIANCE_STATES: frozenset[str] = frozenset(
    {"unknown", "compliant", "noncompliant", "conflict", "error", "inGracePeriod", "configManager"}
)
"""``DeviceRecord.compliance``: Microsoft Graph's ``complianceState`` values."""

OWNER_TYPES: frozenset[str] = frozenset({"company", "personal"})
"""``DeviceRecord.owner_type``."""

PLATFORMS: frozenset[str] = frozenset(
    {
        "macOS",
        "iOS",
        "iPadOS",
        "tvOS",
        "visionOS",
        "watchOS",
        "Windows",
        "Android",
        "Linux",
        "ChromeOS",
    }
)
"""``DeviceRecord.platform``: Apple platforms from Jamf and files, operating systems from Intune."""

APPLE_PLATFORMS: frozenset[str] = frozenset(
    {"macOS", "iOS", "iPadOS", "tvOS", "visionOS", "watchOS"}
)
"""The platforms of `PLATFORMS` whose devices Apple attests by serial number or UDID."""


def is_apple_platform(platform: str) -> bool:
    """Whether an inventory's platform (any case) is one of `APPLE_PLATFORMS`."""
    return platform.strip().casefold() in _APPLE_FOLDED


_APPLE_FOLDED = frozenset(name.casefold() for name in APPLE_PLATFORMS)


_VIRTUAL_MODELS = (
    "vmware",
    "virtualmac",
    "apple virtual machine",
    "parallels",
    "virtualbox",
    "qemu",
)
_VIRTUAL_WORDS = ("virtual machine", "virtual platform")


def is_virtual_machine(model: str) -> bool:
    """Whether an inventory's model (name or identifier, any case) is a virtual machine's:
    VMware (``VMware7,1``, "VMware Virtual Platform"), Apple's Virtualization framework
    (``VirtualMac2,1``, "Apple Virtual Machine 1"), Parallels, VirtualBox, QEMU."""
    folded = model.strip().casefold()
    return folded.startswith(_VIRTUAL_MODELS) or any(w in folded for w in _VIRTUAL_WORDS)
