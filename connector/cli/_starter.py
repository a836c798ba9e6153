"""The starter config `init` writes: TOML with comments, rendered from plain values (pure).

The provider table is drawn from the kind's own settings model (`providers.registry.KINDS`), so
every kind gets a template whose keys are exactly the ones the service accepts: what must be
filled in first, then every optional key commented out with its default.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from providers.registry import KINDS

PLACEHOLDER = "CHANGE-ME"
PLACEHOLDER_ID = "replace-with-the-webhook-id-step-ca-printed"
"""Not a UUID on purpose: `check-config` warns until step-ca's id replaces it."""
FILE_KINDS = {"csv": "inventory.csv", "json": "inventory.json"}
EMPTY_INVENTORY = {
    "csv": "serial,udid,name,model,platform,os_version,managed,supervised,owner_type,"
    "last_contact,username,email,full_name,department,title,groups\n",
    "json": '{"devices": []}\n',
}
# Credentials that are alternatives (so none is "required" by the model) but that most admins use.
FILL_IN: dict[str, tuple[str, ...]] = {
    "jamf": ("client_id", "client_secret"),
    "intune": ("client_secret",),
    "workspaceone": ("client_id", "client_secret"),
}
DOCS = {"csv": "docs/providers/files.md", "json": "docs/providers/files.md"}


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook of the starter config.

    Attributes:
        name: Its name in step-ca and in the config (`people`, `gate`).
        kind: ``ENRICHING`` or ``AUTHORIZING``.
        id: step-ca's id, or `PLACEHOLDER_ID` until it is known.
    """

    name: str
    kind: str
    id: str

    @property
    def path(self) -> str:
        """The URL path the connector serves it on."""
        return f"/webhooks/{self.name}"

    @property
    def secret_file(self) -> str:
        """The secret's file, beside the config."""
        return f"{self.name}.secret"


@dataclass(frozen=True, slots=True)
class Starter:
    """What the starter config is made of.

    Attributes:
        kind: The provider kind.
        url: The connector's base URL as step-ca calls it (``https://host:port``).
        webhooks: The webhooks, ENRICHING first.
    """

    kind: str
    url: str
    webhooks: tuple[Webhook, ...]

    @property
    def provider(self) -> str:
        """The provider's name in the config."""
        return "inventory" if self.kind in FILE_KINDS else self.kind

    @property
    def port(self) -> int:
        """The port to listen on: the one step-ca calls."""
        return urlsplit(self.url).port or 443


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(a) for a in typing.get_args(annotation))


def _is_path(annotation: Any) -> bool:
    if annotation is Path:
        return True
    return any(_is_path(a) for a in typing.get_args(annotation))


def toml_value(value: Any) -> str:
    """A TOML literal for a simple default (text, number, boolean, list of text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON's escapes are valid in TOML basic strings
    if isinstance(value, frozenset | set):
        value = sorted(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def credential_file(provider: str, key: str) -> str:
    """Where `init` puts a provider credential's (empty) file: ``jamf-client_secret.secret``."""
    return f"{provider}-{key}.secret"


def _fill_in(provider: str, kind: str, key: str, field: FieldInfo) -> str:
    if key == "path" and kind in FILE_KINDS:
        return f'path = "{FILE_KINDS[kind]}"'
    if _is_secret(field.annotation):
        return f'{key} = {{ file = "{credential_file(provider, key)}" }}'
    return f'{key} = "{PLACEHOLDER}"'


