"""The webhook end to end through the real app: verification order, decisions, replies, logs."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from connector import stepca
from connector.persistence import PERSISTENCE
from tests.conftest import AppClient
from tests.helpers import (
    AUTH_ID,
    ENRICH_ID,
    FIXED_NOW,
    SECRET,
    authorize,
    config,
    enrich,
    signed,
    webhook,
)

PEOPLE = "/webhooks/people"
GATE = "/webhooks/gate"


async def post(
    client: TestClient[Any, Any], path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """POST like step-ca: raw bytes and no Content-Type header."""
    response = await client.post(
        path, data=body, headers=headers, skip_auto_headers=["Content-Type"]
    )
    return response.status, await response.json()


async def test_managed_serial_is_allowed_with_enrichment(app_client: AppClient) -> None:
    """A managed device in the inventory gets allow plus the documented data schema."""
    client = await app_client()
    body = enrich("C02TEST00001")
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert status == 200
    assert answer["allow"] is True
    assert "error" not in answer
    data = answer["data"]
    assert data["device"] == {
        "serial": "C02TEST00001",
        "name": "MBP-ONE",
        "model": "MacBook Pro",
        "platform": "macOS",
        "os_version": "15.3.2",
    }
    assert data["user"] == {"username": "asharma", "department": "Platform", "title": "SRE"}
    assert data["groups"] == ["All Managed", "MDA Pilot"]
    assert data["provider"] == "inventory"


async def test_udid_identified_device_is_allowed(app_client: AppClient) -> None:
    """A device known only by UDID is found by its UDID."""
    client = await app_client()
    body = enrich("00008110-000A1C2E3F40801E")
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert (status, answer["allow"]) == (200, True)
    assert answer["data"]["device"]["udid"] == "00008110-000A1C2E3F40801E"
    assert "serial" not in answer["data"]["device"]


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        ("C02TEST00002", "device-unmanaged"),
        ("C02UNKNOWN99", "device-not-found"),
    ],
    ids=["unmanaged", "unknown"],
)
async def test_denials_are_http_200_with_error_object(
    app_client: AppClient, identifier: str, code: str
) -> None:
    """A deny is 200 with allow false and a coded error, so step-ca shows it to the client."""
    client = await app_client()
    body = enrich(identifier)
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert status == 200
    assert answer["allow"] is False
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    assert "data" not in answer


async def test_authorizing_allows_without_data(app_client: AppClient) -> None:
    """AUTHORIZING answers carry no data (step-ca ignores it)."""
    client = await app_client()
    body = authorize("C02TEST00001")
    status, answer = await post(client, GATE, body, signed(body, webhook_id=AUTH_ID))
    assert (status, answer) == (200, {"allow": True})


async def test_forbidden_group_is_denied(app_client: AppClient, inventory: Path) -> None:
    """A device in a none_of group is refused with group-forbidden."""
    hooks = [webhook("gate", "AUTHORIZING", policy={"groups": {"none_of": ["lost or stolen"]}})]
    client = await app_client(config(inventory, webhooks=hooks))
    body = authorize("C02TEST00003")
    _, answer = await post(client, GATE, body, signed(body, webhook_id=AUTH_ID))
    assert answer["error"]["code"] == "group-forbidden"


async def test_shadow_mode_allows_what_the_policy_refuses_with_the_devices_data(
    app_client: AppClient, inventory: Path
) -> None:
    """In shadow mode step-ca always gets an allow, in strict JSON (what Go's decoder reads):
    a device the policy refuses with its enrichment data, an unknown one with ``{}``."""
    hooks = [
        webhook(
            mode="shadow",
            policy={"groups": {"none_of": ["All Managed"]}},
            enrichment={"constants": {"tier": 1.5}},
        )
    ]
    client = await app_client(config(inventory, webhooks=hooks))
    answers = {}
    for serial in ("C02TEST00001", "C02NOTHERE01"):
        body = enrich(serial)
        response = await client.post(
            PEOPLE, data=body, headers=signed(body), skip_auto_headers=["Content-Type"]
        )
        assert response.status == 200
        assert response.content_type == "application/json"
        answers[serial] = json.loads(await response.read(), parse_constant=_no_constant)
    refused = answers["C02TEST00001"]
    assert refused["allow"] is True
    assert "error" not in refused
    assert refused["data"]["device"]["serial"] == "C02TEST00001"
    assert refused["data"]["tier"] == 1.5
    assert answers["C02NOTHERE01"] == {"allow": True, "data": {}}


@pytest.mark.parametrize(
    ("platform", "policy"),
    [("Windows", {}), ("macOS", {"provider": ["jamf"]})],
    ids=["another-platforms-record", "untrusted-inventory"],
)
async def test_shadow_mode_sends_no_data_from_a_record_not_taken_for_the_device(
    app_client: AppClient, inventory: Path, platform: str, policy: dict[str, Any]
) -> None:
    """A record of another device that took the Mac's serial (platform-mismatch), or one from
    an inventory the policy does not trust, must not put its user and groups into the Mac's
    certificate in shadow mode: ``{}``, as for an unknown device (and no user in the log)."""
    with inventory.open("a", encoding="utf-8") as rows:
        rows.write(
            f"C02TEST00009,,PC,Surface,{platform},11,true,true,company,2026-11-21T07:12:09Z,"
            "cfo,,,,,VPN Admins\n"
        )
    hooks = [webhook(mode="shadow", policy=policy)]
    settings = config(inventory, webhooks=hooks, logging={"personal_data": True})
    client = await app_client(settings)
    body = enrich("C02TEST00009", common_name="")
    with capture_logs() as logs:
        _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer == {"allow": True, "data": {}}
    [line] = [e for e in logs if e["event"] == "webhook.decision"]
    assert line["would_allow"] is False
    assert "user" not in line


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


async def test_required_group_gate(app_client: AppClient, inventory: Path) -> None:
    """With any_of set, only devices in one of those groups pass."""
    hooks = [webhook(policy={"groups": {"any_of": ["MDA Pilot"]}})]
    client = await app_client(config(inventory, webhooks=hooks))
    ok = enrich("C02TEST00001")
    no = enrich("00008110-000A1C2E3F40801E")
    assert (await post(client, PEOPLE, ok, signed(ok)))[1]["allow"] is True
    assert (await post(client, PEOPLE, no, signed(no)))[1]["error"]["code"] == "group-required"


async def test_personal_data_only_when_enabled(app_client: AppClient, inventory: Path) -> None:
    """E-mail and full name reach the data only with enrichment.personal_data."""
    hooks = [webhook(enrichment={"personal_data": True})]
    client = await app_client(config(inventory, webhooks=hooks))
    body = enrich("C02TEST00001")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["data"]["user"]["email"] == "anika@example.com"
    assert answer["data"]["user"]["full_name"] == "Anika Sharma"


# --- verification: each failure is a 4xx JSON error with a stable code -------------------


async def test_get_is_refused(app_client: AppClient) -> None:
    """Only POST reaches the webhook."""
    client = await app_client()
    response = await client.get(PEOPLE)
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method-not-allowed"


async def test_oversized_body_is_refused_before_reading(app_client: AppClient) -> None:
    """A declared length over the cap is refused without reading the body."""
    client = await app_client()
    body = b"{" + b" " * (70 * 1024) + b"}"
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert status == 413
    assert answer["error"]["code"] == "body-too-large"


async def test_oversized_chunked_body_is_refused(app_client: AppClient) -> None:
    """A chunked body without Content-Length is cut off at the cap too."""
    client = await app_client()

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    response = await client.post(
        PEOPLE, data=chunks(), headers=signed(b"x"), skip_auto_headers=["Content-Type"]
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body-too-large"


@pytest.mark.parametrize(
    ("path", "webhook_id"),
    [
        (PEOPLE, None),
        (PEOPLE, "00000000-0000-4000-8000-000000000000"),
        (PEOPLE, AUTH_ID),  # a real id, but of the webhook on the other path
    ],
    ids=["missing", "unknown", "other-path"],
)
async def test_unknown_webhook_id_is_refused(
    app_client: AppClient, path: str, webhook_id: str | None
) -> None:
    """The id header must name a webhook configured on this path."""
    client = await app_client()
    body = enrich("C02TEST00001")
    headers = signed(body, webhook_id=webhook_id or "")
    if webhook_id is None:
        headers.pop("X-Smallstep-Webhook-Id")
    status, answer = await post(client, path, body, headers)
    assert status == 401
    assert answer["error"]["code"] == "unknown-webhook"


async def test_unknown_webhook_id_is_logged_cut_short(app_client: AppClient) -> None:
    """An unknown id is attacker-chosen: the rejection logs at most its first 64 characters."""
    client = await app_client()
    body = enrich("C02TEST00001")
    chosen = "x" * 60 + "<tail-never-logged>" + "y" * 300
    with capture_logs() as logs:
        status, _answer = await post(client, PEOPLE, body, signed(body, webhook_id=chosen))
    assert status == 401
    [rejected] = [e for e in logs if e["event"] == "request.rejected"]
    assert rejected["webhook_id"] == chosen[:64]
    assert "tail-never-logged" not in json.dumps(logs)


async def test_unknown_id_signed_with_empty_key_is_refused(app_client: AppClient) -> None:
    """An unknown id is never checked against an empty key (a ca.json-style signature)."""
    client = await app_client()
    body = enrich("C02TEST00001")
    headers = signed(body, webhook_id="ca-json-hook", secret="")
    status, answer = await post(client, PEOPLE, body, headers)
    assert (status, answer["error"]["code"]) == (401, "unknown-webhook")


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h, b: h.pop("X-Smallstep-Signature"), "signature-missing"),
        (lambda h, b: h.update({"X-Smallstep-Signature": "0" * 64}), "signature-invalid"),
        (
            lambda h, b: h.update({"X-Smallstep-Signature": stepca.sign(b, "")}),
            "signature-invalid",
        ),
        (
            lambda h, b: h.update(
                {"X-Smallstep-Signature": stepca.sign(b, base64.b64encode(b"k" * 64).decode())}
            ),
            "signature-invalid",
        ),
    ],
    ids=["missing", "zeros", "empty-key", "wrong-secret"],
)
async def test_bad_signature_is_refused(app_client: AppClient, mutate: Any, code: str) -> None:
    """Without the right HMAC over the raw body, nothing is decided."""
    client = await app_client()
    body = enrich("C02TEST00001")
    headers = signed(body)
    mutate(headers, body)
    status, answer = await post(client, PEOPLE, body, headers)
    assert (status, answer["error"]["code"]) == (401, code)


async def test_tampered_body_is_rejected(app_client: AppClient) -> None:
    """Changing one byte after signing breaks the signature."""
    client = await app_client()
    body = enrich("C02TEST00002")
    headers = signed(body)
    tampered = body.replace(b"C02TEST00002", b"C02TEST00001")
    status, answer = await post(client, PEOPLE, tampered, headers)
    assert (status, answer["error"]["code"]) == (401, "signature-invalid")


async def test_signature_is_checked_before_json(app_client: AppClient) -> None:
    """A malformed body with a bad signature is a 401, not a parse error."""
    client = await app_client()
    status, answer = await post(client, PEOPLE, b"not json", signed(b"other"))
    assert (status, answer["error"]["code"]) == (401, "signature-invalid")


@pytest.mark.parametrize(
    ("auth", "header", "status"),
    [
        ({"bearer_token": "t0ken"}, {"bearer_token": "t0ken"}, 200),
        ({"bearer_token": "t0ken"}, {"bearer_token": "wrong"}, 401),
        ({"bearer_token": "t0ken"}, {}, 401),
        ({"basic_auth": {"username": "ca", "password": "pw"}}, {"basic_auth": ("ca", "pw")}, 200),
        ({"basic_auth": {"username": "ca", "password": "pw"}}, {"basic_auth": ("ca", "no")}, 401),
        ({"basic_auth": {"username": "ca", "password": "pw"}}, {"bearer_token": "pw"}, 401),
    ],
    ids=[
        "bearer-ok",
        "bearer-wrong",
        "bearer-missing",
        "basic-ok",
        "basic-wrong",
        "basic-as-bearer",
    ],
)
async def test_configured_credentials_are_required(
    app_client: AppClient,
    inventory: Path,
    auth: dict[str, Any],
    header: dict[str, Any],
    status: int,
) -> None:
    """A webhook with a bearer token or basic auth refuses calls without the same credentials."""
    client = await app_client(config(inventory, webhooks=[webhook(**auth)]))
    body = enrich("C02TEST00001")
    got, answer = await post(client, PEOPLE, body, signed(body, **header))
    assert got == status
    if status == 401:
        assert answer["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "payload-invalid"),
        (b"not json", "payload-invalid"),
        (b"[]", "payload-invalid"),
        (b'{"attestationData":{"permanentIdentifier":"C02TEST00001"}}', "payload-invalid"),
        (b'{"timestamp":"yesterday"}', "payload-invalid"),
        (b'{"timestamp":"2026-11-22T12:00:00"}', "payload-invalid"),
        (
            b'{"timestamp":"2026-11-22T12:00:00Z","attestationData":{"permanentIdentifier":5}}',
            "payload-invalid",
        ),
    ],
    ids=[
        "empty",
        "not-json",
        "array",
        "no-timestamp",
        "bad-timestamp",
        "naive-timestamp",
        "id-type",
    ],
)
async def test_malformed_body_is_400_with_reason(
    app_client: AppClient, body: bytes, code: str
) -> None:
    """A signed but malformed body is a 400 with a reason, never a traceback or an allow."""
    client = await app_client()
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert status == 400
    assert answer["allow"] is False
    assert answer["error"]["code"] == code
    assert "Traceback" not in answer["error"]["message"]


@pytest.mark.parametrize(
    "offset",
    [timedelta(minutes=-6), timedelta(minutes=6)],
    ids=["stale", "future"],
)
async def test_timestamp_outside_window_is_refused(
    app_client: AppClient, offset: timedelta
) -> None:
    """The timestamp must be within the two-sided skew window (default 300 s)."""
    client = await app_client()
    body = enrich("C02TEST00001", now=FIXED_NOW + offset)
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert (status, answer["error"]["code"]) == (400, "timestamp-out-of-window")


async def test_retry_of_same_bytes_is_accepted(app_client: AppClient) -> None:
    """step-ca's single retry resends identical bytes a second later; both are answered."""
    client = await app_client()
    body = enrich("C02TEST00001", now=FIXED_NOW - timedelta(seconds=1))
    headers = signed(body)
    first = await post(client, PEOPLE, body, headers)
    second = await post(client, PEOPLE, body, headers)
    assert first == second
    assert first[1]["allow"] is True


async def test_go_escaped_body_is_parsed(app_client: AppClient) -> None:
    """\\u003c-style escapes decode to the real characters (and such an id is refused)."""
    client = await app_client()
    body = enrich("C02<TEST>&", common_name="")
    assert b"\\u003c" in body
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert (status, answer["error"]["code"]) == (200, "identifier-invalid")


# --- identifier and CSR checks -----------------------------------------------------------


async def test_missing_identifier_denies_by_default(app_client: AppClient) -> None:
    """No attested identifier means deny unless configured otherwise."""
    client = await app_client()
    body = enrich(None, common_name="")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["error"]["code"] == "identifier-missing"


async def test_missing_identifier_can_be_allowed(app_client: AppClient, inventory: Path) -> None:
    """on_missing_identifier = "allow" passes non-attested orders through with empty data."""
    hooks = [webhook(on_missing_identifier="allow")]
    client = await app_client(config(inventory, webhooks=hooks))
    body = enrich(None, common_name="")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer == {"allow": True, "data": {}}


@pytest.mark.parametrize(
    ("identifier", "kinds", "code"),
    [
        ('C02"X";x==1', None, "identifier-invalid"),
        ("c02 test", None, "identifier-invalid"),
        ("C02TEST00001", ["udid"], "identifier-kind-not-allowed"),
        ("123456", ["serial", "udid"], "identifier-kind-not-allowed"),
    ],
    ids=["injection", "space", "serial-not-accepted", "yubikey-serial"],
)
async def test_identifier_shape_is_checked_before_lookup(
    app_client: AppClient, inventory: Path, identifier: str, kinds: list[str] | None, code: str
) -> None:
    """Only identifiers of an accepted shape and kind reach a provider."""
    hook = webhook(identifier_kinds=kinds) if kinds else webhook()
    client = await app_client(config(inventory, webhooks=[hook]))
    body = enrich(identifier, common_name="")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["error"]["code"] == code


async def test_an_identifier_that_upper_cases_to_another_device_is_refused(
    app_client: AppClient, inventory: Path
) -> None:
    """'\ufb00' (a ligature) upper-cases to "FF": with it in place of FF a UDID named another
    device, which was allowed with that device's data. Only ASCII identifiers are read."""
    udid = "00008110-000A1C2E3F40FF1E"
    with inventory.open("a", encoding="utf-8") as rows:
        rows.write(
            f",{udid},Eve's iPhone,iPhone,iOS,18.3.1,true,true,company,2026-11-21T07:12:09Z\n"
        )
    client = await app_client()
    body = enrich(udid, common_name="")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["allow"] is True  # the device itself
    body = enrich(udid.replace("FF", "\ufb00"), common_name="")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert (answer["allow"], answer["error"]["code"]) == (False, "identifier-invalid")


@pytest.mark.parametrize(
    ("model", "platform", "code"),
    [
        ("PC", "Windows", "platform-mismatch"),
        ("PC", "linux", "platform-mismatch"),
        ("VMware7,1", "macOS", "platform-mismatch"),
        ("Apple Virtual Machine 1", "macOS", "platform-mismatch"),
        ("MacBook Pro", "macOS", None),
        ("PC", "", None),
    ],
)
async def test_an_apple_identifier_on_another_platforms_record_is_denied(
    app_client: AppClient, inventory: Path, model: str, platform: str, code: str | None
) -> None:
    """Serials and UDIDs are attested by Apple, for its own hardware: a record of another
    platform, or of a virtual machine, with that serial (a VM's firmware says what its settings
    say) is not the device. A record without a platform is left to the policy, which here has
    no platform rule."""
    with inventory.open("a", encoding="utf-8") as rows:
        rows.write(
            f'C02TEST00009,,VM,"{model}",{platform},15.3,true,true,company,2026-11-21T07:12:09Z,'
            "eve,,,,,All Managed;MDA Pilot\n"
        )
    client = await app_client()
    body = enrich("C02TEST00009", common_name="")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["allow"] is (code is None), answer
    if code is not None:
        assert answer["error"]["code"] == code


async def test_csr_common_name_must_match_identifier(app_client: AppClient) -> None:
    """On ENRICHING, a non-empty CSR common name other than the identifier is refused."""
    client = await app_client()
    body = enrich("C02TEST00001", common_name="C02TEST00002")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["error"]["code"] == "csr-mismatch"


async def test_empty_csr_common_name_is_fine(app_client: AppClient) -> None:
    """Devices may leave the CSR common name empty."""
    client = await app_client()
    body = enrich("C02TEST00001", common_name="")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["allow"] is True


# --- providers failing, health -----------------------------------------------------------


async def test_broken_provider_denies_inventory_unavailable(
    app_client: AppClient, tmp_path: Path
) -> None:
    """When no provider matched and one failed, the answer is a fail-closed deny."""
    providers = {"inventory": {"kind": "json", "path": str(tmp_path / "missing.json")}}
    client = await app_client(config(tmp_path / "unused.csv", providers=providers))
    body = enrich("C02TEST00001")
    status, answer = await post(client, PEOPLE, body, signed(body))
    assert (status, answer["allow"], answer["error"]["code"]) == (
        200,
        False,
        "inventory-unavailable",
    )
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["providers"] == {"inventory": False}


async def test_health_endpoints(app_client: AppClient) -> None:
    """/healthz is always ok; /readyz is 200 once every provider loaded, and names the store."""
    client = await app_client()
    assert (await client.get("/healthz")).status == 200
    await client.app[PERSISTENCE].store.wait_ready()
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert body["status"] == "ready"
    assert body["providers"] == {"inventory": True}
    assert body["store"]["ready"] is True
    assert body["store"]["backend"].startswith("sqlite:")


async def test_later_provider_answers_when_first_misses(
    app_client: AppClient, inventory: Path, tmp_path: Path
) -> None:
    """Providers are asked in order; the first match wins."""
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({"devices": [{"serial": "C02OTHER0001", "managed": True}]}), encoding="utf-8"
    )
    providers = {
        "inventory": {"kind": "csv", "path": str(inventory), "reload_interval": 0},
        "other": {"kind": "json", "path": str(other), "reload_interval": 0},
    }
    hooks = [webhook(providers=("inventory", "other"))]
    client = await app_client(config(inventory, providers=providers, webhooks=hooks))
    body = enrich("C02OTHER0001")
    _, answer = await post(client, PEOPLE, body, signed(body))
    assert answer["allow"] is True
    assert answer["data"]["provider"] == "other"


