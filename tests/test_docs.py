"""The docs: every link and anchor resolves, every documented warning, reason code, log event and
metric is one the code really has (and the other way round where the code can be enumerated), and
the README stays a short front page."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from connector.checks import CheckResult, tls_checks, webhook_checks
from connector.cli import EXIT_OK, main
from connector.metrics import Metrics
from connector.policy import RULES
from posture_lab import toml_document
from tests.docs_support import (
    DOCS,
    LOG_EVENT,
    ROOT,
    code_spans,
    code_strings,
    github_slug,
    headings,
    links,
    markdown_files,
    online_warning_templates,
    plain_text,
    reason_codes,
    section,
    table_rows,
    tokens,
    warning_templates,
)
from tests.helpers import WORKSPACE_ONE, config, make_settings, webhook
from tests.pki import TestCA

SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")
CHECKS = ROOT / "connector" / "checks.py"
CONFIGURATION = DOCS / "configuration.md"
TROUBLESHOOTING = DOCS / "troubleshooting.md"
OBSERVABILITY = DOCS / "observability.md"
FRONT_PAGE_LINES = 200


def _name(path: Path, root: Path = ROOT) -> str:
    return str(path.relative_to(root))


def broken_links(pages: list[Path], root: Path = ROOT) -> list[str]:
    """Each relative link of `pages` whose file is missing (or outside `root`) or whose anchor
    no heading of the target has."""
    problems: list[str] = []
    for page in pages:
        name = _name(page, root)
        for target in links(page):
            if SCHEME.match(target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists() or not dest.is_relative_to(root):
                problems.append(f"{name}: {target}: no such file in the repository")
            elif anchor and dest.suffix != ".md":
                problems.append(f"{name}: {target}: an anchor into a file that is not Markdown")
            elif anchor and anchor not in {h.anchor for h in headings(dest)}:
                problems.append(f"{name}: {target}: no heading with that anchor")
    return problems


def test_every_relative_link_and_anchor_resolves() -> None:
    """Every relative link in the README, docs/, the kits' READMEs, SECURITY.md and CHANGELOG.md
    names a file of the repository, and every #anchor a heading of its target page."""
    assert broken_links(markdown_files()) == []


def test_the_link_checker_reads_markdown_as_github_does(tmp_path: Path) -> None:
    """Control: links in code blocks are not links, anchors follow GitHub's slugs (duplicates
    numbered), and a missing file or anchor is reported."""
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text(
        "# Reloading the config (SIGHUP)\n\n## `[server]`\n\n## Figures\n\n### Figures\n\n"
        "```\n[not a link](nowhere.md)\n```\n\n    [indented code](nowhere.md)\n\n"
        "[ok](#reloading-the-config-sighup) [ok](#server) [ok](#figures-1) [ok](page.md#figures)\n"
        "[missing](#figures-2) [missing](gone.md) ![picture](../pic.png)\n",
        encoding="utf-8",
    )
    assert [h.anchor for h in headings(page)] == [
        "reloading-the-config-sighup",
        "server",
        "figures",
        "figures-1",
    ]
    assert github_slug("3. A TLS certificate for the connector") == (
        "3-a-tls-certificate-for-the-connector"
    )
    assert github_slug("What we checked (and where `SCEP.md` differed)") == (
        "what-we-checked-and-where-scepmd-differed"
    )
    assert [p.split(": ")[1] for p in broken_links([page], tmp_path)] == [
        "#figures-2",
        "gone.md",
        "../pic.png",
    ]


