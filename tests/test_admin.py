"""The admin page over HTTP: the token lock, what the pages show, escaping, read-only behaviour."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from connector.admin._auth import Lock
from connector.checks import config_warnings
from connector.persistence import PERSISTENCE
from connector.settings import ConfigError
from connector.sidecars import SIDE_LISTENERS
from connector.store import AuditQuery
from tests.admin_support import HOSTILE, TOKEN, admin_config, decide_some, start_admin
from tests.conftest import AppClient
from tests.helpers import config, enrich, make_settings, signed
from tests.metrics_support import parse, total

BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def sign_in(client: httpx.AsyncClient) -> None:
    """Give `client` a session cookie through the sign-in form."""
    response = await client.post("/login", data={"token": TOKEN})
    assert response.status_code == 303


async def test_the_admin_page_is_off_by_default(app_client: AppClient) -> None:
    """Without [admin] enabled no admin listener starts."""
    client = await app_client()
    assert "admin" not in client.app[SIDE_LISTENERS]


@pytest.mark.parametrize("token", [None, "short"], ids=["missing", "short"])
def test_enabling_needs_a_token_of_16_characters(inventory: Path, token: str | None) -> None:
    """An enabled admin page without a strong enough token is a configuration error."""
    admin = {"enabled": True} | ({"token": token} if token else {})
    with pytest.raises(ConfigError) as caught:
        make_settings(config(inventory, admin=admin))
    assert caught.value.problems == [
        "<test>: admin: enabled = true needs a token of at least 16 characters"
    ]


async def test_without_a_session_the_page_sends_you_to_sign_in(
    aiohttp_client: Any, inventory: Path
) -> None:
    """Every page but the sign-in form needs the token: a GET is redirected, a POST refused."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url) as client:
        for path in ("/", "/try?webhook=people&identifier=C02TEST00001"):
            response = await client.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == "/login"
        assert (await client.post("/logout")).status_code == 401
        assert (await client.get("/login")).status_code == 200
        forged = {"Cookie": "posture_admin=99999999999." + "0" * 64}
        assert (await client.get("/", headers=forged)).status_code == 303
        wrong_bearer = {"Authorization": "Bearer not-the-token-at-all"}
        assert (await client.get("/", headers=wrong_bearer)).status_code == 303