# --- logs ----------------------------------------------------------------------------------


async def test_one_decision_event_per_call_without_secrets(app_client: AppClient) -> None:
    """Each call logs exactly one webhook.decision; no secret, CSR or e-mail in it."""
    client = await app_client()
    body = enrich("C02TEST00001")
    with capture_logs() as events:
        await post(client, PEOPLE, body, signed(body, request_id="req-42"))
    decisions = [e for e in events if e["event"] == "webhook.decision"]
    assert len(decisions) == 1
    event = decisions[0]
    assert event["webhook"] == "people"
    assert event["kind"] == "ENRICHING"
    assert event["identifier"] == "C02TEST00001"
    assert event["allow"] is True
    assert event["provider"] == "inventory"
    assert isinstance(event["latency_ms"], float)
    text = json.dumps(events, default=str)
    assert SECRET not in text
    assert "anika@example.com" not in text
    assert "MII" not in text  # no DER/base64 CSR


async def test_rejection_is_logged_once(app_client: AppClient) -> None:
    """A refused request logs one request.rejected with its code, and no decision."""
    client = await app_client()
    body = enrich("C02TEST00001")
    headers = signed(body)
    headers["X-Smallstep-Signature"] = "0" * 64
    with capture_logs() as events:
        await post(client, PEOPLE, body, headers)
    rejected = [e for e in events if e["event"] == "request.rejected"]
    assert [e["code"] for e in rejected] == ["signature-invalid"]
    assert not [e for e in events if e["event"] == "webhook.decision"]


