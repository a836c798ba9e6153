"""What an AUTHORIZING or ENRICHING call says, read from its body as strictly as `parse_body`.

A decision reads three values of the body: the timestamp, the attested identifier and the CSR's
common name. `read_call` runs every check `parse_body` runs on the bytes (`read_tree`: UTF-8,
repeated members, the member names Go would fold, Go's timestamp), then, instead of building
the pydantic model, checks the types of the members the model reads by hand, only where the
answer is certain: a member of exactly the type the model takes, or absent where the model
has a default. Anything else (a number where a string belongs, a bare string as a subject, a
timestamp not as Go writes it) goes to the model, which refuses it with its own message. So a
body `read_call` reads by hand is one the model accepts with the same values
(`tests/test_call.py` holds it to that), and every other body is read by the model itself.
Building the model costs several times the hand check (an object per nested member), and the
hot path reads every body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from connector.models import WebhookRequest, parse_go_timestamp, read_tree


class Call(NamedTuple):
    """The facts of one call a decision reads.

    Attributes:
        timestamp: When step-ca sent it (checked against the clock).
        permanent_identifier: The attested identifier, if the order carried one.
        csr_common_name: The CSR's common name (ENRICHING calls), if any.
    """

    timestamp: datetime
    permanent_identifier: str | None
    csr_common_name: str | None

    @classmethod
    def of(cls, request: WebhookRequest) -> Call:
        """The facts of a request the model read."""
        return cls(request.timestamp, request.permanent_identifier, request.csr_common_name)


def read_call(body: bytes) -> Call:
    """The call in `body`, or the error `parse_body(body, WebhookRequest)` raises.

    Raises:
        WireFormatError: For a body Go could read differently.
        pydantic.ValidationError: For a body of the wrong shape.
    """
    tree = read_tree(body, WebhookRequest)
    call = _typed(tree)
    return call if call is not None else Call.of(WebhookRequest.model_validate(tree))


def _typed(tree: Any) -> Call | None:
    """The call when every member the model reads has exactly the type it takes, else None."""
    if type(tree) is not dict:
        return None
    timestamp = tree.get("timestamp")
    if type(timestamp) is not str or not _text(tree, "provisionerName"):
        return None
    attested = tree.get("attestationData")
    identifier = None
    if attested is not None:
        if type(attested) is not dict or not _text(attested, "permanentIdentifier"):
            return None
        identifier = attested.get("permanentIdentifier")
    csr = tree.get("x509CertificateRequest")
    common_name = None
    if csr is not None:
        if type(csr) is not dict or not _text(csr, "raw") or not _subject(csr):
            return None
        subject = csr.get("subject")
        common_name = subject.get("commonName") if subject is not None else None
    certificate = tree.get("x509Certificate")
    if certificate is not None and (
        type(certificate) is not dict or not _subject(certificate) or not _sans(certificate)
    ):
        return None
    try:
        when = parse_go_timestamp(timestamp)
    except ValueError:
        return None
    return Call(when, identifier, common_name)


def _text(node: dict[str, Any], name: str) -> bool:
    """Whether `node[name]` is what a ``str | None`` field with a default takes for certain."""
    value = node.get(name)
    return value is None or type(value) is str


def _subject(node: dict[str, Any]) -> bool:
    """Whether `node`'s ``subject`` is absent (the model's default) or an object whose
    ``commonName`` is a string or null. A null subject is refused by the model: not certain."""
    if "subject" not in node:
        return True
    subject = node["subject"]
    return type(subject) is dict and _text(subject, "commonName")


def _sans(node: dict[str, Any]) -> bool:
    """Whether ``sans`` is absent, null or a list of objects (``list[dict[str, Any]] | None``)."""
    sans = node.get("sans")
    return sans is None or (type(sans) is list and all(type(san) is dict for san in sans))
