"""Connection settings every HTTP provider shares, and the rule for upstream URLs."""

from __future__ import annotations

import ssl

import httpx
from pydantic import ConfigDict, Field

from providers.config_types import ConfigPath
from providers.sync_options import SyncOptions

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts where plain http is accepted: a fake upstream on this machine, never a real one."""


class UpstreamSettings(SyncOptions):
    """Connection settings shared by every HTTP provider (fields of its config table), and the
    sync keys (`mode`, `sync_interval`, `max_staleness`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_timeout: float = Field(default=2.0, gt=0, le=30)
    read_timeout: float = Field(default=3.0, gt=0, le=30)
    budget: float = Field(
        default=4.0, gt=0, le=9, description="seconds for a whole lookup, retries included"
    )
    retries: int = Field(default=2, ge=0, le=5, description="extra attempts on retryable errors")
    backoff: float = Field(default=0.2, gt=0, le=5, description="first backoff in seconds")
    max_connections: int = Field(default=5, ge=1, le=100)
    max_answer_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="largest answer read, once decoded (gzip); a larger one fails the call",
    )
    verify_tls: bool = True
    ca_bundle: ConfigPath | None = None

    def preflight(self) -> list[str]:
        """Problems found before start: ``key: problem`` lines (a CA bundle missing, or one
        OpenSSL cannot read: the client would fail to build at start, or in a reload)."""
        if self.ca_bundle is None:
            return []
        if not self.ca_bundle.is_file():
            return [f"ca_bundle: no such file: {self.ca_bundle}"]
        try:
            ssl.create_default_context(cafile=str(self.ca_bundle))
        except (ssl.SSLError, ValueError) as exc:
            why = getattr(exc, "reason", None) or type(exc).__name__
            return [f"ca_bundle: {self.ca_bundle} holds no certificate OpenSSL reads ({why})"]
        except OSError as exc:
            return [f"ca_bundle: {self.ca_bundle}: {exc.strerror or type(exc).__name__}"]
        return []


def checked_url(value: str, *, origin_only: bool = False) -> str:
    """An upstream URL without trailing slash: https, or plain http on loopback only.

    A token or client secret sent over plain http to a remote host is readable on the way, so
    only a fake on this machine may use it. Raises `ValueError` with the reason.
    """
    value = value.strip().rstrip("/")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError("expected an https:// URL")
    if url.query or url.fragment or " " in value:
        raise ValueError("expected a URL without query or fragment")
    if origin_only and url.path not in ("", "/"):
        raise ValueError("expected a scheme and host only, no path or query")
    if url.scheme == "http" and url.host not in LOOPBACK_HOSTS:
        raise ValueError(
            "plain http is allowed only for 127.0.0.1, localhost or ::1 (a fake); use https://"
        )
    return str(url).rstrip("/") if origin_only else value
