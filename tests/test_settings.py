"""Configuration: every problem named by file and key path, secrets resolved and never echoed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from connector.settings import ConfigError, Settings, load_settings, settings_from_mapping
from providers import CsvSettings
from tests.helpers import AUTH_ID, SECRET, config, webhook

SENSITIVE = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr"  # base64, so it passes the shape check
TOKEN = "bearer-token-that-must-never-leak"
PASSWORD = "basic-password-that-must-never-leak"


def _problems(mapping: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(mapping, source="cfg.toml")
    assert info.value.source == "cfg.toml"
    return info.value.problems


def _base(tmp_path: Path) -> dict[str, Any]:
    return config(tmp_path / "inventory.csv")


MTLS_SERVER = {"plain_http": False, "dev_certificate": True, "client_ca": "ca.pem"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"server": {"bogus": 1}}, "server.bogus: Extra inputs are not permitted"),
        ({"surprise": {}}, "surprise: Extra inputs are not permitted"),
        (
            {"webhooks": [webhook(colour="red")]},
            "webhooks[0].colour: Extra inputs are not permitted",
        ),
        (
            {"webhooks": [webhook(policy={"managed": True, "shiny": True})]},
            "webhooks[0].policy.shiny: Extra inputs are not permitted",
        ),
        (
            {"providers": {"inv": {"kind": "csv", "path": "x.csv", "colour": "red"}}},
            "providers.inv.colour: Extra inputs are not permitted",
        ),
    ],
    ids=["server-key", "top-level-section", "webhook-key", "policy-key", "provider-key"],
)
def test_unknown_keys_are_rejected_with_their_path(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    """A typo is an error naming the file and the key, never silently ignored."""
    mapping = _base(tmp_path) | change
    if "providers" in change:
        mapping["webhooks"] = [webhook(providers=("inv",))]
    assert f"cfg.toml: {problem}" in _problems(mapping)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"webhooks": [webhook(secret="not*base64")]},
            "webhooks[0].secret: secret is not valid base64",
        ),
        ({"webhooks": [webhook(kind="MUTATING")]}, "webhooks[0].kind: Input should be"),
        ({"webhooks": [webhook(path="webhooks/x")]}, "webhooks[0].path: String should match"),
        ({"webhooks": [webhook(name="has space")]}, "webhooks[0].name: String should match"),
        (
            {"webhooks": [webhook(providers=())]},
            "webhooks[0].providers: Tuple should have at least 1",
        ),
        ({"webhooks": []}, "webhooks: Tuple should have at least 1 item"),
        ({"providers": {"inv": {"kind": "csv"}}}, "providers.inv.path: Field required"),
        ({"providers": {"inv": {"kind": "ldap", "path": "x"}}}, "providers.inv: Input tag 'ldap'"),
        ({"server": {"plain_http": False}}, "server: set tls_cert and tls_key"),
        ({"server": {"tls_cert": "a.pem", "plain_http": False}}, "server: tls_cert and tls_key go"),
        (
            {"server": {"plain_http": True, "client_ca": "ca.pem"}},
            "server: client_ca (mTLS) needs TLS",
        ),
        ({"server": {"port": 70000, "plain_http": True}}, "server.port: Input should be less"),
        ({"cache": {"not_found_ttl": -1}}, "cache.not_found_ttl: Input should be greater"),
        ({"logging": {"level": "loud"}}, "logging.level: Input should be"),
        (
            {"server": {"plain_http": True, "event_loop": "trio"}},
            "server.event_loop: Input should be 'auto', 'uvloop' or 'asyncio'",
        ),
    ],
    ids=[
        "secret-base64",
        "webhook-kind",
        "webhook-path",
        "webhook-name",
        "no-providers",
        "no-webhooks",
        "provider-path",
        "provider-kind",
        "no-way-to-listen",
        "cert-without-key",
        "mtls-plain",
        "port",
        "ttl",
        "log-level",
        "event-loop",
    ],
)
def test_every_error_names_its_key_path(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    """Each problem reads `file: key.path: message`."""
    mapping = _base(tmp_path) | change
    if "providers" in change:
        mapping["webhooks"] = [webhook(providers=("inv",))]
    problems = _problems(mapping)
    assert any(p.startswith(f"cfg.toml: {problem}") for p in problems), problems


def test_all_problems_are_listed_at_once(tmp_path: Path) -> None:
    """Independent mistakes are reported together, not one per run."""
    mapping = _base(tmp_path) | {
        "logging": {"level": "loud"},
        "cache": {"found_ttl": -1},
        "webhooks": [webhook(kind="X"), webhook("b", secret=5)],
    }
    assert _problems(mapping) == [
        "cfg.toml: logging.level: Input should be 'debug', 'info', 'warning' or 'error'",
        "cfg.toml: cache.found_ttl: Input should be greater than or equal to 0",
        "cfg.toml: webhooks[0].kind: Input should be 'AUTHORIZING', 'ENRICHING', 'SCEPCHALLENGE' "
        "or 'NOTIFYING'",
        'cfg.toml: webhooks[1].secret: expected a string, { env = "NAME" } or { file = "PATH" }',
    ]


def test_cross_reference_problems_are_all_listed(tmp_path: Path) -> None:
    """Duplicate names, duplicate path+id and unknown providers are each named by key path."""
    hooks = [
        webhook("people"),
        webhook("people", path="/webhooks/other"),
        webhook("copy", path="/webhooks/people"),
        webhook("lost", providers=("inventory", "jamf", "intune")),
    ]
    assert _problems(_base(tmp_path) | {"webhooks": hooks}) == [
        "cfg.toml: webhooks[1].name: 'people' is already used by webhooks[0]",
        "cfg.toml: webhooks[2].id: webhooks[0] already serves this id on /webhooks/people",
        "cfg.toml: webhooks[3].providers: unknown provider(s) jamf, intune",
    ]


def test_one_path_may_serve_several_ids(tmp_path: Path) -> None:
    """Two webhooks may share a path when their ids differ (step-ca tells them apart by id)."""
    hooks = [webhook("people"), webhook("gate", "AUTHORIZING", path="/webhooks/people")]
    settings = settings_from_mapping(_base(tmp_path) | {"webhooks": hooks})
    assert [(h.path, h.id) for h in settings.webhooks][1] == ("/webhooks/people", AUTH_ID)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"], ids=["healthz", "readyz"])
def test_health_paths_are_reserved(tmp_path: Path, path: str) -> None:
    """A webhook cannot shadow the health endpoints."""
    problems = _problems(_base(tmp_path) | {"webhooks": [webhook(path=path)]})
    assert problems == [f"cfg.toml: webhooks[0].path: {path} is reserved for health checks"]


def test_env_and_file_secrets_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`{ env = .. }` reads the variable, `{ file = .. }` the file without its trailing newline."""
    monkeypatch.setenv("POSTURE_TEST_SECRET", SECRET)
    (tmp_path / "token.txt").write_text(f"{TOKEN}\n", encoding="utf-8")
    hooks = [
        webhook(secret={"env": "POSTURE_TEST_SECRET"}, bearer_token={"file": "token.txt"}),
    ]
    settings = settings_from_mapping(_base(tmp_path) | {"webhooks": hooks}, base_dir=tmp_path)
    hook = settings.webhooks[0]
    assert hook.secret.get_secret_value() == SECRET
    assert hook.bearer_token is not None
    assert hook.bearer_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (
            {"env": "POSTURE_UNSET_VARIABLE"},
            "environment variable 'POSTURE_UNSET_VARIABLE' is not set",
        ),
        ({"file": "absent.txt"}, "cannot read secret file"),
        ({"env": "POSTURE_TEST_BAD"}, "secret is not valid base64"),
        ({"env": "X", "file": "y"}, 'expected a string, { env = "NAME" } or { file = "PATH" }'),
    ],
    ids=["unset-env", "missing-file", "bad-value-from-env", "both-forms"],
)
def test_secret_source_errors_name_the_source_not_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: dict[str, str], problem: str
) -> None:
    """A secret that cannot be used is reported by key path and source, never by value."""
    leaked = f"{SENSITIVE}*not-base64"
    monkeypatch.setenv("POSTURE_TEST_BAD", leaked)
    problems = _problems(_base(tmp_path) | {"webhooks": [webhook(secret=secret)]})
    assert len(problems) == 1
    assert problems[0].startswith(f"cfg.toml: webhooks[0].secret: {problem}")
    assert SENSITIVE not in problems[0]


