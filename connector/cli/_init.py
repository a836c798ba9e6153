"""`init`: write a starter config, print the step-ca commands, then take the id and secret
step-ca printed for each webhook (flags, step's saved output, or a prompt on a terminal).

step-ca creates each webhook's id and secret (`step ca provisioner webhook add` prints both once),
so until they are given the config holds a placeholder id (which `check-config` warns about) and
a random secret per webhook. Secrets are only ever written to files beside the config (mode
0600), never printed.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import re
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Any

from connector.checks import preflight
from connector.cli._common import EXIT_CONFIG, EXIT_OK, Subparsers, add_config, command
from connector.cli._starter import (
    EMPTY_INVENTORY,
    FILE_KINDS,
    PLACEHOLDER_ID,
    Starter,
    Webhook,
    render,
    step_commands,
)
from connector.settings import ConfigError, load_settings
from connector.signing import decode_secret
from providers.registry import KINDS

WEBHOOKS = (("people", "ENRICHING"), ("gate", "AUTHORIZING"))
_STEP_ID = re.compile(r"^Webhook ID:\s*(\S+)\s*$", re.MULTILINE)
_STEP_SECRET = re.compile(r"^Secret:\s*(\S+)\s*$", re.MULTILINE)
_ID = re.compile(r"[!#-\[\]-~]{1,128}")  # printable ASCII but '"' and '\\': a TOML string


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or ():
        name, equals, rest = value.partition("=")
        if not equals or not name or not rest:
            raise ValueError(f"{flag} takes NAME=VALUE")
        pairs[name] = rest
    return pairs


def given(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]]:
    """The ids and secrets from the flags and from step's saved output, by webhook name."""
    ids = _pairs(args.webhook_id, "--webhook-id")
    keys = _pairs(args.webhook_secret, "--webhook-secret")
    for name, file in _pairs(args.step_output, "--step-output").items():
        text = Path(file).read_text(encoding="utf-8")
        if Path(file).stat().st_mode & 0o077:
            print(
                f"init: warning: {file} holds the webhook secret and others may read it; "
                "delete it once init has copied the secret (saved with umask 077 next time)",
                file=sys.stderr,
            )
        found_id, found_secret = _STEP_ID.search(text), _STEP_SECRET.search(text)
        if found_id is None or found_secret is None:
            raise ValueError(f"{file}: no 'Webhook ID:' and 'Secret:' lines (step's output?)")
        ids.setdefault(name, found_id.group(1))
        keys.setdefault(name, found_secret.group(1))
    for name, value in ids.items():
        if not _ID.fullmatch(value):
            raise ValueError(f"the id given for {name} is not an id step-ca prints")
    for name, value in keys.items():
        try:
            if not decode_secret(value):
                raise ValueError
        except ValueError:
            raise ValueError(f"the secret given for {name} is not base64 (step-ca's is)") from None
    return ids, keys


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (mode 0600), replacing it atomically."""
    _write_atomically(path, text, 0o600)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Write `text` over `path` through a new file of `mode` renamed over it (never half
    written, never through a file someone else holds open)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    temporary.replace(path)


def set_id(text: str, name: str, webhook_id: str) -> str:
    """`text` with the ``id`` of the ``[[webhooks]]`` entry called `name` replaced."""
    blocks = re.split(r"(?m)^(?=\[\[webhooks\]\])", text)
    for index, block in enumerate(blocks):
        if block.startswith("[[webhooks]]") and re.search(
            rf'(?m)^name\s*=\s*"{re.escape(name)}"', block
        ):
            new, count = re.subn(r'(?m)^id\s*=\s*"[^"\n]*"', f'id = "{webhook_id}"', block, count=1)
            if count == 0:
                raise ValueError(f'the webhook {name} has no id = "..." line to replace')
            blocks[index] = new
            return "".join(blocks)
    raise ValueError(f"no [[webhooks]] entry named {name!r}")


def _webhooks(config: Path) -> dict[str, dict[str, Any]]:
    document = tomllib.loads(config.read_text(encoding="utf-8"))
    return {str(h.get("name")): h for h in document.get("webhooks", []) if isinstance(h, dict)}


def _secret_path(config: Path, entry: dict[str, Any]) -> Path:
    secret = entry.get("secret")
    file = secret.get("file") if isinstance(secret, dict) else None
    if not file:
        raise ValueError(f'webhook {entry.get("name")}: secret is not {{ file = "..." }}')
    path = Path(str(file))
    return path if path.is_absolute() else config.parent / path


def apply(config: Path, ids: dict[str, str], keys: dict[str, str]) -> list[str]:
    """Put the ids into the config and the secrets into their files; what was done, as lines."""
    entries = _webhooks(config)
    unknown = sorted((set(ids) | set(keys)) - set(entries))
    if unknown:
        raise ValueError(f"no webhook named {', '.join(unknown)} (have: {', '.join(entries)})")
    # Everything is checked before anything is written: a refusal leaves the files as they were.
    secret_paths = {name: _secret_path(config, entries[name]) for name in keys}
    text = config.read_text(encoding="utf-8")
    done: list[str] = []
    for name, webhook_id in ids.items():
        text = set_id(text, name, webhook_id)
        done.append(f"{name}: id {webhook_id}")
    tomllib.loads(text)  # what was put in reads back (an id is checked to be TOML-safe)
    if ids:
        _write_atomically(config, text, config.stat().st_mode & 0o777)
    for name, value in keys.items():
        write_private(secret_paths[name], value + "\n")
        done.append(f"{name}: secret stored in {secret_paths[name]} (mode 0600)")
    return done


def write_starter(config: Path, kind: str, url: str) -> list[str]:
    """Write the config, a placeholder secret per webhook, and the files it names; as lines."""
    hooks = tuple(Webhook(name, hook_kind, PLACEHOLDER_ID) for name, hook_kind in WEBHOOKS)
    starter = Starter(kind, url, hooks)
    text, credentials = render(starter)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text, encoding="utf-8")
    done = [f"wrote {config}"]
    for hook in hooks:
        placeholder = base64.b64encode(secrets.token_bytes(64)).decode()
        write_private(config.parent / hook.secret_file, placeholder + "\n")
    names = ", ".join(h.secret_file for h in hooks)
    done.append(f"wrote {names} (mode 0600): random until step-ca's secrets replace them")
    inventory = FILE_KINDS.get(kind)
    if inventory is not None and not os.path.lexists(config.parent / inventory):
        # Never through a link someone left in the folder (a dangling one is not "there").
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(config.parent / inventory, flags, 0o644), "w") as handle:
            handle.write(EMPTY_INVENTORY[kind])
        done.append(f"wrote {inventory}: no devices yet, so every device is denied; add yours")
    for credential in credentials:
        path = config.parent / credential
        if not path.exists():
            write_private(path, "")
            done.append(f"wrote {credential} (empty, mode 0600): put the credential in it")
    return done


def _missing(config: Path) -> list[str]:
    return [n for n, h in _webhooks(config).items() if h.get("id") == PLACEHOLDER_ID]


def _prompt(names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Ask for each webhook's id and secret on the terminal (the secret is not echoed)."""
    ids: dict[str, str] = {}
    keys: dict[str, str] = {}
    print("\nPaste what step-ca printed for each webhook (Enter skips one):")
    for name in names:
        webhook_id = input(f"  {name}: Webhook ID: ").strip()
        if not webhook_id:
            continue
        key = getpass.getpass(f"  {name}: Secret (not shown): ").strip()
        if key:
            ids[name], keys[name] = webhook_id, key
    return ids, keys


