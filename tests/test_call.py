"""`read_call` reads every body exactly as `parse_body(body, WebhookRequest)` does.

Its hand check of the members' types answers only where the model's answer is certain; the
property tests throw bodies of every nearby shape at both readers and require the same values,
or the same error, from each. The captured step-ca bodies must take the hand check (else the
hot path gains nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from connector.call import Call, _typed, read_call
from connector.models import (
    AttestationData,
    Certificate,
    CertificateRequest,
    Subject,
    WebhookRequest,
    WireFormatError,
    parse_body,
)

CAPTURED = Path(__file__).parent / "fixtures" / "captured"

ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
TIMESTAMPS = st.sampled_from(
    [
        "2026-11-22T07:37:22.946736094Z",
        "2026-11-22T07:37:22Z",
        "2026-11-22T09:37:22.5+02:00",
        "2026-11-22T07:37:22.9467360940Z",  # a trailing zero: not Go's
        "2026-11-22T07:37:22+00:00",  # Go writes Z
        "2026-02-30T07:37:22Z",  # no such day
        "2026-11-22 07:37:22Z",
        "",
    ]
)
TEXT = st.none() | st.text(max_size=8) | ANY
SUBJECT = st.fixed_dictionaries({}, optional={"commonName": TEXT, "country": ANY}) | ANY
SANS = st.none() | st.lists(st.dictionaries(st.text(max_size=4), ANY, max_size=2)) | ANY


def _maybe(node: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | node | ANY


CALLS = (
    st.fixed_dictionaries(
        {},
        optional={
            "timestamp": TIMESTAMPS | ANY,
            "provisionerName": TEXT,
            "attestationData": _maybe(
                st.fixed_dictionaries({}, optional={"permanentIdentifier": TEXT, "extra": ANY})
            ),
            "x509CertificateRequest": _maybe(
                st.fixed_dictionaries({}, optional={"subject": SUBJECT, "raw": TEXT})
            ),
            "x509Certificate": _maybe(
                st.fixed_dictionaries(
                    {}, optional={"subject": SUBJECT, "sans": SANS, "serialNumber": ANY}
                )
            ),
            "other": ANY,
        },
    )
    | ANY
)


# Bodies close to step-ca's, so that most take the hand check: a valid timestamp, the members
# present, values of the right type or of a near miss (a number, a bool, padded text), and keys
# Go or pydantic might read otherwise (snake_case, field names).
NEAR_TEXT = st.sampled_from(["C02TEST00001", " C02TEST00001 ", "", "a@b", 7, 0, True, None, 1.5])
NEAR_KEYS = st.sampled_from(["permanent_identifier", "common_name", "x509_certificate", "serial"])
STEP_CA = st.fixed_dictionaries(
    {
        "timestamp": st.sampled_from(
            [
                "2026-11-22T07:37:22.946736094Z",
                "2026-11-22T09:37:22.5+02:00",
                "2026-11-22T07:37:22Z",
            ]
        ),
        "attestationData": st.fixed_dictionaries(
            {"permanentIdentifier": NEAR_TEXT},
            optional={"permanent_identifier": NEAR_TEXT},
        ),
    },
    optional={
        "provisionerName": NEAR_TEXT,
        "x509CertificateRequest": st.fixed_dictionaries(
            {"subject": st.fixed_dictionaries({"commonName": NEAR_TEXT})},
            optional={"raw": NEAR_TEXT, "common_name": NEAR_TEXT},
        ),
        "x509Certificate": st.fixed_dictionaries(
            {},
            optional={
                "subject": st.fixed_dictionaries({}, optional={"commonName": NEAR_TEXT}),
                "sans": st.lists(st.dictionaries(st.text(max_size=5), NEAR_TEXT, max_size=2)),
            },
        ),
    },
).flatmap(lambda body: st.dictionaries(NEAR_KEYS, NEAR_TEXT, max_size=2).map(body.__or__))


def _outcome(read: Any, body: bytes) -> tuple[str, Any]:
    """What a reader makes of `body`: its call, or its error's type and message."""
    try:
        result = read(body)
    except (WireFormatError, ValidationError) as exc:
        return type(exc).__name__, str(exc)
    call = result if isinstance(result, Call) else Call.of(result)
    return "read", repr(call)  # repr: the offset and the values' types count too


def _same(body: bytes) -> None:
    assert _outcome(read_call, body) == _outcome(lambda b: parse_body(b, WebhookRequest), body)


@settings(max_examples=1500, deadline=None)
@given(tree=CALLS)
@example(tree={"timestamp": "2026-11-22T07:37:22Z", "x509CertificateRequest": {"subject": None}})
@example(tree={"timestamp": "2026-11-22T07:37:22Z", "x509Certificate": {"sans": [1]}})
@example(tree={"timestamp": "2026-11-22T07:37:22Z", "attestationData": "C02TEST00001"})
@example(tree={"timestamp": "2026-11-22T07:37:22Z", "x509CertificateRequest": {"subject": "a"}})
def test_a_body_is_read_as_the_model_reads_it(tree: Any) -> None:
    """Compact (step-ca's form, the hand check's) or spaced, the same call or the same error."""
    _same(orjson.dumps(tree))
    _same(json.dumps(tree).encode())