def test_a_secret_file_that_is_not_utf8_is_refused_without_its_bytes(tmp_path: Path) -> None:
    """The decoder's own message quotes the byte it could not read: a byte of the secret."""
    secret_file = tmp_path / "gate.secret"
    secret_file.write_bytes(b"ab\x9c" + SENSITIVE.encode())
    problems = _problems(
        _base(tmp_path) | {"webhooks": [webhook(secret={"file": str(secret_file)})]}
    )
    assert problems == [
        f"cfg.toml: webhooks[0].secret: secret file {str(secret_file)!r} is not UTF-8 text"
    ]


def test_secrets_never_show_in_repr_or_errors(tmp_path: Path) -> None:
    """Webhook secrets, bearer tokens and basic passwords are masked in repr, str and errors."""
    hooks = [
        webhook(secret=SENSITIVE, bearer_token=TOKEN),
        webhook("gate", "AUTHORIZING", basic_auth={"username": "ca", "password": PASSWORD}),
    ]
    settings = settings_from_mapping(_base(tmp_path) | {"webhooks": hooks})
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in (SENSITIVE, TOKEN, PASSWORD):
            assert secret not in text
    broken = copy.deepcopy(hooks)
    broken[0]["kind"] = "X"
    broken[1]["basic_auth"]["password"] = {"env": "POSTURE_UNSET_VARIABLE"}
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(_base(tmp_path) | {"webhooks": broken})
    text = "\n".join([str(info.value), *info.value.problems])
    for secret in (SENSITIVE, TOKEN, PASSWORD):
        assert secret not in text


