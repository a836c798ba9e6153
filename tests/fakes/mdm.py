"""A fake MDM fetching SCEP challenges from a "challenge URL", as Fleet and Jamf Pro call one.

Fleet (``ee/server/service/scep/scep_proxy.go``, ``GetSmallstepSCEPChallenge``) POSTs with HTTP
Basic credentials, ``Content-Type: application/json`` and a 30 s timeout::

    {"webhook": {"webhookEvent": "SCEPChallenge", "id": 1, "eventTimestamp": <unix s>,
                 "name": "SCEPChallenge"},
     "event": {"scepServerUrl": "...", "payloadIdentifier": "<uuid>",
               "payloadTypes": ["com.apple.security.scep"]}}

and takes the raw body of a 200 as the challenge. Fleet's body names no device (it is Jamf's
SCEPChallenge webhook shape); the connector binds a challenge to ``event.device`` when the MDM
sends one, so this fake adds ``device`` with a serial number or UUID when asked, and sends the
bare Fleet body for a configuration probe.
"""

from __future__ import annotations

import base64
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


def challenge_request(
    *, serial: str | None = None, device_uuid: str | None = None, scep_url: str = ""
) -> dict[str, Any]:
    """The JSON body; without `serial` and `device_uuid` it is Fleet's probe (no device)."""
    event: dict[str, Any] = {
        "scepServerUrl": scep_url or "https://ca.example.com/scep/wifi",
        "payloadIdentifier": str(uuid.uuid4()).upper(),
        "payloadTypes": ["com.apple.security.scep"],
    }
    device = {k: v for k, v in (("serialNumber", serial), ("uuid", device_uuid)) if v is not None}
    if device:
        event["device"] = device
    return {
        "webhook": {
            "webhookEvent": "SCEPChallenge",
            "id": 1,
            "eventTimestamp": int(time.time()),
            "name": "SCEPChallenge",
        },
        "event": event,
    }


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The Authorization header Go's ``SetBasicAuth`` writes."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class FakeMdm:
    """Fetches challenges over HTTPS, as the MDM server would before pushing a SCEP profile.

    Attributes:
        url: The challenge URL.
        username: HTTP Basic user.
        password: HTTP Basic password.
        verify: TLS verification (an `ssl.SSLContext` trusting the connector's CA).
        fetched: Every challenge received, in order.
    """

    url: str
    username: str
    password: str
    verify: ssl.SSLContext | bool = True
    fetched: list[str] = field(default_factory=list)

    def fetch(self, *, serial: str | None = None, device_uuid: str | None = None) -> str:
        """A challenge for the device (or a probe without one); raises on any non-200."""
        with httpx.Client(verify=self.verify, timeout=30.0) as client:
            response = client.post(
                self.url,
                json=challenge_request(serial=serial, device_uuid=device_uuid),
                headers=basic_auth(self.username, self.password),
            )
        response.raise_for_status()
        self.fetched.append(response.text)
        return response.text
