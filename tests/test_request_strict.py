"""The request body is read exactly as step-ca writes it, and never differently from Go's decoder.

The Go behaviour mirrored in `go_identifier` was checked against Go 1.26's encoding/json (the
toolchain that built the step-ca in `.tools/`): keys match fields case-insensitively, the last
matching key wins, and a repeated object merges into the first.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.models import (
    MEMBER_SETS_BODY_BYTES,
    WebhookRequest,
    WireFormatError,
    parse_go_timestamp,
    parse_request,
)
from tests.conftest import AppClient
from tests.helpers import config, signed, webhook

CAPTURED = Path(__file__).parent / "fixtures" / "captured"
PEOPLE = "/webhooks/people"
TS = '"timestamp":"2026-11-22T12:00:00.123456789Z"'


def body(*members: str) -> bytes:
    """A body from raw `"key":value` members, in order (so keys can repeat)."""
    return ("{" + ",".join(members) + "}").encode()


def with_id(identifier: str = "C02TEST00001") -> str:
    """The attestation member step-ca writes for `identifier`."""
    return f'"attestationData":{{"permanentIdentifier":{json.dumps(identifier)}}}'


async def post(client: TestClient[Any, Any], raw: bytes) -> tuple[int, dict[str, Any]]:
    """POST signed like step-ca: raw bytes and no Content-Type."""
    response = await client.post(
        PEOPLE, data=raw, headers=signed(raw), skip_auto_headers=["Content-Type"]
    )
    return response.status, await response.json()


# --- the real step-ca's bodies -------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["enriching", "authorizing"])
def test_captured_step_ca_bodies_are_accepted(stem: str) -> None:
    """Both bodies captured from a real step-ca v0.30.2 pass the strict reader unchanged."""
    raw = (CAPTURED / f"{stem}.body").read_bytes()
    request = parse_request(raw)
    assert request.permanent_identifier == "C02LABMANAGED"
    assert request.timestamp.tzinfo is not None
    assert request == WebhookRequest.model_validate_json(raw)


def test_unknown_members_are_still_ignored() -> None:
    """A newer step-ca's extra members (any case, any shape) do not break the reading."""
    raw = body(TS, '"newField":{"Nested":[1,2]}', '"NewField":true', with_id())
    assert parse_request(raw).permanent_identifier == "C02TEST00001"


# --- timestamp -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T12:00:00Z", datetime(2026, 11, 22, 12, tzinfo=UTC)),
        ("2026-11-22T12:00:00.5Z", datetime(2026, 11, 22, 12, 0, 0, 500000, tzinfo=UTC)),
        (
            "2026-11-22T12:00:00.123456789Z",
            datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC),
        ),
        (  # cut, not rounded into the next second
            "2026-11-22T12:00:00.999999999Z",
            datetime(2026, 11, 22, 12, 0, 0, 999999, tzinfo=UTC),
        ),
        (
            "2026-11-22T13:00:00.000000001+01:00",
            datetime(2026, 11, 22, 12, 0, 0, 0, tzinfo=UTC),
        ),
        (
            "2026-11-22T06:30:00-05:30",
            datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        ),
    ],
    ids=["whole-second", "one-digit", "nanoseconds", "cut", "plus-offset", "minus-offset"],
)
def test_go_rfc3339nano_timestamps_are_read(text: str, expected: datetime) -> None:
    """Every form Go's `time.Time.MarshalJSON` writes is read as the same instant."""
    moment = parse_go_timestamp(text)
    assert moment == expected
    assert moment.utcoffset() is not None


