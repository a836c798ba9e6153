"""step-ca's webhook request body and our reply; the body is read exactly as step-ca writes it.

Only the fields a decision reads are typed; unknown fields are ignored, because step-ca adds
fields between releases (`provisionerName` on master, for one) and a newer CA must not break us.

Why the reading is strict. step-ca writes the body with Go's `encoding/json`, and a Go program
reading the same bytes would use Go's decoder, which differs from a plain Python reading in ways
that could make us see another identifier than Go does (checked against Go 1.26's
`encoding/json/decode.go` and `fold.go`, and by running Go on such bodies):

- Go matches an object key to a struct field case-insensitively (an exact match is preferred;
  `foldName` upper-cases ASCII and maps any other rune to the smallest of its simple case-fold
  set, so the long s U+017F reads as `S` and the Kelvin sign U+212A as `K`). When several keys
  match one field, each assigns in turn and the *last* wins, whatever its case:
  `{"permanentIdentifier":"A","PERMANENTIDENTIFIER":"B"}` is `B` to Go.
- Go reads a lone UTF-16 surrogate escape (`\\ud800`) and invalid UTF-8 as U+FFFD; Python keeps
  the surrogate or fails.
- go.step.sm's `x509util.Subject` also takes a bare string as the common name.

Go's encoder never writes any of these: keys are the exact struct tags, each once, and strings are
valid UTF-8. So rather than mimic Go's quirks we refuse every body where they could matter. In each
object whose members we read (the body, `attestationData`, `x509CertificateRequest`,
`x509Certificate`, their `subject`; the SCEP bodies likewise) a key must be exactly a field's name
or fold to none of them, under a fold that equates everything Go's does and a little more (the
dotless i is taken as `I`: we err towards refusing). A key repeated in any object, a lone surrogate
anywhere, invalid UTF-8, `NaN`/`Infinity`, or a value of another JSON type than Go writes is
refused too. Snake-case names (`permanent_identifier`) are not read, since Go would not read them.
In what remains, Go and we take each field from the same member and get the same string from it.

The timestamp must be the RFC 3339 string `time.Time.MarshalJSON` writes (RFC3339Nano,
`2006-01-02T15:04:05.999999999Z07:00`: up to nine fraction digits without trailing zeros, `Z` for
a zero offset), not pydantic's lenient datetime, which also takes epoch numbers and spaces.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache, lru_cache
from typing import Annotated, Any, NoReturn, Protocol, TypeVar, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt

from connector import jsonbytes

# Go's appendFormatRFC3339: 4-digit year, 'T', 1 to 9 fraction digits without trailing zeros (none
# at all for a whole second), 'Z' or a ±hh:mm offset under 24 hours. ASCII digits only.
_GO_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]{0,8}[1-9])?"
    r"(?P<zone>Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


# A \uXXXX escape in the surrogate range (an escaped backslash before `u` also matches: then we
# look closer).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class WireFormatError(ValueError):
    """When a body is not what step-ca's Go encoder writes, where that could change our reading."""


def parse_go_timestamp(text: str) -> datetime:
    """An aware datetime from Go's RFC3339Nano text; nanoseconds are cut to microseconds."""
    match = _GO_RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(
            "timestamp is not RFC 3339 as step-ca writes it (2006-01-02T15:04:05.999999999Z07:00)"
        )
    zone = match["zone"]
    if zone in ("+00:00", "-00:00"):
        raise ValueError("timestamp has a zero offset written as ±00:00; step-ca writes Z")
    try:
        # Within the pattern, Python's own reader (3.11+) takes what Go wrote: `Z`, the offset,
        # and 1 to 9 fraction digits cut (not rounded) to microseconds.
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("timestamp is not a real date and time") from None


