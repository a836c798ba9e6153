"""Workspace ONE credentials: an OAuth client at the region's token URL, or Basic + API key.

OAuth (SaaS only) posts ``client_credentials`` with the client id and secret; the token lasts
an hour. Basic sends an admin's user name and password on every call together with the
``aw-tenant-code`` header, so there is no token to fetch and a 401 means "not ready".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from providers._http import FormTokenIssuer, UpstreamClient, split_url
from providers.observe import NO_HOOKS, ProviderHook
from providers.workspaceone._settings import WorkspaceOneSettings


class WorkspaceOneTokens(FormTokenIssuer):
    """Client-credentials tokens from the regional Workspace ONE token service."""

    def __init__(
        self,
        name: str,
        settings: WorkspaceOneSettings,
        login: UpstreamClient,
        *,
        on_state: Callable[[bool], None],
        hooks: ProviderHook = NO_HOOKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert settings.token_url is not None  # noqa: S101 - guaranteed by the settings
        super().__init__(
            name,
            login,
            split_url(settings.token_url)[1],
            vendor="Workspace ONE",
            what="the OAuth client (client_id, client_secret)",
            margin=settings.token_margin,
            on_state=on_state,
            hooks=hooks,
            clock=clock,
        )
        self._settings = settings

    async def form(self) -> dict[str, str]:
        """``grant_type=client_credentials`` with the client's id and secret."""
        secret = self._settings.client_secret
        assert secret is not None  # noqa: S101 - guaranteed by the settings
        return {
            "grant_type": "client_credentials",
            "client_id": self._settings.client_id or "",
            "client_secret": secret.get_secret_value(),
        }

    def secrets(self) -> tuple[str, ...]:
        """The client secret never appears in a refusal message."""
        secret = self._settings.client_secret
        return (secret.get_secret_value(),) if secret is not None else ()