@pytest.mark.parametrize(
    "value",
    [
        "1795348800",
        "1795348800.5",
        '"1795348800"',
        '"2026-11-22 12:00:00Z"',
        '"2026-11-22t12:00:00Z"',
        '"2026-11-22T12:00:00z"',
        '"2026-11-22T12:00:00.1234567891Z"',
        '"2026-11-22T12:00:00.120Z"',
        '"2026-11-22T12:00:00.Z"',
        '"2026-11-22T12:00:00"',
        '"2026-11-22T12:00:00+00:00"',
        '"2026-11-22T12:00:00+0100"',
        '"2026-11-22T12:00:00+01"',
        '"2026-11-22T12:00:00+24:00"',
        '"2026-11-22T12:00Z"',
        '"2026-11-22"',
        '"2026-02-30T12:00:00Z"',
        '"2026-11-22T12:00:60Z"',
        '"20261122T120000Z"',
        '"+2026-11-22T12:00:00Z"',
        '"\uff12\uff10\uff12\uff16-11-22T12:00:00Z"',
        "null",
        "true",
        '{"seconds":1795348800}',
    ],
    ids=[
        "epoch-int",
        "epoch-float",
        "epoch-string",
        "space-separator",
        "lowercase-t",
        "lowercase-z",
        "ten-fraction-digits",
        "trailing-zero",
        "empty-fraction",
        "no-offset",
        "zero-offset-not-z",
        "offset-without-colon",
        "offset-hours-only",
        "offset-24h",
        "no-seconds",
        "date-only",
        "no-such-day",
        "leap-second",
        "basic-format",
        "signed-year",
        "fullwidth-digits",
        "null",
        "bool",
        "object",
    ],
)
def test_timestamp_not_as_go_writes_it_is_refused(value: str) -> None:
    """Only Go's RFC3339Nano string is a timestamp; pydantic's lenient forms are refused."""
    with pytest.raises(ValidationError, match="timestamp"):
        parse_request(body(f'"timestamp":{value}', with_id()))


@pytest.mark.parametrize(
    "value",
    ["1795348800", '"2026-11-22 12:00:00Z"', '"2026-11-22T12:00:00.1234567891Z"'],
    ids=["epoch", "space", "ten-digits"],
)
async def test_lenient_timestamp_is_a_400(app_client: AppClient, value: str) -> None:
    """A signed body whose timestamp Go would not have written is refused before any lookup."""
    client = await app_client()
    status, answer = await post(client, body(f'"timestamp":{value}', with_id()))
    assert (status, answer["error"]["code"]) == (400, "payload-invalid")
    assert "timestamp" in answer["error"]["message"]


# --- member names: exactly step-ca's, never a variant Go would read ------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        body(TS, with_id("C02TEST00001"), '"AttestationData":{"permanentIdentifier":"C02X"}'),
        body(TS, '"attestationData":{"permanentIdentifier":"C02A","PERMANENTIDENTIFIER":"C02B"}'),
        body(TS, '"attestationData":{"PermanentIdentifier":"C02TEST00001"}'),
        body('"Timestamp":"2026-11-22T12:00:00Z"', with_id()),
        body('"time\u017ftamp":"2026-11-22T12:00:00Z"', with_id()),
        body(TS, '"attestationData":{"permanent\u0131dentifier":"C02X","permanentIdentifier":"A"}'),
        body(TS, with_id(), '"x509CertificateRequest":{"Subject":{"commonName":"C02X"}}'),
        body(TS, with_id(), '"x509CertificateRequest":{"subject":{"COMMONNAME":"C02X"}}'),
        body(TS, with_id(), '"X509CERTIFICATE":{}'),
    ],
    ids=[
        "object-variant-after",
        "field-variant-after",
        "only-a-variant",
        "timestamp-variant",
        "long-s",
        "dotless-i-refused-though-go-ignores-it",
        "csr-subject",
        "csr-common-name",
        "certificate",
    ],
)
def test_case_variant_of_a_read_member_is_refused(raw: bytes) -> None:
    """A key Go would match to a field we read, but spelt otherwise, is refused."""
    with pytest.raises(WireFormatError, match="only in case"):
        parse_request(raw)