async def test_same_path_serves_two_webhook_ids(app_client: AppClient, inventory: Path) -> None:
    """Several webhooks may share a path; the id header selects one."""
    hooks = [
        webhook("people", path="/hook"),
        webhook("gate", "AUTHORIZING", path="/hook"),
    ]
    client = await app_client(config(inventory, webhooks=hooks))
    e_body = enrich("C02TEST00001")
    a_body = authorize("C02TEST00001")
    _, e_answer = await post(client, "/hook", e_body, signed(e_body, webhook_id=ENRICH_ID))
    _, a_answer = await post(client, "/hook", a_body, signed(a_body, webhook_id=AUTH_ID))
    assert "data" in e_answer
    assert a_answer == {"allow": True}


async def test_not_ready_provider_is_retried_until_ready(
    app_client: AppClient, tmp_path: Path
) -> None:
    """A provider that failed to start is started again in the background; /readyz recovers."""
    path = tmp_path / "late.json"
    providers = {"inventory": {"kind": "json", "path": str(path), "reload_interval": 0}}
    mapping = config(tmp_path / "unused.csv", providers=providers)
    mapping["server"]["provider_retry_interval"] = 0.02
    client = await app_client(mapping)
    assert (await client.get("/readyz")).status == 503
    path.write_text(json.dumps([{"serial": "C02LATE00001", "managed": True}]), encoding="utf-8")

    async def ready() -> None:
        # Polls the real endpoint: the retry runs in the background with no event to wait on.
        while (await client.get("/readyz")).status != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(ready(), timeout=5)
    body = enrich("C02LATE00001")
    assert (await post(client, PEOPLE, body, signed(body)))[1]["allow"] is True