def _timestamp(value: object) -> datetime:
    if isinstance(value, str):
        return parse_go_timestamp(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value  # built in Python (`lookup`); JSON never yields a datetime
    raise ValueError("timestamp must be an RFC 3339 string")


GoTimestamp = Annotated[datetime, PlainValidator(_timestamp)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AttestationData(_Wire):
    """What step-ca learned from the device attestation."""

    permanent_identifier: str | None = Field(default=None, alias="permanentIdentifier")


class Subject(_Wire):
    """The part of an x509util subject we compare."""

    common_name: str | None = Field(default=None, alias="commonName")


class CertificateRequest(_Wire):
    """`x509CertificateRequest`: the (canonicalised) CSR on ENRICHING calls."""

    subject: Subject = Field(default_factory=Subject)
    raw: str | None = None


class Certificate(_Wire):
    """`x509Certificate`: the rendered certificate on AUTHORIZING calls."""

    subject: Subject = Field(default_factory=Subject)
    sans: list[dict[str, Any]] | None = None


class AttestedRequest(Protocol):
    """What a decision reads of a call: `WebhookRequest`, or `connector.call.Call`."""

    @property
    def permanent_identifier(self) -> str | None:
        """The attested identifier, if the order carried one."""

    @property
    def csr_common_name(self) -> str | None:
        """The common name of the CSR (ENRICHING calls), if any."""


class WebhookRequest(_Wire):
    """The JSON body step-ca POSTs to an AUTHORIZING or ENRICHING webhook."""

    timestamp: GoTimestamp
    provisioner_name: str | None = Field(default=None, alias="provisionerName")
    attestation_data: AttestationData | None = Field(default=None, alias="attestationData")
    x509_certificate_request: CertificateRequest | None = Field(
        default=None, alias="x509CertificateRequest"
    )
    x509_certificate: Certificate | None = Field(default=None, alias="x509Certificate")

    @property
    def permanent_identifier(self) -> str | None:
        """The attested identifier, if the order carried one."""
        return self.attestation_data.permanent_identifier if self.attestation_data else None

    @property
    def csr_common_name(self) -> str | None:
        """The common name of the CSR (ENRICHING calls), if any."""
        csr = self.x509_certificate_request
        return csr.subject.common_name if csr else None


class IssuedCertificate(_Wire):
    """`x509Certificate` on a SCEP NOTIFYING success: only the leaf's outer fields are sent."""

    raw: str = Field(min_length=1)
    not_after: GoTimestamp | None = Field(default=None, alias="notAfter")


class ScepChallengeRequest(_Wire):
    """The body of a SCEPCHALLENGE call (step-ca >= v0.24.2; `provisionerName` since v0.25.1).

    `scepChallenge` and `scepTransactionID` are ``omitempty`` in step-ca: absent means empty.
    """

    timestamp: GoTimestamp
    provisioner_name: str | None = Field(default=None, alias="provisionerName")
    x509_certificate_request: CertificateRequest = Field(alias="x509CertificateRequest")
    scep_challenge: str = Field(default="", alias="scepChallenge")
    scep_transaction_id: str = Field(default="", alias="scepTransactionID")


class ScepNotification(_Wire):
    """The body of a NOTIFYING call after a SCEP issuance (step-ca >= v0.25.0).

    A success carries `x509Certificate`; a failure `scepErrorDescription` and, when not zero,
    `scepErrorCode` (``omitempty``: step-ca v0.30.2 always passes 0, so it is absent).
    """

    timestamp: GoTimestamp
    x509_certificate_request: CertificateRequest = Field(alias="x509CertificateRequest")
    x509_certificate: IssuedCertificate | None = Field(default=None, alias="x509Certificate")
    scep_transaction_id: str = Field(default="", alias="scepTransactionID")
    scep_error_code: StrictInt = Field(default=0, alias="scepErrorCode")
    scep_error_description: str = Field(default="", alias="scepErrorDescription")

    @property
    def issued(self) -> bool:
        """Whether step-ca reports a certificate (else a failure)."""
        return self.x509_certificate is not None


_Body = TypeVar("_Body", bound=_Wire)


def parse_request(body: bytes) -> WebhookRequest:
    """Read an ENRICHING or AUTHORIZING body strictly (see the module docstring).

    Raises `WireFormatError` for a body Go could read differently, pydantic's `ValidationError`
    for one of the wrong shape.
    """
    return parse_body(body, WebhookRequest)


def parse_body(body: bytes, model: type[_Body]) -> _Body:
    """Read a body of any webhook kind into `model`, as strictly as `parse_request`."""
    return model.model_validate(read_tree(body, model))


def read_tree(body: bytes, model: type[_Wire]) -> Any:
    """`body`'s JSON tree, refused (`WireFormatError`) where Go could read it otherwise than we
    do: every check of `parse_body` but the model's validation."""
    tree = _canonical_tree(body)
    if tree is None:
        tree = _strict_tree(body)
    _check_member_names(tree, model, remember=len(body) <= MEMBER_SETS_BODY_BYTES)
    return tree


def _canonical_tree(body: bytes) -> Any:
    """The tree of a body that is exactly what orjson writes for it, else None.

    step-ca's Go encoder writes compact JSON, which orjson writes back byte for byte (unless the
    text holds HTML-escaped or escaped non-ASCII characters, or a number orjson writes
    otherwise). Such a body repeats no member (its tree would have fewer members and write
    shorter), and orjson has already refused invalid UTF-8, lone surrogates, NaN and Infinity:
    all that is left to check is the member names. Any other body takes `_strict_tree`, which
    reads it as before and says what is wrong. On step-ca's own bodies the tree costs a third of
    what the strict decoder's does.
    """
    try:
        tree = orjson.loads(body)
        return tree if orjson.dumps(tree) == body else None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # refused, or nested too deep
        return None


def _strict_tree(body: bytes) -> Any:
    """Any body's tree, refusing what Go could read differently (see the module docstring)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WireFormatError("body is not UTF-8") from None
    try:
        tree = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise WireFormatError(f"not JSON: {exc.msg} (at character {exc.pos})") from None
    except RecursionError:
        raise WireFormatError("JSON nested too deeply") from None
    except WireFormatError:
        raise
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise WireFormatError("a number in the body has too many digits") from None
    if _SURROGATE_ESCAPE.search(text):  # strict UTF-8 decoding already refused raw surrogates
        _check_strings(tree)
    return tree


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)  # built in C; a repeated key leaves fewer members than pairs
    if len(members) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise WireFormatError(f"member {key!r} appears twice in one object")
            seen.add(key)
    return members


def _no_constant(name: str) -> NoReturn:
    raise WireFormatError(f"{name} is not JSON")


# Built once: `json.loads` with these hooks would build a decoder for every body.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constant)


def _check_strings(tree: Any) -> None:
    """Refuse lone surrogates, which Go would read as U+FFFD (iterative: no recursion limit)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise WireFormatError("a string holds a lone UTF-16 surrogate") from None


def _check_member_names(tree: Any, root: type[_Wire], *, remember: bool) -> None:
    """Refuse keys that Go would match to a field we read but that are not its exact name.

    With `remember`, each object's key set is remembered once checked (see `_nested_members`).
    """
    check = _nested_members if remember else _nested_members.__wrapped__
    stack: list[tuple[Any, type[_Wire], str]] = [(tree, root, "body")]
    while stack:
        node, model, where = stack.pop()
        if not isinstance(node, dict):
            continue  # pydantic reports the wrong type
        try:
            nested = check(model, tuple(node))
        except _CaseClash as clash:
            raise WireFormatError(
                f"{where}: member {clash.key!r} differs from step-ca's {clash.name!r} only in "
                f"case; Go would read it as {clash.name!r}"
            ) from None
        for name, child in nested:
            stack.append((node[name], child, f"{where}.{name}"))


class _CaseClash(Exception):
    """A key that folds to a field's name without being it."""

    def __init__(self, key: str, name: str) -> None:
        super().__init__(key, name)
        self.key = key
        self.name = name


MEMBER_SETS = 256
"""Key sets `_nested_members` remembers per process (step-ca writes a handful)."""
MEMBER_SETS_BODY_BYTES = 16 * 1024
"""The largest body whose key sets are remembered (step-ca's are under 4 KiB), so the cache
holds at most `MEMBER_SETS` times this in keys, whatever `server.max_body_bytes` allows."""


@lru_cache(maxsize=MEMBER_SETS)
def _nested_members(
    model: type[_Wire], keys: tuple[str, ...]
) -> tuple[tuple[str, type[_Wire]], ...]:
    """The members among `keys` that hold a nested model; raises `_CaseClash` for a key that
    is not a field's exact name but folds to one.

    A pure function of the model and the key set, so each set step-ca writes is checked once
    (a refused one is not remembered, and is checked again each time).
    """
    fields = _members(model)
    exact, folded, nested = fields.exact, fields.folded, fields.nested
    found: list[tuple[str, type[_Wire]]] = []
    for key in keys:
        # A field's exact name folds to itself: only other keys need folding.
        name = key if key in exact else folded.get(_go_fold(key))
        if name is None:
            continue
        if key != name:
            raise _CaseClash(key, name)
        child = nested.get(name)
        if child is not None:
            found.append((name, child))
    return tuple(found)


class _Members:
    """The wire names of a model's fields, folded, and which of them hold a nested model."""

    __slots__ = ("exact", "folded", "nested")

    def __init__(self, model: type[_Wire]) -> None:
        self.folded: dict[str, str] = {}
        self.nested: dict[str, type[_Wire]] = {}
        for name, field in model.model_fields.items():
            wire = field.alias or name
            self.folded[_go_fold(wire)] = wire
            for candidate in (field.annotation, *get_args(field.annotation)):
                if isinstance(candidate, type) and issubclass(candidate, _Wire):
                    self.nested[wire] = candidate
        self.exact = frozenset(self.folded.values())


@cache
def _members(model: type[_Wire]) -> _Members:
    return _Members(model)


def _go_fold(key: str) -> str:
    """A fold equating at least what Go's `foldName` does: ASCII case, U+017F ~ S, U+212A ~ K."""
    if key.isascii():
        return key.upper()
    return "".join(_fold_char(char) for char in key)


def _fold_char(char: str) -> str:
    if char.isascii():
        return char.upper()
    for variant in (char.upper(), char.lower(), char.casefold()):
        if len(variant) == 1 and variant.isascii():
            return variant.upper()
    return char


class ReplyError(BaseModel):
    """`error` in a reply; the ACME client sees it as `urn:smallstep:acme:error:<code>`."""

    code: str
    message: str


class WebhookReply(BaseModel):
    """What we answer, always with HTTP 200 once the request is authentic."""

    allow: bool
    data: dict[str, Any] | None = None
    error: ReplyError | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form, without null members."""
        return self.model_dump(exclude_none=True)

    def to_bytes(self) -> bytes:
        """`to_json` as the bytes sent, written as every answer is (`connector.jsonbytes`)."""
        return jsonbytes.dumps(self.to_json())