@settings(max_examples=1500, deadline=None)
@given(tree=STEP_CA)
def test_a_body_like_step_cas_is_read_as_the_model_reads_it(tree: Any) -> None:
    """Near step-ca's own bodies (where the hand check answers most), the same call or error."""
    _same(orjson.dumps(tree))


@settings(max_examples=1500, deadline=None)
@given(tree=CALLS | STEP_CA)
def test_the_hand_check_answers_only_for_what_the_model_accepts(tree: Any) -> None:
    """Whenever the hand check reads a tree, the model reads it too, to the same values."""
    call = _typed(tree)
    if call is not None:
        assert repr(Call.of(WebhookRequest.model_validate(tree))) == repr(call)


@pytest.mark.parametrize("stem", ["authorizing", "enriching"])
def test_step_ca_bodies_take_the_hand_check(stem: str) -> None:
    """The bodies a real step-ca sent are read without building the model."""
    raw = (CAPTURED / f"{stem}.body").read_bytes()
    call = _typed(orjson.loads(raw))
    assert call is not None
    assert call == Call.of(parse_body(raw, WebhookRequest))
    assert call.permanent_identifier


def test_a_csr_common_name_is_read() -> None:
    """An ENRICHING body's CSR common name reaches the call."""
    body = orjson.dumps(
        {
            "timestamp": "2026-11-22T07:37:22Z",
            "attestationData": {"permanentIdentifier": "C02TEST00001"},
            "x509CertificateRequest": {"subject": {"commonName": "C02TEST00001"}, "raw": "AA=="},
        }
    )
    assert read_call(body).csr_common_name == "C02TEST00001"
    assert _typed(orjson.loads(body)) is not None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"timestamp":"2026-11-22T07:37:22Z","attestationData":{"PermanentIdentifier":"B"}}',
        b'{"timestamp":"2026-11-22T07:37:22Z","timestamp":"2026-11-22T07:37:22Z"}',
        b'{"timestamp":"2026-11-22T07:37:22Z","x509CertificateRequest":{"subject":"C02"}}',
        b'{"timestamp":1764000000}',
    ],
)
def test_refusals_are_the_models(raw: bytes) -> None:
    """A body the strict reading refuses is refused with the same error."""
    outcome = _outcome(read_call, raw)
    assert outcome[0] != "read"
    _same(raw)


def _signature(model: type[BaseModel]) -> list[str]:
    decorators = model.__pydantic_decorators__
    lines = [f"{model.__name__} {dict(model.model_config)}"]
    lines += [
        f"  {name} alias={field.alias} {field.annotation} required={field.is_required()} "
        f"metadata={[type(m).__name__ for m in field.metadata]} "
        f"factory={getattr(field.default_factory, '__name__', None)}"
        for name, field in model.model_fields.items()
    ]
    if decorators.validators or decorators.field_validators or decorators.model_validators:
        lines.append("  validators")
    return lines


def test_the_models_are_the_ones_the_hand_check_was_written_for() -> None:
    """A change to the models `_typed` mirrors (a field, an alias, a type, a validator, a
    config such as reading field names) fails here first: review `connector.call._typed`,
    then update this snapshot."""
    models = (WebhookRequest, AttestationData, CertificateRequest, Certificate, Subject)
    assert [line for model in models for line in _signature(model)] == [
        "WebhookRequest {'extra': 'ignore', 'frozen': True}",
        "  timestamp alias=None <class 'datetime.datetime'> required=True "
        "metadata=['PlainValidator'] factory=None",
        "  provisioner_name alias=provisionerName str | None required=False metadata=[] "
        "factory=None",
        "  attestation_data alias=attestationData connector.models.AttestationData | None "
        "required=False metadata=[] factory=None",
        "  x509_certificate_request alias=x509CertificateRequest "
        "connector.models.CertificateRequest | None required=False metadata=[] factory=None",
        "  x509_certificate alias=x509Certificate connector.models.Certificate | None "
        "required=False metadata=[] factory=None",
        "AttestationData {'extra': 'ignore', 'frozen': True}",
        "  permanent_identifier alias=permanentIdentifier str | None required=False "
        "metadata=[] factory=None",
        "CertificateRequest {'extra': 'ignore', 'frozen': True}",
        "  subject alias=None <class 'connector.models.Subject'> required=False metadata=[] "
        "factory=Subject",
        "  raw alias=None str | None required=False metadata=[] factory=None",
        "Certificate {'extra': 'ignore', 'frozen': True}",
        "  subject alias=None <class 'connector.models.Subject'> required=False metadata=[] "
        "factory=Subject",
        "  sans alias=None list[dict[str, typing.Any]] | None required=False metadata=[] "
        "factory=None",
        "Subject {'extra': 'ignore', 'frozen': True}",
        "  common_name alias=commonName str | None required=False metadata=[] factory=None",
    ]