@pytest.mark.parametrize(
    "extra",
    [
        "",
        f',"{"u" * MEMBER_SETS_BODY_BYTES}":1',
    ],
    ids=["small-body", "large-body"],
)
def test_a_key_set_checked_before_is_judged_the_same_again(extra: str) -> None:
    """Key sets are remembered once checked (a large body's are not): a refused set is
    refused on every call, an accepted one read the same, whatever bodies came between."""
    good = body(TS, '"attestationData":{"permanentIdentifier":"C02TEST00001"' + extra + "}")
    bad = body(TS, '"attestationData":{"PermanentIdentifier":"C02TEST00001"' + extra + "}")
    for _ in range(3):
        assert parse_request(good).permanent_identifier == "C02TEST00001"
        with pytest.raises(WireFormatError, match=r"body\.attestationData: member 'Perm"):
            parse_request(bad)


@pytest.mark.parametrize(
    "raw",
    [
        body(TS, with_id("C02TEST00001"), with_id("C02TEST00002")),
        body(TS, '"attestationData":{"permanentIdentifier":"C02A","permanentIdentifier":"C02B"}'),
        body(TS, TS, with_id()),
        body(TS, with_id(), '"x509CertificateRequest":{"version":0,"version":1}'),
    ],
    ids=["object", "identifier", "timestamp", "unread-member"],
)
def test_repeated_member_is_refused(raw: bytes) -> None:
    """Go keeps the last of repeated keys; rather than guess, a repeated key is refused."""
    with pytest.raises(WireFormatError, match="appears twice"):
        parse_request(raw)


def test_snake_case_names_are_not_read() -> None:
    """`permanent_identifier` is not a name Go reads, so neither do we: no identifier."""
    raw = body(TS, '"attestationData":{"permanent_identifier":"C02TEST00001"}')
    assert parse_request(raw).permanent_identifier is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (body(TS, with_id("C02TEST0000\ud800")), "surrogate"),
        (body(TS, '"attestationData":{"permanentIdentifier":"C02\\ud800X"}'), "surrogate"),
        (body(TS, '"note\\udfff":1', with_id()), "surrogate"),
        (body(TS, with_id()).replace(b"C02", b"C\xff2"), "UTF-8"),
        (b"\xef\xbb\xbf" + body(TS, with_id()), "not JSON"),
        (body(TS, with_id(), '"x509CertificateRequest":{"version":NaN}'), "NaN"),
        (body(TS, with_id(), '"deep":' + "[" * 5000 + "]" * 5000), "nested"),
    ],
    ids=[
        "lone-surrogate-escape",
        "surrogate-mid-string",
        "surrogate-in-key",
        "invalid-utf8",
        "byte-order-mark",
        "nan",
        "deep-nesting",
    ],
)
def test_text_go_would_read_otherwise_is_refused(raw: bytes, match: str) -> None:
    """Go reads lone surrogates and bad UTF-8 as U+FFFD and refuses NaN: we refuse all of them."""
    with pytest.raises(WireFormatError, match=match):
        parse_request(raw)


@pytest.mark.parametrize(
    "member", ['"x":' + "9" * 5000, '"x":-' + "1" * 4301], ids=["positive", "negative"]
)
def test_a_number_of_too_many_digits_is_refused(member: str) -> None:
    """Python will not convert an integer of more than 4,300 digits: such a body (step-ca never
    writes one) is refused as not step-ca's, not a 500."""
    with pytest.raises(WireFormatError, match="a number in the body has too many digits"):
        parse_request(body(TS, with_id(), member))


def test_escaped_backslash_before_u_is_plain_text() -> None:
    """`\\\\ud800` is a backslash and the letters `ud800`, as Go reads it, not a surrogate."""
    raw = body(TS, '"attestationData":{"permanentIdentifier":"C02\\\\ud800"}')
    assert parse_request(raw).permanent_identifier == "C02\\ud800"