async def test_a_wrong_token_is_refused_and_never_logged(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A wrong token gets the form again with an error; the log names the event, not the token."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url) as client:
        with capture_logs() as logs:
            response = await client.post("/login", data={"token": "guess-guess-guess-guess"})
            right = await client.post("/login", data={"token": TOKEN})
    assert response.status_code == 401
    assert "That token is not right." in response.text
    assert "set-cookie" not in response.headers
    assert right.status_code == 303
    events = [e["event"] for e in logs]
    assert "admin.login_failed" in events
    assert "admin.login" in events
    assert "guess-guess" not in repr(logs)
    assert TOKEN not in repr(logs)


async def test_the_right_token_opens_a_strict_http_only_session(
    aiohttp_client: Any, inventory: Path
) -> None:
    """Signing in sets an HttpOnly, SameSite=Strict cookie that does not contain the token."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url) as client:
        response = await client.post("/login", data={"token": TOKEN})
        cookie = response.headers["set-cookie"]
        assert response.headers["location"] == "/"
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        page = await client.get("/")
        assert page.status_code == 200
        assert "<h1>Overview</h1>" in page.text
        assert (await client.post("/logout")).status_code == 303
        assert (await client.get("/")).status_code == 303


async def test_a_script_may_use_the_token_as_a_bearer_header(
    aiohttp_client: Any, inventory: Path
) -> None:
    """``Authorization: Bearer <token>`` opens every page without a cookie."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        assert (await client.get("/")).status_code == 200


async def test_a_cross_site_form_post_is_refused(aiohttp_client: Any, inventory: Path) -> None:
    """A sign-in posted from another site's page is refused, even with the right token."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url) as client:
        response = await client.post(
            "/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"}
        )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    async with httpx.AsyncClient(base_url=admin.url) as client:
        await sign_in(client)
        away = await client.post("/logout", headers={"Origin": "null"})
        assert away.status_code == 403
        assert (await client.get("/")).status_code == 200  # still signed in


def test_a_session_ends_when_it_expires_or_the_token_changes() -> None:
    """A cookie is valid until its expiry, and only for the token that issued it."""
    now = [1000.0]
    lock = Lock("a-token-of-sixteen-chars", session_seconds=60, clock=lambda: now[0])
    cookie = lock.issue()
    assert lock.session_valid(cookie)
    assert not Lock(
        "another-token-of-16ch", session_seconds=60, clock=lambda: now[0]
    ).session_valid(cookie)
    expiry, _, mac = cookie.partition(".")
    assert not lock.session_valid(f"{int(expiry) + 3600}.{mac}")
    now[0] += 61
    assert not lock.session_valid(cookie)


async def test_the_overview_shows_inventories_refusals_and_decisions(
    aiohttp_client: Any, inventory: Path
) -> None:
    """Readiness, every provider, the hour's refusals by reason and recent decisions with rules."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    await decide_some(admin)
    async with httpx.AsyncClient(base_url=admin.url) as client:
        await sign_in(client)
        page = (await client.get("/")).text
    assert 'This replica is <span class="badge ok">ready</span>' in page
    assert '<th scope="row">inventory</th><td>csv</td><td>live</td>' in page
    for code in ("device-unmanaged", "device-not-found", "identifier-invalid"):
        assert f"<td>{code}</td>" in page
    assert "would deny (shadow)" in page
    assert "<code>device-unmanaged</code>: device is not managed (saw <code>false</code>)" in page
    assert "<code>req-C02TES</code>" in page


async def test_refusals_count_denials_and_devices_apart(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A device refused again (its client retries) is one more denial, not one more device:
    the column said "Devices refused" and counted denials."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    await decide_some(admin)
    written = admin.app[PERSISTENCE].audit.written
    body = enrich("C02TEST00002")  # the same device again
    await admin.service.post(
        "/webhooks/people", data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
    )
    async with asyncio.timeout(5):
        while admin.app[PERSISTENCE].audit.written == written:  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        page = (await client.get("/")).text
    assert (
        '<tr><th scope="row">people</th><td>device-unmanaged</td>'
        '<td class="num">2</td><td class="num">1</td></tr>'
    ) in page


async def test_hostile_identifiers_are_escaped(aiohttp_client: Any, inventory: Path) -> None:
    """An identifier sent as markup is shown as text, never as markup."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    await decide_some(admin)
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        overview = (await client.get("/")).text
        tried = (await client.get("/try", params={"webhook": "people", "identifier": HOSTILE})).text
        filtered = (await client.get("/", params={"identifier": '"><img src=x onerror=1>'})).text
    for text in (overview, tried):
        assert HOSTILE not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<img" not in filtered
    assert 'value="&quot;&gt;&lt;img src=x onerror=1&gt;"' in filtered
    assert "<script" not in overview + tried + filtered


async def test_decisions_can_be_filtered(aiohttp_client: Any, inventory: Path) -> None:
    """The filter narrows recent decisions by webhook, identifier and denials only."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    await decide_some(admin)
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        denied = (await client.get("/", params={"denied": "1", "webhook": "people"})).text
        one = (await client.get("/", params={"identifier": "c02test00001"})).text
    decisions = denied.split('id="decisions"')[1]
    assert ">allowed<" not in decisions
    assert decisions.count(">denied<") == 3
    assert "would deny" not in decisions
    recent = one.split('id="decisions"')[1]
    assert recent.count("<code>C02TEST00001</code>") == 1
    assert "C02TEST00002" not in recent


async def test_try_a_device_explains_every_rule_and_changes_nothing(
    aiohttp_client: Any, inventory: Path
) -> None:
    """The try form shows each rule's verdict, and is neither audited nor counted as a decision."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    await decide_some(admin)
    store = admin.app[PERSISTENCE].store
    before = len(await store.query_decisions(AuditQuery(limit=1000)))
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        response = await client.get(
            "/try", params={"webhook": "people", "identifier": "C02TEST00002"}
        )
        unknown = await client.get("/try", params={"webhook": "nope", "identifier": "C02TEST00002"})
    page = response.text
    assert response.status_code == 200
    assert '<span class="badge bad">deny</span>' in page
    assert (
        '<th scope="row">managed</th><td><span class="badge bad">fail</span></td><td><code>false</code></td><td>device-unmanaged</td>'
        in page
    )
    assert "There is no webhook with that name." in unknown.text
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        long = await client.get("/try", params={"webhook": "people", "identifier": "A" * 300})
    assert "An identifier is at most 256 characters." in long.text
    await asyncio.sleep(0.3)  # an audit entry, had there been one, is written at once
    assert admin.app[PERSISTENCE].audit.written == before
    assert len(await store.query_decisions(AuditQuery(limit=1000))) == before
    scraped = parse(await (await admin.service.get("/metrics")).text())
    assert total(scraped, "posture_connector_decisions_total") == 5


async def test_try_a_device_shows_what_a_shadow_webhook_answers(
    aiohttp_client: Any, inventory: Path
) -> None:
    """A shadow webhook's refusal is a verdict, not what step-ca receives: it gets an allow.
    The page showed the deny reply, telling the operator the device would be blocked now."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        response = await client.get(
            "/try", params={"webhook": "gate", "identifier": "C02TEST00002"}
        )
    page = response.text
    assert '<span class="badge bad">deny</span> (shadow mode: step-ca gets an allow)' in page
    reply = page.split("What step-ca would receive</h3>")[1]
    assert '"allow": true' in reply
    assert "device-unmanaged" not in reply


async def test_every_page_forbids_scripts_and_framing(aiohttp_client: Any, inventory: Path) -> None:
    """Each answer carries a strict CSP (no scripts at all), nosniff and no caching."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        for path in ("/", "/try", "/login", "/admin.css", "/nowhere"):
            response = await client.get(path)
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp
            assert "script-src" not in csp
            assert "frame-ancestors 'none'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/")).headers["cache-control"] == "no-store"


async def test_a_store_that_cannot_open_is_shown_not_hidden(
    aiohttp_client: Any, inventory: Path, tmp_path: Path
) -> None:
    """When the audit log cannot be read, the page says why instead of showing it empty."""
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("", encoding="utf-8")  # the store's folder cannot be made here
    unopenable = not_a_folder / "store.sqlite3"
    admin = await start_admin(
        aiohttp_client, {**admin_config(inventory), "store": {"path": str(unopenable)}}
    )
    async with httpx.AsyncClient(base_url=admin.url, headers=BEARER) as client:
        page = (await client.get("/")).text
    assert "The audit log cannot be read:" in page
    assert 'badge bad">not ready</span>' in page


@pytest.mark.parametrize(
    ("listen", "warned"),
    [
        ("127.0.0.1:8444", False),
        ("localhost:8444", False),
        ("[::1]:8444", False),
        ("0.0.0.0:8444", True),
    ],
    ids=["ipv4-loopback", "localhost", "ipv6-loopback", "any"],
)
def test_an_admin_page_beyond_loopback_is_warned_about(
    inventory: Path, listen: str, warned: bool
) -> None:
    """check-config warns when the plain-HTTP admin page listens beyond loopback."""
    settings = make_settings(admin_config(inventory, listen=listen))
    warnings = [w for w in config_warnings(settings) if "admin.listen" in w]
    assert bool(warnings) is warned
    assert all(TOKEN not in w for w in warnings)


def test_a_refused_token_is_the_providers_latest_upstream_failure() -> None:
    """The activity record keeps a refused token (with its secret-free detail) as a failure."""
    from connector.status import Activity  # noqa: PLC0415
    from providers.observe import TokenEvent, UpstreamCall  # noqa: PLC0415

    activity = Activity()
    activity.upstream_call(UpstreamCall("jamf", "GET", "/api/{id}", 200, 0.01))
    activity.token(TokenEvent("jamf", "refreshed", expires_in=60))
    assert activity.providers["jamf"].upstream_error is None
    activity.token(TokenEvent("jamf", "refused", detail="invalid_client"))
    activity.upstream_call(UpstreamCall("intune", "GET", "/x", None, 1.0, error="ConnectTimeout"))
    assert activity.providers["jamf"].upstream_error == "token refused: invalid_client"
    assert activity.providers["jamf"].upstream_ok_at is not None
    assert activity.providers["intune"].upstream_error == "ConnectTimeout"


@pytest.mark.parametrize(
    "cookie",
    [
        "posture_admin=1.\xe9" + "0" * 63,  # a non-ASCII MAC
        "posture_admin=\xb2." + "0" * 64,  # a superscript two: a digit to `str.isdigit`
        "posture_admin=\u0661." + "0" * 64,  # an Arabic-Indic one
        "posture_admin=.",
    ],
    ids=["non-ascii-mac", "superscript-expiry", "arabic-indic-expiry", "empty"],
)
async def test_a_hostile_session_cookie_is_refused_like_any_other(
    aiohttp_client: Any, inventory: Path, cookie: str
) -> None:
    """Whatever bytes the cookie holds, it is no session: the page sends you to sign in (no
    crash, no error logged)."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url) as client:
        with capture_logs() as logs:
            response = await client.get("/", headers={b"Cookie": cookie.encode()})
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"token=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"token=abc", "application/x-www-form-urlencoded; charset=bogus"),
        (b"token=abc", "application/x-www-form-urlencoded; charset=utf-16"),
        (b"token=+2AA-", "application/x-www-form-urlencoded; charset=utf-7"),
        (b"token=\\ud800", "application/x-www-form-urlencoded; charset=unicode_escape"),
    ],
    ids=["not-utf8", "unknown-charset", "odd-length-utf16", "utf7-surrogate", "escape-surrogate"],
)
async def test_a_sign_in_form_that_cannot_be_read_is_a_failed_sign_in(
    aiohttp_client: Any, inventory: Path, body: bytes, content_type: str
) -> None:
    """A form whose bytes its charset cannot read, or reads as a lone surrogate (no UTF-8
    text), holds no token: the sign-in page again (401) and `admin.login_failed`, not a 500."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url) as client:
        with capture_logs() as logs:
            response = await client.post(
                "/login", content=body, headers={"Content-Type": content_type}
            )
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["admin.login_failed"]


@pytest.mark.parametrize("origin", ["http://[", "http://[::1"], ids=["bracket", "unclosed-ipv6"])
async def test_an_origin_that_is_no_url_is_another_site(
    aiohttp_client: Any, inventory: Path, origin: str
) -> None:
    """An Origin header that does not parse names no origin of ours: the post is refused."""
    admin = await start_admin(aiohttp_client, admin_config(inventory))
    async with httpx.AsyncClient(base_url=admin.url) as client:
        response = await client.post("/login", data={"token": TOKEN}, headers={"Origin": origin})
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