def test_the_readme_is_a_front_page_with_both_commands_and_a_map_of_the_docs() -> None:
    """The README stays short, shows `scripts/quickstart` and `scripts/test` as runnable blocks,
    and links every page under docs/ (as does docs/README.md)."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= FRONT_PAGE_LINES
    assert "```sh\nscripts/quickstart\n```" in text
    assert "```sh\nscripts/test\n```" in text
    pages = {p.resolve() for p in DOCS.rglob("*.md")}
    for index in (readme, DOCS / "README.md"):
        linked = {(index.parent / t.partition("#")[0]).resolve() for t in links(index)}
        assert sorted(_name(p) for p in pages - linked - {index.resolve()}) == [], index


def test_each_headline_figure_names_the_benchmark_that_reproduces_it() -> None:
    """Every row of the README's Performance table ends with a `benchmarks.NAME` command whose
    module exists, and the section links the full figures."""
    blocks = section(ROOT / "README.md", "Performance")
    rows = table_rows(blocks)
    assert len(rows) >= 5
    for row in rows:
        [command] = code_spans(row[-1])
        module = command.split()[0]
        assert module.startswith("benchmarks."), command
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), command
    targets = [c.attrs["href"] for t in blocks for c in t.children or [] if c.type == "link_open"]
    assert "docs/performance.md" in targets


def test_the_documented_rule_order_is_the_order_rules_run_in() -> None:
    """docs/policy.md's "Rules run in this fixed order" lists the rule table's keys, in order
    (after the `lookup` it names first)."""
    [inline] = [
        t
        for t in tokens(DOCS / "policy.md")
        if t.type == "inline" and t.content.startswith("Rules run in this fixed order")
    ]
    assert code_spans(inline) == ["lookup", *(rule.key for rule in RULES)]


# --- warnings ----------------------------------------------------------------------------------


def documented(title: str) -> list[tuple[list[str], str]]:
    """The warnings table under `title`: each row's keys (or checks) and the text it says."""
    rows = table_rows(section(CONFIGURATION, title))
    assert rows, f"no table under {title!r} in {_name(CONFIGURATION)}"
    return [(code_spans(row[0]), code_spans(row[1])[0]) for row in rows]


def _jamf(budget: float) -> dict[str, Any]:
    return {
        "kind": "jamf",
        "url": "http://127.0.0.1:9",
        "client_id": "posture-connector",
        "client_secret": "unused",
        "budget": budget,
    }


Config = Callable[[Path], dict[str, Any]]
OTHER = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
NEXT_SECRET = base64.b64encode(bytes(range(100, 164))).decode()
# What triggers each documented warning, and the key it names: (key, says) -> (config, key).
TRIGGERS: dict[tuple[str, str], tuple[Config, str]] = {
    ("webhooks[N].id", "not a UUID as step-ca writes it"): (
        lambda inv: config(inv, webhooks=[webhook(webhook_id="people")]),
        "webhooks[0].id",
    ),
    ("webhooks[N].next_id", "not a UUID as step-ca writes it"): (
        lambda inv: config(inv, webhooks=[webhook(next_id="People-Next", next_secret=NEXT_SECRET)]),
        "webhooks[0].next_id",
    ),
    ("webhooks[N].secret", "the same secret as webhooks["): (
        lambda inv: config(inv, webhooks=[webhook(), webhook("gate", "AUTHORIZING")]),
        "webhooks[1].secret",
    ),
    ("webhooks[N].next_secret", "the same secret as webhooks["): (
        lambda inv: config(
            inv,
            webhooks=[
                webhook(),
                webhook("gate", "AUTHORIZING", secret=NEXT_SECRET),
                webhook(
                    "audit",
                    "AUTHORIZING",
                    webhook_id=OTHER,
                    next_id=OTHER.replace("0", "1"),
                    secret=base64.b64encode(bytes(64)).decode(),
                    next_secret=NEXT_SECRET,
                ),
            ],
        ),
        "webhooks[2].next_secret",
    ),
    ("webhooks[N].next_secret", "the same as its secret, so nothing rotates"): (
        lambda inv: config(inv, webhooks=[webhook(next_id=OTHER, next_secret=webhook()["secret"])]),
        "webhooks[0].next_secret",
    ),
    ("webhooks[N].next_secret", "a secret rotation is open"): (
        lambda inv: config(inv, webhooks=[webhook(next_id=OTHER, next_secret=NEXT_SECRET)]),
        "webhooks[0].next_secret",
    ),
    ("webhooks[N].secret", "empty (a ca.json webhook) while server.client_dns_names"): (
        lambda inv: {
            **config(inv, webhooks=[webhook(secret="", require_client_cert=True)]),
            "server": {
                "dev_certificate": True,
                "client_ca": str(TestCA(inv.parent / "client-ca").cert_path),
            },
        },
        "webhooks[0].secret",
    ),
    ("webhooks[N].identifier_kinds", "accepts udid, but none of its providers"): (
        lambda inv: config(
            inv, providers={"jamf": _jamf(4)}, webhooks=[webhook(providers=("jamf",))]
        ),
        "webhooks[0].identifier_kinds",
    ),
    ("webhooks[N].policy.groups.none_of", "does not read"): (
        lambda inv: config(
            inv,
            providers={"ws1": {**WORKSPACE_ONE, "smart_groups": False}},
            webhooks=[
                webhook(
                    providers=("ws1",),
                    identifier_kinds=["serial"],
                    policy={"groups": {"none_of": ["Quarantine"]}},
                )
            ],
        ),
        "webhooks[0].policy.groups.none_of",
    ),
    ("webhooks[N].providers", "exceed server.decision_budget"): (
        lambda inv: config(
            inv,
            providers={"jamf": _jamf(5), "backup": _jamf(5)},
            webhooks=[webhook(providers=("jamf", "backup"), identifier_kinds=["serial"])],
        ),
        "webhooks[0].providers",
    ),
    ("webhooks[N].mode", "shadow: this webhook answers allow to every device"): (
        lambda inv: config(inv, webhooks=[webhook(mode="shadow")]),
        "webhooks[0].mode",
    ),
    ("admin.listen", "is reachable from other machines"): (
        lambda inv: config(
            inv,
            webhooks=[webhook()],
            admin={"enabled": True, "listen": "0.0.0.0:8444", "token": "a-token-of-16-chars+"},
        ),
        "admin.listen",
    ),
}


