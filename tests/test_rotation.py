"""Secret rotation: during the window a webhook accepts step-ca's current and next id and secret,
says in the log which secret matched, and refuses any other secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from connector.checks import config_warnings
from connector.settings import ConfigError
from tests.conftest import AppClient
from tests.helpers import ENRICH_ID, SECRET, config, enrich, make_settings, signed, webhook

PEOPLE = "/webhooks/people"
NEXT_SECRET = base64.b64encode(bytes(range(100, 164))).decode()
THIRD_SECRET = base64.b64encode(bytes(range(1, 65))).decode()
NEXT_ID = "0d7a9c2e-4b1f-4e3a-9c8d-7f6e5d4c3b2a"


def _rotating(**extra: Any) -> dict[str, Any]:
    return webhook(next_id=NEXT_ID, next_secret=NEXT_SECRET, **extra)


async def _call(client: TestClient[Any, Any], webhook_id: str, secret: str) -> tuple[int, Any]:
    body = enrich("C02TEST00001")
    headers = signed(body, webhook_id=webhook_id, secret=secret)
    response = await client.post(
        PEOPLE, data=body, headers=headers, skip_auto_headers=["Content-Type"]
    )
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("webhook_id", "secret", "matched"),
    [(ENRICH_ID, SECRET, "current"), (NEXT_ID, NEXT_SECRET, "next")],
    ids=["current", "next"],
)
async def test_both_secrets_are_accepted_during_a_rotation(
    app_client: AppClient, webhook_id: str, secret: str, matched: str
) -> None:
    """A call signed with the current or the next secret is decided, and the decision's log line
    names which one matched (``secret=next``), never the secret itself."""
    client = await app_client(webhooks=[_rotating()])
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as events:
        status, answer = await _call(client, webhook_id, secret)
    assert (status, answer["allow"]) == (200, True)
    [decision] = [e for e in events if e["event"] == "webhook.decision"]
    assert decision["secret"] == matched
    text = json.dumps(events, default=str)
    assert SECRET not in text
    assert NEXT_SECRET not in text


@pytest.mark.parametrize("webhook_id", [ENRICH_ID, NEXT_ID], ids=["current-id", "next-id"])
async def test_a_third_secret_is_refused_during_a_rotation(
    app_client: AppClient, webhook_id: str
) -> None:
    """A signature by neither the current nor the next secret is refused (401) on either id."""
    client = await app_client(webhooks=[_rotating()])
    status, answer = await _call(client, webhook_id, THIRD_SECRET)
    assert (status, answer["error"]["code"]) == (401, "signature-invalid")


async def test_the_next_secret_alone_also_serves_the_current_id(app_client: AppClient) -> None:
    """With `next_secret` but no `next_id` (a step-ca that keeps the id), the one id accepts
    both secrets and nothing else."""
    client = await app_client(webhooks=[webhook(next_secret=NEXT_SECRET)])
    assert (await _call(client, ENRICH_ID, NEXT_SECRET))[0] == 200
    assert (await _call(client, ENRICH_ID, SECRET))[0] == 200
    assert (await _call(client, ENRICH_ID, THIRD_SECRET))[0] == 401


async def test_no_secret_field_outside_a_rotation(app_client: AppClient) -> None:
    """Without `next_secret` the decision's log line has no `secret` field."""
    client = await app_client(webhooks=[webhook()])
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as events:
        assert (await _call(client, ENRICH_ID, SECRET))[0] == 200
    [decision] = [e for e in events if e["event"] == "webhook.decision"]
    assert "secret" not in decision


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (webhook(next_id=NEXT_ID), "next_id needs next_secret"),
        (webhook(next_secret=""), "next_secret is empty"),
        (webhook(next_secret="not*base64"), "webhooks[0].next_secret: secret is not valid base64"),
    ],
    ids=["id-without-secret", "empty", "not-base64"],
)
def test_a_broken_rotation_is_refused(inventory: Path, entry: dict[str, Any], problem: str) -> None:
    """`next_id` without `next_secret`, an empty or a non-base64 next secret stop the config."""
    with pytest.raises(ConfigError) as error:
        make_settings(config(inventory, webhooks=[entry]))
    assert problem in "\n".join(error.value.problems)
    assert NEXT_SECRET not in "\n".join(error.value.problems)


def test_a_next_id_another_webhook_serves_is_refused(inventory: Path) -> None:
    """Two webhooks on one path cannot both be reached by the same id, next ids included."""
    gate = webhook("gate", path=PEOPLE, webhook_id=NEXT_ID, secret=THIRD_SECRET)
    with pytest.raises(ConfigError) as error:
        make_settings(config(inventory, webhooks=[gate, _rotating()]))
    assert (
        f"webhooks[1].next_id: webhooks[0] already serves this id on {PEOPLE}"
        in (error.value.problems[0])
    )


def test_an_open_rotation_is_a_warning(inventory: Path) -> None:
    """check-config reminds the admin to finish a rotation, and flags a next secret that is the
    current one or another webhook's."""
    settings = make_settings(
        config(
            inventory,
            webhooks=[
                webhook(next_secret=SECRET),
                webhook("gate", "AUTHORIZING", secret=THIRD_SECRET, next_secret=NEXT_SECRET),
                webhook("third", "AUTHORIZING", webhook_id=NEXT_ID, secret=NEXT_SECRET),
            ],
        )
    )
    warnings = [w.removeprefix("<test>: ") for w in config_warnings(settings)]
    assert "webhooks[0].next_secret: the same as its secret, so nothing rotates" in warnings[0]
    assert warnings[1].startswith(
        "webhooks[2].secret: the same secret as webhooks[1].next_secret (gate)"
    )
    rotations = [w for w in warnings if "a secret rotation is open" in w]
    assert [w.split(":")[0] for w in rotations] == [
        "webhooks[0].next_secret",
        "webhooks[1].next_secret",
    ]
    assert not [w for w in warnings if NEXT_SECRET in w or SECRET in w]
