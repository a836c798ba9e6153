"""`posture-connector audit`: the audit log read back from the configured store."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from connector.cli import main
from connector.settings import load_settings
from connector.store import LATEST, AuditEntry, FailedRule, open_store

pytestmark = pytest.mark.usefixtures("restore_logging")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOW = time.time()


def _config(tmp_path: Path) -> Path:
    """The quickstart config in `tmp_path`, whose store is a SQLite file beside it."""
    for name in (
        "quickstart.toml",
        "quickstart.secret",
        "quickstart-gate.secret",
        "quickstart-inventory.csv",
    ):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path / "quickstart.toml"


def _seed(config: Path) -> None:
    denied = FailedRule("device-unmanaged", "the device is not managed by the MDM", "false")
    entries = [
        AuditEntry(at=NOW - 7200, webhook="gate", webhook_kind="AUTHORIZING",
                   identifier="C02QUICK0001", identifier_kind="serial", allow=True,
                   provider="inventory", request_id="req-old"),
        AuditEntry(at=NOW - 60, webhook="gate", webhook_kind="AUTHORIZING",
                   identifier="C02QUICK0002", identifier_kind="serial", allow=False,
                   code="device-unmanaged", failed_rules=(denied,), request_id="req-new"),
    ]  # fmt: skip

    async def write() -> None:
        store = await open_store(load_settings(config).store)
        await store.record_decisions(entries)
        await store.aclose()

    asyncio.run(write())


def test_store_file_sits_beside_the_config(tmp_path: Path) -> None:
    """The default SQLite store is a file in the config's folder, not the working directory."""
    config = _config(tmp_path)
    assert load_settings(config).store.path == tmp_path / "posture-connector.sqlite3"


def test_audit_lists_denials_with_their_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--denied shows only the refusal, with the failing rule and the value it saw."""
    config = _config(tmp_path)
    _seed(config)
    capsys.readouterr()  # the seeding's own log lines
    assert main(["audit", "--config", str(config), "--denied"]) == 0
    out = capsys.readouterr().out
    assert "C02QUICK0002" in out
    assert "C02QUICK0001" not in out
    assert "device-unmanaged: the device is not managed by the MDM (saw false)" in out
    assert "request=req-new" in out


def test_the_text_table_escapes_control_characters_someone_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Identifiers (even ones refused by the shape check, cut to 64 characters), request ids
    and observed values are chosen by whoever sent the call: they reach the operator's terminal
    with their control characters escaped, so they cannot set the title, clear the screen,
    move the cursor or forge a row."""
    config = _config(tmp_path)
    sent = "\x1b]0;owned\x07\x1b[2J\x1b[H\r"
    forged = FailedRule("device-unmanaged", "not managed", "false\x1b[1A\u202eallow")
    entry = AuditEntry(at=NOW - 60, webhook="gate", webhook_kind="AUTHORIZING",
                       identifier=sent, identifier_kind=None, allow=False,
                       code="identifier-invalid", failed_rules=(forged,),
                       request_id="\x9b2J")  # fmt: skip

    async def write() -> None:
        store = await open_store(load_settings(config).store)
        await store.record_decisions([entry])
        await store.aclose()

    asyncio.run(write())
    capsys.readouterr()  # the seeding's own log lines
    assert main(["audit", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out) is None, repr(out)
    assert "\\x1b]0;owned\\x07\\x1b[2J" in out
    assert "request=\\x9b2J" in out
    assert "(saw false\\x1b[1A\\u202eallow)" in out


def test_audit_json_lines_filter_by_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--since 1h leaves out the older decision; --json prints one object per line."""
    config = _config(tmp_path)
    _seed(config)
    capsys.readouterr()  # the seeding's own log lines
    assert main(["audit", "--config", str(config), "--since", "1h", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["identifier"] for line in lines] == ["C02QUICK0002"]
    assert json.loads(lines[0])["failed_rules"][0]["code"] == "device-unmanaged"


def test_audit_on_an_empty_log_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No matching decision is a plain sentence and exit 0."""
    config = _config(tmp_path)
    _seed(config)
    capsys.readouterr()
    assert main(["audit", "--config", str(config), "--identifier", "C02NONE00001"]) == 0
    assert capsys.readouterr().out.strip() == "no matching decisions"


def test_audit_never_creates_or_migrates_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where the service keeps no store (a typo, a volume not mounted here), audit says so
    (exit 3) and creates none: "no matching decisions" over an empty new file hid the mistake.
    A store of an older schema is not migrated under replicas that still read it."""
    config = _config(tmp_path)
    store = tmp_path / "posture-connector.sqlite3"
    assert main(["audit", "--config", str(config)]) == 3
    assert "no store at" in capsys.readouterr().err
    assert not store.exists()
    with sqlite3.connect(store) as db:  # a release's schema from before this one's
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
    assert main(["audit", "--config", str(config)]) == 3
    assert f"schema version 1, this release reads {LATEST}" in capsys.readouterr().err
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)


def test_audit_rejects_an_unreadable_time(tmp_path: Path) -> None:
    """--since takes a span or an ISO time; anything else is a usage error (exit 2)."""
    config = _config(tmp_path)
    with pytest.raises(SystemExit) as caught:
        main(["audit", "--config", str(config), "--since", "yesterday-ish"])
    assert caught.value.code == 2