def _verdict(config: Path) -> list[str]:
    """What still stands between this config and a passing `check-config`."""
    try:
        problems = preflight(load_settings(config))
    except ConfigError as exc:
        problems = exc.problems
    lines = ["still to do before check-config passes:", *(f"  - {p}" for p in problems)]
    lines = lines if problems else []
    if _missing(config):
        lines.append(f"{config}: step-ca's webhook ids and secrets are not in it yet (see above)")
    return lines or [
        f"{config}: valid; check it against the real services: "
        f"posture-connector check-config --config {config} --online"
    ]


def cmd_init(args: argparse.Namespace) -> int:
    """Write or complete a starter config."""
    config: Path = args.config
    try:
        ids, keys = given(args)
        if config.exists() and not args.force:
            if not (ids or keys):
                raise ValueError(
                    f"{config} exists: give --webhook-id/--webhook-secret or --step-output to "
                    "complete it, or --force to write a new one"
                )
            done = []
        else:
            done = write_starter(config, args.provider, args.url)
        done += apply(config, ids, keys)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"init: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print("\n".join(done))
    missing = _missing(config)
    if missing:
        starter = Starter(args.provider, args.url, ())
        hooks = [Webhook(n, dict(WEBHOOKS).get(n, "ENRICHING"), "") for n in missing]
        print(
            "\nCreate the webhooks in step-ca (with your admin flags, as for any `step ca "
            "provisioner` command). Each prints a Webhook ID and a Secret once; here they go to "
            "a file, not your terminal:\n"
        )
        print("\n".join(f"  {line}" for line in step_commands(starter, args.provisioner, hooks)))
        steps = " ".join(f"--step-output {h.name}={h.name}.webhook" for h in hooks)
        print(f"\nthen:\n  posture-connector init --config {config} {steps}")
        if sys.stdin.isatty() and not args.no_input:
            try:
                ids, keys = _prompt(missing)
                ids, keys = given(_namespace(ids, keys))
                print("\n".join(apply(config, ids, keys)))
            except (OSError, ValueError) as exc:
                print(f"init: {exc}", file=sys.stderr)
                return EXIT_CONFIG
    print("\n".join(_verdict(config)))
    return EXIT_OK