def test_empty_secret_needs_a_client_certificate(tmp_path: Path) -> None:
    """A ca.json-only webhook (empty secret) must be authenticated by mTLS instead."""
    problems = _problems(_base(tmp_path) | {"webhooks": [webhook(secret="")]})
    assert problems == [
        "cfg.toml: webhooks[0]: an empty secret (a webhook declared only in ca.json) is accepted "
        "only with require_client_cert = true"
    ]
    hooks = [webhook(secret="", require_client_cert=True)]
    settings = settings_from_mapping(
        _base(tmp_path) | {"server": MTLS_SERVER, "webhooks": hooks}, base_dir=tmp_path
    )
    assert settings.webhooks[0].hmac_key == b""


def test_client_certificate_needs_a_client_ca(tmp_path: Path) -> None:
    """`require_client_cert` without `server.client_ca` could never be satisfied."""
    hooks = [webhook(require_client_cert=True)]
    assert _problems(_base(tmp_path) | {"webhooks": hooks}) == [
        "cfg.toml: webhooks[0].require_client_cert: needs server.client_ca"
    ]


def test_client_dns_names_need_a_client_ca(tmp_path: Path) -> None:
    """Pinning client names without mTLS is refused."""
    server = {"dev_certificate": True, "plain_http": False, "client_dns_names": ["ca.internal"]}
    assert _problems(_base(tmp_path) | {"server": server}) == [
        "cfg.toml: server: client_dns_names needs client_ca"
    ]


def test_bearer_and_basic_exclude_each_other(tmp_path: Path) -> None:
    """step-ca sends one Authorization header, so a webhook configures one scheme."""
    hooks = [webhook(bearer_token=TOKEN, basic_auth={"username": "ca", "password": PASSWORD})]
    assert _problems(_base(tmp_path) | {"webhooks": hooks}) == [
        "cfg.toml: webhooks[0]: bearer_token and basic_auth exclude each other (step-ca sends one)"
    ]


def test_toml_syntax_error_is_reported(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    path = tmp_path / "connector.toml"
    path.write_text('[server]\nplain_http = true\nport = "8443\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: TOML syntax: ")
    assert "line 3" in problem


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    """A missing config file is a ConfigError naming it."""
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inventory, certificate and secret paths are taken from the config file's folder."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "hook.secret").write_text(f"{SECRET}\n", encoding="utf-8")
    (folder / "connector.toml").write_text(
        """
[server]
tls_cert = "tls/server.crt"
tls_key = "tls/server.key"
client_ca = "tls/ca.crt"

[providers.inventory]
kind = "csv"
path = "inventory.csv"

[[webhooks]]
name = "people"
kind = "ENRICHING"
path = "/webhooks/people"
id = "abc"
secret = { file = "hook.secret" }
providers = ["inventory"]
""",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("etc/connector.toml"))
    server = settings.server
    assert (server.tls_cert, server.tls_key, server.client_ca) == (
        folder / "tls/server.crt",
        folder / "tls/server.key",
        folder / "tls/ca.crt",
    )
    inventory = settings.providers["inventory"]
    assert isinstance(inventory, CsvSettings)
    assert inventory.path == folder / "inventory.csv"
    assert settings.webhooks[0].secret.get_secret_value() == SECRET
    assert settings.source == "etc/connector.toml"


def test_settings_are_frozen(tmp_path: Path) -> None:
    """Settings built once cannot be changed afterwards."""
    settings: Settings = settings_from_mapping(_base(tmp_path))
    with pytest.raises(ValueError, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]
