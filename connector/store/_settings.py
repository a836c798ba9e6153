"""``[store]``: where the shared state lives, and how to open it.

SQLite by default, in a file beside the config: nothing to install, one replica. PostgreSQL by
URL for several replicas. The URL may carry a password, so it is a secret (inline, env or file)
and only `redacted` forms of it are ever logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.store._drivers import Driver, LazyDriver, PostgresDriver, SqliteDriver
from connector.store._store import Store
from providers.config_types import ConfigPath, Secret

DEFAULT_SQLITE = "posture-connector.sqlite3"


class StoreSettings(BaseModel):
    """``[store]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    path: ConfigPath = Field(default=Path(DEFAULT_SQLITE), validate_default=True)
    url: Secret | None = Field(default=None, description="postgresql://user:pass@host/db")
    pool_size: int = Field(default=10, ge=1, le=100)
    timeout: float = Field(default=2.0, gt=0, le=30, description="seconds per statement")
    sync_lease_ttl: float = Field(
        default=30.0,
        ge=3,
        le=3600,
        description="seconds a dead sync leader holds the lease before another replica takes over",
    )
    audit_retention_days: int = Field(
        default=400, ge=0, description="days a decision is kept in the audit log (0: forever)"
    )

    @model_validator(mode="after")
    def _url_for_postgres(self) -> StoreSettings:
        if self.backend == "postgresql":
            if self.url is None:
                raise ValueError('backend = "postgresql" needs url')
            url = self.url.get_secret_value()
            scheme, slashes, _ = url.partition("://")
            if scheme.lower() not in ("postgresql", "postgres") or not slashes:
                # Not only the scheme: "postgresql:/user:pw@host/db" has one, and no host part
                # (so no password) to a reader, which would show it as the path.
                raise ValueError("url must start with postgresql://")
            if "@" in _after_authority(url) or _authority(url).count("@") > 1:
                # A password with a bare "/", "?" or "#" ends the host part early: its rest
                # would be read as the port and path, and so shown wherever the URL is.
                raise ValueError(
                    "url has an '@' in its password or after its host: percent-encode '/', "
                    "'?', '#' and '@' in the user name and password (%2F, %3F, %23, %40)"
                )
        elif self.url is not None:
            raise ValueError('url is for backend = "postgresql"; SQLite uses path')
        return self

    @property
    def redacted(self) -> str:
        """Where the store is, without a password."""
        if self.backend == "sqlite":
            return f"sqlite:{self.path}"
        assert self.url is not None  # noqa: S101 - checked by the validator
        parts = urlsplit(self.url.get_secret_value())
        # Taken as written, never parsed further (a port that is not a number must not raise
        # with the text in it); the validator made sure no part of the password is past "@".
        user, at, host = parts.netloc.rpartition("@")
        name = user.partition(":")[0]
        return f"postgresql://{name}{at if name else ''}{host}{parts.path}"


def _authority(url: str) -> str:
    """A URL's user, password, host and port (asyncpg cuts the user part at its first "@",
    other readers at the last: only one may be there)."""
    rest = url.partition("://")[2]
    return rest[: len(rest) - len(_after_authority(url))]


def _after_authority(url: str) -> str:
    """What follows a URL's user, host and port: its path, query and fragment."""
    rest = url.partition("://")[2]
    for index, char in enumerate(rest):
        if char in "/?#":
            return rest[index:]
    return ""


def connect_store(settings: StoreSettings) -> Store:
    """A store that connects on first use: no I/O here, so the service can start (not ready)
    while the database is away. Call `Store.migrate` until it succeeds before using it."""

    async def opener() -> Driver:
        if settings.backend == "sqlite":
            return await SqliteDriver.open(settings.path)
        assert settings.url is not None  # noqa: S101 - checked by the validator
        return await PostgresDriver.open(
            settings.url.get_secret_value(),
            pool_size=settings.pool_size,
            statement_timeout=settings.timeout,
        )

    return Store(LazyDriver(settings.backend, opener), describe=settings.redacted)


async def open_store(settings: StoreSettings) -> Store:
    """Connect and migrate; raises `StoreError` (or `SchemaTooNew`) with a password-free reason."""
    store = connect_store(settings)
    try:
        await store.migrate()
    except BaseException:
        await store.aclose()
        raise
    return store
