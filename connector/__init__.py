"""posture-connector: a step-ca webhook that lets only your managed devices get certificates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """`create_app` on first use: the command line's entry must start without the service's
    imports (`connector.entry`)."""
    if name == "create_app":
        from connector.app import create_app  # noqa: PLC0415 - lazily, see above

        return create_app
    raise AttributeError(f"module 'connector' has no attribute {name!r}")