@pytest.mark.parametrize(
    ("key", "says"),
    [(key, says) for keys, says in documented("Warnings") for key in keys],
)
def test_every_documented_warning_is_one_check_config_gives(
    key: str, says: str, tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For a config that should trigger it, `check-config` exits 0 and prints the documented
    warning on stderr, naming the documented key."""
    assert (key, says) in TRIGGERS, f"teach tests/test_docs.py a config that triggers {key}"
    build, named = TRIGGERS[key, says]
    assert re.fullmatch(re.escape(key).replace("N", r"\d+"), named)
    path = tmp_path / "config.toml"
    path.write_text(toml_document(build(inventory)), encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == EXIT_OK
    warnings = capsys.readouterr().err.splitlines()
    assert any(w.startswith(f"warning: {path}: {named}: ") and says in w for w in warnings), (
        warnings
    )


def _covered(template: str, rows: list[tuple[list[str], str]]) -> bool:
    """Whether a documented row names the template's key and says part of its text."""
    _source, key, text = template.split(": ", 2)
    pattern = re.escape(key).replace(r"\{\}", ".+")
    return any(
        says in text and any(re.fullmatch(pattern, k.replace("N", "0")) for k in keys)
        for keys, says in rows
    )


def test_every_warning_the_code_can_give_is_documented() -> None:
    """Each warning `config_warnings` can build (read from connector/checks.py) has its row."""
    templates = warning_templates(CHECKS)
    assert len(templates) >= 8
    rows = documented("Warnings")
    assert [t for t in templates if not _covered(t, rows)] == []


def _near_expiry(tmp_path: Path) -> list[CheckResult]:
    issued = TestCA(tmp_path / "pki").issue("tls", dns_names=("localhost",))
    server = {"tls_cert": str(issued.cert), "tls_key": str(issued.key), "plain_http": False}
    settings = make_settings(config(tmp_path / "none.csv", server=server))
    end = x509.load_pem_x509_certificates(issued.cert.read_bytes())[0].not_valid_after_utc
    return tls_checks(settings, end - timedelta(hours=1))


ONLINE: dict[str, Callable[[Path], list[CheckResult]]] = {
    "dev_certificate: self-signed, not for production": lambda tmp: tls_checks(
        make_settings(
            config(tmp / "none.csv", server={"dev_certificate": True, "plain_http": False})
        ),
        now=datetime.now(UTC),
    ),
    "is its renewal running?": _near_expiry,
    "is not a step-ca UUID": lambda tmp: webhook_checks(
        make_settings(config(tmp / "none.csv", webhooks=[webhook(webhook_id="people")]))
    ),
    "the secret decodes to": lambda tmp: webhook_checks(
        make_settings(
            config(
                tmp / "none.csv", webhooks=[webhook(secret=base64.b64encode(bytes(32)).decode())]
            )
        )
    ),
}


@pytest.mark.parametrize(("checks", "says"), documented("Online checks"))
def test_every_documented_online_warning_is_one_a_check_gives(
    checks: list[str], says: str, tmp_path: Path
) -> None:
    """For a config that should trigger it, the documented check answers `warn` with that text."""
    assert says in ONLINE, f"teach tests/test_docs.py a config whose online check says {says!r}"
    results = ONLINE[says](tmp_path)
    subjects = [re.escape(c).replace("NAME", r"\S+") for c in checks]
    assert any(
        r.status == "warn"
        and says in r.detail
        and any(re.fullmatch(s, r.subject) for s in subjects)
        for r in results
    ), results


def test_every_online_warning_the_code_can_give_is_documented() -> None:
    """Each `warn` an online check can answer (read from connector/checks.py) has its row."""
    templates = online_warning_templates(CHECKS)
    assert len(templates) >= 4
    said = [says for _checks, says in documented("Online checks")]
    assert [t for t in templates if not any(s in t for s in said)] == []


# --- reason codes, log events, metrics ----------------------------------------------------------


def troubleshooting_codes() -> list[str]:
    """The headings of docs/troubleshooting.md that are one reason code in backticks."""
    found = []
    for heading in headings(TROUBLESHOOTING):
        spans = code_spans(heading.inline)
        if len(spans) == 1 and heading.text == spans[0]:
            found.append(spans[0])
    return found


def test_every_reason_code_has_its_troubleshooting_section() -> None:
    """Each code the connector can answer or record (rule table, refusals, denials) has a
    heading of its own in docs/troubleshooting.md, and each such heading is a real code."""
    codes = reason_codes()
    assert {"device-not-found", "unauthorized", "group-forbidden", "issuance-failed"} <= set(codes)
    listed = troubleshooting_codes()
    assert sorted(set(codes) - set(listed)) == []
    assert sorted(set(listed) - set(codes)) == []
    assert len(listed) == len(set(listed))


def test_the_reason_code_tables_list_real_codes() -> None:
    """The at-a-glance table of docs/troubleshooting.md lists every code, and it and the policy's
    table in docs/policy.md list no code the connector does not have."""
    codes = set(reason_codes())
    glance = table_rows(section(TROUBLESHOOTING, "All codes at a glance"))
    listed = {s for row in glance for s in code_spans(row[0])}
    assert sorted(codes - listed) == []
    assert sorted(listed - codes) == []
    policy = table_rows(section(DOCS / "policy.md", "Reason codes"))
    assert sorted({code_spans(row[0])[0] for row in policy} - codes) == []


def documented_events() -> set[str]:
    """The event names in the first column of the log event tables."""
    rows = table_rows(section(OBSERVABILITY, "Log events"))
    rows += table_rows(section(DOCS / "enrichment.md", "Log events"))
    return {s for row in rows for s in code_spans(row[0]) if LOG_EVENT.fullmatch(s)}


def test_every_documented_log_event_is_written_by_the_code() -> None:
    """Each event the log tables list is a string in connector/ or providers/ (no typos, no
    events that were renamed or removed)."""
    events = documented_events()
    assert len(events) > 50
    assert sorted(events - code_strings()) == []


def test_the_metrics_table_is_what_the_registry_exposes(inventory: Path) -> None:
    """The metrics table names every `posture_connector_*` family the app registers, and only
    those (counters under their `_total` names)."""
    registry = Metrics(make_settings(config(inventory))).registry
    exposed = {m.name for m in registry.collect() if m.name.startswith("posture_connector_")}
    rows = table_rows(section(OBSERVABILITY, "Metrics"))
    names = {s for row in rows for s in code_spans(row[0]) if s.startswith("posture_connector_")}
    assert {n.removesuffix("_total") for n in names} == exposed


def test_plain_text_keeps_code_and_drops_markup(tmp_path: Path) -> None:
    """Control: a heading's text is what GitHub slugs, code spans included, emphasis dropped."""
    page = tmp_path / "p.md"
    page.write_text("## **Bold** `code` and _more_\n", encoding="utf-8")
    [heading] = headings(page)
    assert plain_text(heading.inline) == "Bold code and more"
