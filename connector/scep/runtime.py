"""What the app holds for SCEP: each webhook's validator, the challenge issuers by path, the
Intune clients (one per Intune provider and what it asks as, shared by validation and
notifications), and the
background notifier. Built from one config in `create_app` and again by each config reload,
which swaps the new one in with the routes and retires the old one; `scep_ctx` closes the one
in use at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from connector.observe import Hook
from connector.scep._issue import ChallengeIssuer
from connector.scep._notify import SENDING, Notifier
from connector.scep._settings import ChallengeValidatorSettings, IntuneValidatorSettings
from connector.scep._validators import ChallengeValidator, IntuneValidator, Validator
from connector.settings import Settings, WebhookSettings
from connector.store import Store
from providers.intune import IntuneScepClient, IntuneSettings

MIN_CHAIN_BUDGET = 1.0
"""Seconds the provider chain keeps at least, whatever the validator's timeout."""


class ScepRuntime:
    """The SCEP parts built from one config (see the module docstring)."""

    def __init__(self, settings: Settings, store: Store, hooks: Hook) -> None:
        self.validators: dict[str, Validator] = {}
        self.issuers: dict[str, ChallengeIssuer] = {}
        self.forwarders: dict[str, tuple[IntuneScepClient, IntuneValidatorSettings]] = {}
        # One per (provider, scope, caller_info): webhooks that sign in alike share a token.
        self.clients: dict[tuple[str, str, str], IntuneScepClient] = {}
        self.closed = False
        """Whether `aclose` has run (a reload closes the runtime it replaced)."""
        for hook in settings.webhooks:
            validator = hook.validator
            if isinstance(validator, ChallengeValidatorSettings):
                self.validators[hook.name] = ChallengeValidator(hook.name, store, validator)
                self.issuers[validator.path] = ChallengeIssuer(hook, validator, store)
            elif isinstance(validator, IntuneValidatorSettings):
                client = self._client(settings, validator, hooks)
                if hook.kind == "SCEPCHALLENGE":
                    self.validators[hook.name] = IntuneValidator(client, validator)
                else:
                    self.forwarders[hook.name] = (client, validator)
        # Reports leave one of their client's connections to validations (with a single
        # connection they still take turns with them, one report at a time).
        pools = [
            getattr(settings.providers[v.provider], "max_connections", SENDING)
            for _, v in self.forwarders.values()
        ]
        self.notifier = Notifier(sending=max(1, min([SENDING, *(n - 1 for n in pools)])))

    def _client(
        self, settings: Settings, validator: IntuneValidatorSettings, hooks: Hook
    ) -> IntuneScepClient:
        name = validator.provider
        key = (name, validator.scope, validator.caller_info)
        if key not in self.clients:
            provider = settings.providers[name]
            if not isinstance(provider, IntuneSettings):  # pragma: no cover - settings check
                raise TypeError(f"provider {name} is not an Intune provider")
            self.clients[key] = IntuneScepClient(
                f"{name}-scep",
                provider,
                scope=validator.scope,
                caller_info=validator.caller_info,
                hooks=hooks,
            )
        return self.clients[key]

    def chain_budget(self, hook: WebhookSettings, budget: float) -> float:
        """The provider chain's share of `budget` once the validator has had its time."""
        validator = self.validators.get(hook.name)
        if validator is None:
            return budget
        return max(budget - validator.timeout, MIN_CHAIN_BUDGET)

    @property
    def notify_grace(self) -> float:
        """Seconds its reports to Intune may still need (the longest ``notify_timeout``)."""
        timeouts = [settings.notify_timeout for _, settings in self.forwarders.values()]
        return max(timeouts, default=0.0)

    async def aclose(self, grace: float = 5.0) -> None:
        """Give background reports `grace` seconds to finish, and challenges being given back
        their store's time, then close the Intune clients."""
        await self.notifier.aclose(grace)
        for validator in self.validators.values():
            if isinstance(validator, ChallengeValidator):
                await validator.settle()
        for client in self.clients.values():
            await client.aclose()
        self.closed = True


@dataclass(slots=True)
class CurrentScep:
    """The SCEP runtime in use; mutable because aiohttp freezes the app's own keys at start.

    A reload replaces `runtime` in the same step as the routes. The challenge URL reads it once
    per request; a webhook call reads the runtime its `WebhookRuntime` was built with, so either
    sees one config's SCEP parts whole.

    Attributes:
        runtime: The runtime built from the config now live.
    """

    runtime: ScepRuntime


SCEP = web.AppKey("scep", CurrentScep)


async def scep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Close the SCEP clients and wait for pending notifications at shutdown."""
    yield
    await app[SCEP].runtime.aclose()