def _namespace(ids: dict[str, str], keys: dict[str, str]) -> argparse.Namespace:
    return argparse.Namespace(
        webhook_id=[f"{k}={v}" for k, v in ids.items()],
        webhook_secret=[f"{k}={v}" for k, v in keys.items()],
        step_output=None,
    )


def add_init_command(sub: Subparsers) -> None:
    """`init` and its flags."""
    init = command(
        sub,
        "init",
        summary="write a starter config and the step-ca commands that go with it",
        description="Write a starter config (TOML, with comments): the two webhooks step-ca "
        "calls (people, ENRICHING; gate, AUTHORIZING), each with its own secret in a file "
        "beside the config (mode 0600), and an empty CSV inventory or the template of another "
        "provider kind. It prints the `step ca provisioner webhook add` commands; run them, "
        "then give init the id and secret step-ca printed for each webhook: from step's saved "
        "output (--step-output), as flags, or when asked on a terminal (the secret is not "
        "echoed). Run again on an existing config, init only puts in what you give it.",
        examples="  posture-connector init --config /etc/posture-connector/config.toml \\\n"
        "    --url https://connector.example.com:8443\n"
        "  posture-connector init --config config.toml --provider jamf --force\n"
        "  posture-connector init --config config.toml \\\n"
        "    --step-output people=people.webhook --step-output gate=gate.webhook\n"
        "  posture-connector init --config config.toml --webhook-id gate=ID "
        "--webhook-secret gate=SECRET",
        exits="  0  written (or completed); what is still missing is listed\n"
        "  2  usage error: a malformed NAME=VALUE, an unknown webhook, an invalid secret, or "
        "an existing config without --force and nothing to put in",
    )
    add_config(init)
    init.add_argument(
        "--provider",
        choices=sorted(KINDS),
        default="csv",
        metavar="KIND",
        help=f"the inventory: {', '.join(sorted(KINDS))} (default: csv, an empty CSV file)",
    )
    init.add_argument(
        "--url",
        default="https://connector.example.com:8443",
        help="the connector's address as step-ca calls it; its port is the one to listen on "
        "(default: https://connector.example.com:8443)",
    )
    init.add_argument(
        "--provisioner",
        default="devices",
        metavar="NAME",
        help="the step-ca ACME provisioner the webhooks belong to (default: devices)",
    )
    init.add_argument(
        "--webhook-id",
        action="append",
        metavar="NAME=ID",
        help="the Webhook ID step-ca printed for webhook NAME (repeatable)",
    )
    init.add_argument(
        "--webhook-secret",
        action="append",
        metavar="NAME=SECRET",
        help="the Secret step-ca printed for webhook NAME (repeatable; visible in ps and shell "
        "history: prefer --step-output)",
    )
    init.add_argument(
        "--step-output",
        action="append",
        metavar="NAME=FILE",
        help="a file holding what `step ca provisioner webhook add` printed for webhook NAME: "
        "its Webhook ID and Secret are read from it (repeatable)",
    )
    init.add_argument(
        "--force", action="store_true", help="write a new config over an existing one"
    )
    init.add_argument("--no-input", action="store_true", help="never prompt, even on a terminal")
    init.set_defaults(func=cmd_init)
