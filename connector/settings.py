"""Configuration: one TOML file validated into frozen settings, refused whole if anything is off.

Every problem is reported with the file and the key path (``webhooks[0].secret``); values are
never echoed, so a mistyped secret cannot leak into a terminal or a log.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connector.enrichment import EnrichmentSettings
from connector.policy import PolicySettings
from connector.scep import ChallengeValidatorSettings, IntuneValidatorSettings, ValidatorSettings
from connector.signing import decode_secret
from connector.store import StoreSettings
from providers import ProviderSettings
from providers.config_types import ConfigPath, Secret
from providers.identifiers import IdentifierKind
from providers.unicode import ascii_digits

RESERVED_PATHS = frozenset({"/healthz", "/readyz"})
MIN_LOOP_STALL_TIMEOUT = 0.5
"""Seconds `server.loop_stall_timeout` may be at least (5 of the watchdog's heartbeats)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(_Frozen):
    """``[server]``: how the connector listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    dev_certificate: bool = False
    dev_certificate_dir: ConfigPath | None = None
    plain_http: bool = False
    client_ca: ConfigPath | None = None
    client_dns_names: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    clock_skew: float = Field(default=300.0, gt=0, le=3600)
    cert_reload_interval: float = Field(default=30.0, ge=0)
    provider_retry_interval: float = Field(default=15.0, gt=0, le=3600)
    shutdown_timeout: float = Field(default=10.0, gt=0, le=120)
    # One deadline for a whole provider chain: step-ca waits 10 s per call (its one retry
    # included), so the answer must leave well before that.
    decision_budget: float = Field(default=8.0, gt=0, le=9.5)
    read_timeout: float = Field(default=10.0, gt=0, le=300)
    keepalive_timeout: float = Field(default=15.0, gt=0, le=3600)
    max_connections: int = Field(default=512, ge=1, le=1_000_000)
    provider_start_timeout: float = Field(default=30.0, gt=0, le=3600)
    # SIGTERM first reports not ready and closes each connection after its answer, for this
    # long, so a load balancer's health check takes the replica out before its port closes.
    drain_period: float = Field(default=5.0, ge=0, le=300)
    # A separate thread reports an event loop that has not run for this long (0: no watchdog).
    loop_stall_timeout: float = Field(default=2.0, ge=0, le=60)

    @field_validator("loop_stall_timeout")
    @classmethod
    def _several_heartbeats(cls, value: float) -> float:
        # The watchdog's heartbeat runs every 0.1 s: a shorter limit than a few of them is
        # exceeded by an idle loop, and /readyz would say loop-stalled for ever.
        if 0 < value < MIN_LOOP_STALL_TIMEOUT:
            raise ValueError(f"use 0 (no watchdog) or at least {MIN_LOOP_STALL_TIMEOUT:g} seconds")
        return value

    # uvloop (libuv) serves a call in about 10 % less CPU than asyncio's own loop; "auto" uses
    # it where it is installed (every platform but Windows), "asyncio" is the way back.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    @field_validator("event_loop")
    @classmethod
    def _loop_installed(cls, value: str) -> str:
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError('uvloop is not installed here; use "auto" or "asyncio"')
        return value

    @model_validator(mode="after")
    def _one_way_to_listen(self) -> ServerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        ways = [self.plain_http, self.tls_cert is not None, self.dev_certificate]
        if sum(ways) == 0:
            raise ValueError(
                "set tls_cert and tls_key, or dev_certificate = true, "
                "or plain_http = true (only behind a TLS-terminating proxy)"
            )
        if self.plain_http and (self.tls_cert is not None or self.dev_certificate):
            raise ValueError("plain_http excludes tls_cert and dev_certificate")
        if self.client_ca is not None and self.plain_http:
            raise ValueError("client_ca (mTLS) needs TLS; it cannot be used with plain_http")
        if self.client_dns_names and self.client_ca is None:
            raise ValueError("client_dns_names needs client_ca")
        return self


class LoggingSettings(_Frozen):
    """``[logging]``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    personal_data: bool = False


class CacheSettings(_Frozen):
    """``[cache]``: TTLs in seconds; 0 disables that cache."""

    found_ttl: float = Field(default=300.0, ge=0)
    not_found_ttl: float = Field(default=60.0, ge=0)
    max_entries: int = Field(default=10_000, ge=1)


class BasicAuth(_Frozen):
    """HTTP basic credentials step-ca sends (``--basic-auth-username``)."""

    username: str = Field(min_length=1)
    password: Secret


class WebhookSettings(_Frozen):
    """One ``[[webhooks]]`` entry: a step-ca webhook served on `path`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    kind: Literal["AUTHORIZING", "ENRICHING", "SCEPCHALLENGE", "NOTIFYING"]
    path: str = Field(pattern=r"^/[A-Za-z0-9._~/-]*$")
    id: str = Field(min_length=1, max_length=128)
    secret: Secret
    # A rotation window: step-ca's next id and secret, accepted beside the current ones.
    next_id: str | None = Field(default=None, min_length=1, max_length=128)
    next_secret: Secret | None = None
    bearer_token: Secret | None = None
    basic_auth: BasicAuth | None = None
    require_client_cert: bool = False
    # Every kind but NOTIFYING looks devices up; `_some_providers` says so.
    providers: tuple[str, ...] = Field(default=(), validate_default=True)
    identifier_kinds: frozenset[IdentifierKind] = frozenset(
        {IdentifierKind.SERIAL, IdentifierKind.UDID}
    )
    on_missing_identifier: Literal["deny", "allow"] = "deny"
    on_provider_failure: Literal["deny", "next"] = "deny"
    # "shadow": answer allow whatever the policy says, and record what it would have decided.
    mode: Literal["enforce", "shadow"] = "enforce"
    policy: PolicySettings = Field(default_factory=PolicySettings)
    enrichment: EnrichmentSettings = Field(default_factory=EnrichmentSettings)
    # SCEPCHALLENGE: how the challenge is judged; NOTIFYING: where results also go (intune).
    validator: ValidatorSettings | None = None

    @field_validator("providers")
    @classmethod
    def _some_providers(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if not value and info.data.get("kind") != "NOTIFYING":
            raise ValueError(
                "Tuple should have at least 1 item (only a NOTIFYING webhook looks nothing up)"
            )
        return value

    @field_validator("path")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_PATHS:
            raise ValueError(f"{value} is reserved for health checks")
        return value

    @field_validator("secret", "next_secret")
    @classmethod
    def _base64(cls, value: Any) -> Any:
        if value is None:
            return value
        raw = value.get_secret_value()
        if raw:
            decode_secret(raw)
        return value

    @model_validator(mode="after")
    def _authenticated(self) -> WebhookSettings:
        if not self.secret.get_secret_value() and not self.require_client_cert:
            raise ValueError(
                "an empty secret (a webhook declared only in ca.json) is accepted only with "
                "require_client_cert = true"
            )
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("bearer_token and basic_auth exclude each other (step-ca sends one)")
        if self.next_secret is not None and not self.next_secret.get_secret_value():
            raise ValueError("next_secret is empty: remove it, or give the new secret")
        if self.next_id is not None and self.next_secret is None:
            raise ValueError("next_id needs next_secret (step-ca makes a new secret with a new id)")
        if self.kind == "SCEPCHALLENGE" and self.validator is None:
            raise ValueError(
                "a SCEPCHALLENGE webhook needs [webhooks.validator] "
                '(kind = "intune" or "challenge")'
            )
        if self.kind == "SCEPCHALLENGE" and self.mode == "shadow":
            raise ValueError(
                "a SCEPCHALLENGE webhook cannot run in shadow mode: it would accept any challenge"
            )
        if self.kind == "NOTIFYING" and isinstance(self.validator, ChallengeValidatorSettings):
            raise ValueError('a NOTIFYING webhook\'s validator can only be kind = "intune"')
        if self.kind in ("ENRICHING", "AUTHORIZING") and self.validator is not None:
            raise ValueError("validator belongs to SCEPCHALLENGE and NOTIFYING webhooks only")
        return self

    @property
    def returns_data(self) -> bool:
        """Whether an allow carries enrichment `data` (step-ca puts it under `.Webhooks`)."""
        return self.kind in ("ENRICHING", "SCEPCHALLENGE")

    @cached_property
    def hmac_key(self) -> bytes:
        """The decoded HMAC key (empty for ca.json-only webhooks), decoded once, not per call."""
        raw = self.secret.get_secret_value()
        return decode_secret(raw) if raw else b""

    @cached_property
    def hmac_keys(self) -> tuple[tuple[str, bytes], ...]:
        """Every accepted key with its label: ``current``, then ``next`` during a rotation."""
        if self.next_secret is None:
            return (("current", self.hmac_key),)
        return (
            ("current", self.hmac_key),
            ("next", decode_secret(self.next_secret.get_secret_value())),
        )

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids step-ca may send for this webhook: its id, and `next_id` during a rotation."""
        if self.next_id is None or self.next_id == self.id:
            return (self.id,)
        return (self.id, self.next_id)


METRICS_PATH = "/metrics"


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets: ``[::1]:9464``) as a pair; raises `ValueError`."""
    host, sep, port = value.rpartition(":")
    if not sep or not ascii_digits(port) or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9464 or [::1]:9464)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsSettings(_Frozen):
    """``[metrics]``: Prometheus metrics at ``/metrics``, on the service port or their own."""

    enabled: bool = True
    # "service": on the webhook listener (and its TLS); "host:port": a plain-HTTP listener.
    listen: str = "service"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value != "service":
            split_listen(value)
        return value


class TracingSettings(_Frozen):
    """``[tracing]``: OpenTelemetry spans sent over OTLP/HTTP; off unless enabled."""

    enabled: bool = False
    endpoint: str = Field(default="http://127.0.0.1:4318/v1/traces", pattern=r"^https?://")
    # Sent with every export (a collector's API key): secrets, never logged.
    headers: dict[str, Secret] = Field(default_factory=dict)
    service_name: str = Field(default="posture-connector", min_length=1, max_length=128)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    timeout: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _installed(self) -> TracingSettings:
        if self.enabled and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ValueError("tracing needs: pip install 'posture-connector[tracing]'")
        return self


class AdminSettings(_Frozen):
    """``[admin]``: the read-only admin page on its own plain-HTTP listener; off by default."""

    enabled: bool = False
    listen: str = "127.0.0.1:8444"
    token: Secret | None = None
    recent_decisions: int = Field(default=50, ge=1, le=1000)
    session_hours: float = Field(default=8.0, gt=0, le=168)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _token(self) -> AdminSettings:
        if self.enabled and (self.token is None or len(self.token.get_secret_value()) < 16):
            raise ValueError("enabled = true needs a token of at least 16 characters")
        return self


class Settings(_Frozen):
    """The whole configuration file."""

    server: ServerSettings
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    # A mapping default, validated like a written table: the SQLite path resolves against the
    # config file's folder, as every other path does.
    store: StoreSettings = Field(default={}, validate_default=True)
    providers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")], ProviderSettings] = (
        Field(min_length=1)
    )
    webhooks: tuple[WebhookSettings, ...] = Field(min_length=1)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    source: str = Field(default="<memory>", exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        # Every cross-reference problem, one per line, each led by its key path (the error's
        # own location is the top level); `settings_from_mapping` splits the lines.
        problems: list[str] = []
        names: dict[str, int] = {}
        routes: dict[tuple[str, str], int] = {}
        for index, hook in enumerate(self.webhooks):
            where = f"webhooks[{index}]"
            if hook.name in names:
                problems.append(
                    f"{where}.name: {hook.name!r} is already used by webhooks[{names[hook.name]}]"
                )
            names.setdefault(hook.name, index)
            for key, webhook_id in zip(("id", "next_id"), hook.ids, strict=False):
                if (hook.path, webhook_id) in routes:
                    problems.append(
                        f"{where}.{key}: webhooks[{routes[hook.path, webhook_id]}] already serves "
                        f"this id on {hook.path}"
                    )
                routes.setdefault((hook.path, webhook_id), index)
            missing = [p for p in hook.providers if p not in self.providers]
            if missing:
                problems.append(f"{where}.providers: unknown provider(s) {', '.join(missing)}")
            if hook.require_client_cert and self.server.client_ca is None:
                problems.append(f"{where}.require_client_cert: needs server.client_ca")
            if hook.path == METRICS_PATH and self._metrics_on_service:
                problems.append(
                    f'{where}.path: {METRICS_PATH} is served by [metrics] listen = "service"'
                )
            problems += self._validator_problems(index, hook)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def _metrics_on_service(self) -> bool:
        """Whether ``/metrics`` is a route of the service's own listener."""
        return self.metrics.enabled and self.metrics.listen == "service"

    def _validator_problems(self, index: int, hook: WebhookSettings) -> list[str]:
        """A validator's provider must be an Intune one; a challenge path must be its own."""
        where, validator = f"webhooks[{index}].validator", hook.validator
        if isinstance(validator, IntuneValidatorSettings):
            provider = self.providers.get(validator.provider)
            if provider is None:
                return [f"{where}.provider: unknown provider {validator.provider}"]
            if provider.kind != "intune":
                return [f"{where}.provider: {validator.provider} is not kind intune"]
        if isinstance(validator, ChallengeValidatorSettings):
            taken = {h.path for h in self.webhooks} | RESERVED_PATHS
            if self._metrics_on_service:
                taken.add(METRICS_PATH)
            taken |= {
                earlier.validator.path
                for earlier in self.webhooks[:index]
                if isinstance(earlier.validator, ChallengeValidatorSettings)
            }
            if validator.path in taken:
                return [f"{where}.path: {validator.path} is already served"]
        return []


