"""A tiny TLS server that records webhook requests byte for byte, for the captured vectors.

step-ca's webhooks point at it instead of the connector; it keeps the raw body, the headers
in wire order and the client certificate's DNS names, and answers `allow` with canned data
shaped like the connector's enrichment (so the template renders and AUTHORIZING runs too).
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ENRICH_REPLY: dict[str, Any] = {
    "allow": True,
    "data": {
        "device": {"serial": "C02LABMANAGED", "platform": "macOS"},
        "user": {
            "username": "alice",
            "email": "alice@example.com",
            "department": "Research & Development",
        },
        "groups": ["Engineering", "VPN Users"],
        "provider": "inventory",
    },
}
AUTHORIZE_REPLY: dict[str, Any] = {"allow": True}


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """One request as it arrived.

    Attributes:
        method: HTTP method.
        path: request path.
        headers: (name, value) pairs in wire order and spelling.
        body: the raw body bytes (what the signature covers).
        client_dns_names: DNS SANs of the verified client certificate (empty without one).
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    client_dns_names: tuple[str, ...]


def _client_dns_names(connection: object) -> tuple[str, ...]:
    """DNS SANs of the verified peer certificate, if the client sent one."""
    if not isinstance(connection, ssl.SSLSocket):
        return ()
    peer: dict[str, Any] = dict(connection.getpeercert() or {})
    pairs: tuple[tuple[str, str], ...] = peer.get("subjectAltName", ())
    return tuple(value for kind, value in pairs if kind == "DNS")


class CaptureServer:
    """HTTPS on 127.0.0.1 (port 0), asking for an optional client cert verified by `client_ca`."""

    def __init__(self, cert: Path, key: Path, client_ca: Path) -> None:
        self.requests: list[CapturedRequest] = []
        lock = threading.Lock()
        captured = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                names = _client_dns_names(self.connection)
                with lock:
                    captured.append(
                        CapturedRequest(
                            method=self.command,
                            path=self.path,
                            headers=tuple(self.headers.items()),
                            body=body,
                            client_dns_names=names,
                        )
                    )
                reply = ENRICH_REPLY if self.path.endswith("/people") else AUTHORIZE_REPLY
                payload = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        port: int = self._server.server_address[1]
        return port

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
