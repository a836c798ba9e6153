"""The connector config the burst and hot-path benchmarks serve: one AUTHORIZING webhook."""

from __future__ import annotations

from typing import Any

SECRET = "cG9zdHVyZS1jb25uZWN0b3IgYmVuY2htYXJrIHNlY3JldCBrZXkgbWF0ZXJpYWwhISEhISEhISEhISEhIQ=="
HOOK_ID = "00000000-0000-4000-8000-00000000beef"


def gate_config(provider: dict[str, Any], logging: dict[str, Any]) -> dict[str, Any]:
    """Plain HTTP on a free loopback port, `provider` as ``inv``, the webhook at ``/gate``."""
    return {
        "server": {"plain_http": True, "host": "127.0.0.1", "port": 0},
        "logging": logging,
        "providers": {"inv": provider},
        "webhooks": [
            {
                "name": "gate",
                "kind": "AUTHORIZING",
                "path": "/gate",
                "id": HOOK_ID,
                "secret": SECRET,
                "providers": ["inv"],
            }
        ],
    }