class ConfigError(Exception):
    """When a configuration file cannot be used; `problems` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: invalid configuration ({len(problems)} problem(s))")
        self.source = source
        self.problems = problems


def load_settings(path: Path) -> Settings:
    """Read and validate a TOML config file."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, [f"{source}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, [f"{source}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"{source}: TOML syntax: {exc}"]) from None
    # Not resolved: through a symlinked config (a ConfigMap's ..data, a release switch) paths
    # keep naming what the link names now, not the folder it named at start.
    return settings_from_mapping(data, source=source, base_dir=path.absolute().parent)


def settings_from_mapping(
    data: dict[str, Any], *, source: str = "<memory>", base_dir: Path | None = None
) -> Settings:
    """Validate an already-parsed config mapping; relative paths resolve against `base_dir`."""
    try:
        return Settings.model_validate(
            {**data, "source": source}, context={"base_dir": base_dir or Path.cwd()}
        )
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        # A failing entry is dropped before the length check runs; that echo only confuses.
        deeper = {e["loc"][0] for e in errors if len(e["loc"]) > 1}
        problems: list[str] = []
        for error in errors:
            loc = error["loc"]
            if error["type"] == "too_short" and len(loc) == 1 and loc[0] in deeper:
                continue
            if not loc:  # cross-reference checks: each line names its own key path
                problems.extend(f"{source}: {line}" for line in _message(error).splitlines())
            else:
                problems.append(f"{source}: {_key_path(loc, data)}: {_message(error)}")
        raise ConfigError(source, problems) from None


def _message(error: Any) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _key_path(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    skip_tag = False
    for item in loc:
        if skip_tag:
            # Discriminated unions put the tag (`kind`) into the location; admins never wrote it.
            skip_tag = False
            if isinstance(node, dict) and item == node.get("kind"):
                continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(f".{item}" if parts else str(item))
        node = node[item] if isinstance(node, dict | list) and _has(node, item) else None  # type: ignore[index]
        if parts[:1] == ["providers"] and len(parts) == 2:
            skip_tag = True
    return "".join(parts) or "(top level)"


def _has(node: dict[str, Any] | list[Any], item: int | str) -> bool:
    if isinstance(node, list):
        return isinstance(item, int) and 0 <= item < len(node)
    return item in node