def test_bare_string_subject_is_refused() -> None:
    """Go's x509util reads `"subject":"X"` as common name X; we refuse rather than miss it."""
    raw = body(TS, with_id(), '"x509CertificateRequest":{"subject":"C02OTHER0001"}')
    with pytest.raises(ValidationError):
        parse_request(raw)


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        (
            body(
                '"timestamp":"2026-11-22T12:00:00Z"',
                '"attestationData":{"permanentIdentifier":"C02TEST00002",'
                '"PermanentIdentifier":"C02TEST00001"}',
            ),
            (400, "payload-invalid"),
        ),
        (
            body(
                '"timestamp":"2026-11-22T12:00:00Z"',
                '"attestationData":{"permanent_identifier":"C02TEST00001"}',
            ),
            (200, "identifier-missing"),
        ),
        (
            body(
                '"timestamp":"2026-11-22T12:00:00Z"',
                with_id("C02TEST00002"),
                with_id("C02TEST00001"),
            ),
            (400, "payload-invalid"),
        ),
    ],
    ids=["case-variant", "snake-case", "repeated"],
)
async def test_ambiguous_body_is_never_allowed(
    app_client: AppClient, raw: bytes, answer: tuple[int, str]
) -> None:
    """A body where a Python reading could see a managed device Go does not see is not allowed."""
    client = await app_client()
    status, reply = await post(client, raw)
    assert (status, reply["error"]["code"]) == answer


# --- differential property against Go's decoding -------------------------------------------------


def go_fold(key: str) -> str:
    """Go's foldName for the keys generated below (ASCII upper; U+017F is S, U+212A is K)."""
    return "".join(
        {"\u017f": "S", "\u212a": "K"}.get(c, c.upper() if c.isascii() else c) for c in key
    )


Pairs = list[tuple[str, Any]]


def go_identifier(top: Pairs) -> str | None:
    """What Go's encoding/json puts into AttestationData.PermanentIdentifier.

    Every matching key assigns in order (last wins); a repeated object decodes into the struct
    the first one allocated; null resets the pointer.
    """
    identifier: str | None = None
    for key, value in top:
        if go_fold(key) != go_fold("attestationData"):
            continue
        if value is None:
            identifier = None
            continue
        for inner_key, inner_value in value:
            if go_fold(inner_key) == go_fold("permanentIdentifier") and inner_value is not None:
                identifier = inner_value or None  # null leaves a Go string as it was
    return identifier


def encode(pairs: Pairs) -> str:
    """JSON for an object given as pairs (keys may repeat), objects nested as pairs too."""
    members = []
    for key, value in pairs:
        text = encode(value) if isinstance(value, list) else json.dumps(value)
        members.append(f"{json.dumps(key)}:{text}")
    return "{" + ",".join(members) + "}"


ID_KEYS = st.sampled_from(
    [
        "permanentIdentifier",
        "PermanentIdentifier",
        "permanentidentifier",
        "PERMANENTIDENTIFIER",
        "permanent_identifier",
        "permanentIdentifier ",
        "permanentIdentifie\u0433",
    ]
)
OBJECT_KEYS = st.sampled_from(
    [
        "attestationData",
        "AttestationData",
        "ATTESTATIONDATA",
        "attestation_data",
        "atte\u017ftationData",
    ]
)
IDENTIFIERS = st.sampled_from(["C02TEST00001", "C02TEST00002", "", None])
INNER = st.lists(st.tuples(ID_KEYS, IDENTIFIERS), max_size=3)
TOP = st.lists(st.tuples(OBJECT_KEYS, st.one_of(st.none(), INNER)), min_size=1, max_size=3)


@given(TOP)
def test_accepted_body_reads_the_identifier_go_reads(top: Pairs) -> None:
    """Whatever the keys' case and repetition, an accepted body yields Go's identifier."""
    raw = ('{"timestamp":"2026-11-22T12:00:00Z",' + encode(top)[1:]).encode()
    try:
        request = parse_request(raw)
    except (WireFormatError, ValidationError):
        return
    assert (request.permanent_identifier or None) == go_identifier(top)