def _optional(key: str, field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        if _is_secret(field.annotation):
            return f'# {key} = {{ file = "..." }}'
        return f'# {key} = "{"FILE" if _is_path(field.annotation) else "..."}"'
    try:
        return f"# {key} = {toml_value(default)}"
    except TypeError:
        return f"# {key} = ..."


def provider_table(provider: str, kind: str) -> tuple[list[str], list[str]]:
    """The ``[providers.NAME]`` lines for `kind`, and the credential files they name."""
    model: type[BaseModel] = KINDS[kind].settings
    fields = {k: f for k, f in model.model_fields.items() if k != "kind"}
    first = [k for k, f in fields.items() if f.is_required()]
    first += [k for k in FILL_IN.get(kind, ()) if k not in first]
    docs = DOCS.get(kind, f"docs/providers/{kind}.md")
    lines = [f"[providers.{provider}]", f'kind = "{kind}"']
    if kind not in FILE_KINDS:
        lines.append(f"# Fill these in ({docs}); a credential goes into its file (mode 0600):")
    lines.extend(_fill_in(provider, kind, key, fields[key]) for key in first)
    lines.append(f"# Optional, shown with their defaults ({docs}):")
    lines.extend(_optional(key, field) for key, field in fields.items() if key not in first)
    files = [credential_file(provider, k) for k in first if _is_secret(fields[k].annotation)]
    return lines, files


def _webhook(starter: Starter, hook: Webhook, serial_only: bool) -> list[str]:
    lines = [
        "[[webhooks]]",
        f'name = "{hook.name}"'
        + (f"  # the template reads .Webhooks.{hook.name}" if hook.kind == "ENRICHING" else ""),
        f'kind = "{hook.kind}"',
        f'path = "{hook.path}"',
        f'id = "{hook.id}"',
        f'secret = {{ file = "{hook.secret_file}" }}    # step-ca makes one secret per webhook',
        f'providers = ["{starter.provider}"]',
    ]
    if serial_only:
        lines.append(
            'identifier_kinds = ["serial"]   # have the ACME payload attest the serial number'
        )
    lines += [
        "",
        "[webhooks.policy]",
        "managed = true",
        '# groups = { any_of = ["MDA Pilot"], none_of = ["Lost or Stolen"] }',
        '# max_last_contact_age = "14d"',
        '# min_os_version = { macOS = "15.0", iOS = "18.0" }',
    ]
    if hook.kind == "ENRICHING":
        lines += [
            "",
            "[webhooks.enrichment]",
            "personal_data = false           # true adds e-mail and full name to the certificate",
        ]
    return lines


def render(starter: Starter) -> tuple[str, list[str]]:
    """The config text, and the credential files it names."""
    table, files = provider_table(starter.provider, starter.kind)
    serial_only = not getattr(KINDS[starter.kind].settings, "matches_mac_provisioning_udid", False)
    lines = [
        "# posture-connector: written by `posture-connector init`. Every key:",
        "# docs/configuration.md. Check it: posture-connector check-config --config FILE",
        "",
        "[server]",
        'host = "0.0.0.0"',
        f"port = {starter.port}",
        "# A self-signed development certificate, so this file works at once. step-ca does",
        "# not trust it: before step-ca calls the connector, use a certificate from the CA:",
        "#   step ca certificate HOST tls/tls.crt tls/tls.key --not-after 24h",
        "dev_certificate = true",
        '# tls_cert = "tls/tls.crt"',
        '# tls_key = "tls/tls.key"',
        "# mTLS, so only step-ca's own certificate gets in (step-ca setup guide, section 5):",
        '# client_ca = "tls/root_ca.crt"',
        '# client_dns_names = ["ca.example.com"]',
        "",
        "[logging]",
        'format = "json"',
        "",
        *table,
        "",
    ]
    for hook in starter.webhooks:
        lines += [*_webhook(starter, hook, serial_only), ""]
    return "\n".join(lines), files


def step_commands(starter: Starter, provisioner: str, hooks: Sequence[Webhook]) -> list[str]:
    """The `step ca provisioner webhook add` commands for `hooks`, output kept in files that
    only their owner may read (``umask 077``: the output holds the webhook's secret)."""
    lines: list[str] = []
    for hook in hooks:
        lines += [
            f"(umask 077; step ca provisioner webhook add {provisioner} {hook.name} \\",
            f"  --url {starter.url.rstrip('/')}{hook.path} \\",
            f"  --kind {hook.kind} --cert-type X509 > {hook.name}.webhook)",
        ]
    return lines
