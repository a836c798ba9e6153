"""Typed keys for what the app object holds (the only mutable state of the service)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from connector.decision import DecisionMemo
from connector.listener import Listener
from connector.lookup import ProviderChain
from connector.observe import Hook
from connector.scep.runtime import ScepRuntime
from connector.settings import Settings, WebhookSettings
from providers import ProviderSettings
from providers.base import Provider


@dataclass(frozen=True, slots=True)
class WebhookRuntime:
    """A configured webhook with its provider chain.

    Attributes:
        settings: The ``[[webhooks]]`` entry.
        chain: Its providers, in order, behind the shared cache.
        scep: The SCEP parts built from the same config (validators, Intune clients), so a call
            that outlives a reload finishes with one config's webhook and validator.
        memo: What its decisions may reuse (`DecisionMemo`); a reload builds a new runtime.
    """

    settings: WebhookSettings
    chain: ProviderChain
    scep: ScepRuntime | None = field(default=None, compare=False, repr=False)
    memo: DecisionMemo = field(default_factory=DecisionMemo, compare=False, repr=False)


@dataclass(slots=True)
class Served:
    """The provider tables the running providers started with: a reload replaces them in the
    same step as `PROVIDERS` and `ROUTES` (the webhooks served are the routes'). `SETTINGS` is
    the config the service started with, whose restart-only sections still apply.

    Attributes:
        providers: Provider name to its config table.
    """

    providers: dict[str, ProviderSettings]


SETTINGS = web.AppKey("settings", Settings)
SERVED = web.AppKey("served", Served)
PROVIDERS = web.AppKey("providers", dict[str, Provider])
ROUTES = web.AppKey("routes", dict[str, dict[str, WebhookRuntime]])
HOOKS: web.AppKey[Hook] = web.AppKey("hooks")
Clock = Callable[[], datetime]
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
SERVICE_LISTENER = web.AppKey("service_listener", Listener)
"""The webhook listener, set by `server.running` (absent when a test serves the app itself)."""