def test_python_built_request_needs_an_aware_timestamp() -> None:
    """`lookup` builds a request in Python: an aware datetime is kept, a naive one refused."""
    now = datetime(2026, 11, 22, 12, tzinfo=timezone(timedelta(hours=2)))
    assert WebhookRequest(timestamp=now).timestamp == now
    with pytest.raises(ValidationError, match="timestamp"):
        WebhookRequest(timestamp=now.replace(tzinfo=None))


# --- credentials ---------------------------------------------------------------------------------

BEARER = {"bearer_token": "t0ken"}
BASIC = {"basic_auth": {"username": "ca", "password": "p:wd"}}


async def raw_post(client: TestClient[Any, Any], authorization: list[bytes]) -> tuple[int, str]:
    """POST a signed body with `Authorization` lines written byte for byte (none, one or more)."""
    raw = body('"timestamp":"2026-11-22T12:00:00Z"', with_id())
    head = [b"POST " + PEOPLE.encode() + b" HTTP/1.1", b"Host: localhost", b"Connection: close"]
    head += [f"{name}: {value}".encode() for name, value in signed(raw).items()]
    head += [b"Content-Length: " + str(len(raw)).encode()]
    head += [b"Authorization: " + value for value in authorization]
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + raw)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    code = (
        json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"]
        if b" 200 " not in status_line
        else "allow"
    )
    return int(status_line.split()[1]), code


@pytest.mark.parametrize(
    ("auth", "authorization"),
    [
        (BEARER, [b"Bearer t0ken\xff"]),
        (BEARER, [b"Bearer \xc3\x28"]),
        (BEARER, [b"bearer t0ken"]),
        (BEARER, [b"Bearer  t0ken"]),
        (BEARER, [b"Bearer t0ken", b"Bearer t0ken"]),
        (BASIC, [b"Basic !!!!"]),
        (BASIC, [b"Basic Y2E6cDp3ZA"]),
        (BASIC, [b"Basic Y2E6cDp3ZA==="]),
        (BASIC, [b"Basic \xff\xfe"]),
        (BASIC, [b"Basic"]),
        (BASIC, [b"Basic  Y2E6cDp3ZA=="]),
        (BASIC, [b"basic Y2E6cDp3ZA=="]),
        (BASIC, [b"Basic Y2E6cA=="]),
        (BASIC, [b"Basic " + base64.b64encode(b"ca:p:wd"), b"Basic !!!!"]),
    ],
    ids=[
        "bearer-non-utf8",
        "bearer-bad-utf8-sequence",
        "bearer-lowercase-scheme",
        "bearer-double-space",
        "bearer-twice",
        "basic-not-base64",
        "basic-unpadded",
        "basic-overpadded",
        "basic-non-ascii-bytes",
        "basic-no-value",
        "basic-double-space",
        "basic-lowercase-scheme",
        "basic-password-cut-at-colon",
        "basic-twice",
    ],
)
async def test_malformed_credentials_are_401_unauthorized(
    app_client: AppClient, inventory: Path, auth: dict[str, Any], authorization: list[bytes]
) -> None:
    """Any Authorization that is not exactly step-ca's is a 401 `unauthorized`, never a 500."""
    client = await app_client(config(inventory, webhooks=[webhook(**auth)]))
    assert await raw_post(client, authorization) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("auth", "authorization"),
    [
        (BEARER, [b"Bearer t0ken"]),
        (BASIC, [b"Basic " + base64.b64encode(b"ca:p:wd")]),
    ],
    ids=["bearer", "basic-with-colon-in-password"],
)
async def test_step_ca_credentials_pass_byte_for_byte(
    app_client: AppClient, inventory: Path, auth: dict[str, Any], authorization: list[bytes]
) -> None:
    """The header Go's client writes (SetBasicAuth: padded base64 of user:password) passes."""
    client = await app_client(config(inventory, webhooks=[webhook(**auth)]))
    assert await raw_post(client, authorization) == (200, "allow")
