"""Valid Unicode text: lone surrogates become U+FFFD wherever text enters or leaves."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from providers._http import parse_body
from providers.base import ProviderError
from providers.jamf import _models as jamf_models
from providers.jamf._listing import device_id
from providers.unicode import ascii_int, may_hold_surrogates, terminal_safe, valid_text, valid_tree


class _Named(BaseModel):
    name: str


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("plain", "plain"),
        ("zoë 😀", "zoë 😀"),
        ("a\udc80b", "a\ufffdb"),
        ("\ud800", "\ufffd"),
        ("\ud83d\ude00", "😀"),  # a pair split into two code points is one character again
        ("x\ude00\ud83d", "x\ufffd\ufffd"),  # low before high is no pair
        ("nul\x00stays", "nul\x00stays"),
    ],
)
def test_valid_text(text: str, valid: str) -> None:
    """Each lone surrogate becomes U+FFFD; everything else is kept, and the result encodes."""
    assert valid_text(text) == valid
    valid.encode("utf-8")


def test_valid_tree_reaches_keys_lists_and_tuples() -> None:
    """Strings anywhere in parsed JSON (or a log event) are made valid; other values are kept."""
    tree = {"a\udc80": ["b\udc81", ("c\udc82", 1.5)], "n": None, "t": True, "i": 7}
    assert valid_tree(tree) == {
        "a\ufffd": ["b\ufffd", ("c\ufffd", 1.5)],
        "n": None,
        "t": True,
        "i": 7,
    }


@pytest.mark.parametrize(
    ("document", "expected"),
    [(b'{"a": "\\udc80"}', True), (b'{"a": "\\uDC80"}', True), (b'{"a": "\\u00e9"}', False)],
)
def test_only_a_surrogate_escape_can_leave_a_lone_surrogate(
    document: bytes, expected: bool
) -> None:
    """The scan before any walk: json.loads makes a lone surrogate only from such an escape."""
    assert may_hold_surrogates(document.decode()) is expected
    parsed = json.loads(document)["a"]
    assert (valid_text(parsed) != parsed) is expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "x\xed\xb2\x80"}',  # a surrogate encoded in the bytes: not UTF-8
        '{"name": "x"}'.encode("utf-16"),  # JSON over HTTP is UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested beyond reason
    ],
    ids=["encoded-surrogate", "utf-16", "deep"],
)
def test_upstream_json_that_is_not_utf8_json_is_malformed(body: bytes) -> None:
    """What `json.loads` would read from bytes but no valid record can come from is refused
    with the provider's own error, never a lone surrogate or a RecursionError."""
    with pytest.raises(ProviderError, match="malformed JSON"):
        parse_body("jamf", body, _Named, where="GET /x")


def test_upstream_json_surrogate_escape_becomes_u_fffd() -> None:
    """An escape Python keeps as a lone surrogate reaches the record as U+FFFD."""
    assert parse_body("jamf", b'{"name": "x\\udc80"}', _Named, where="GET /x").name == "x\ufffd"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("42", 42),
        ("0", 0),
        ("9" * 18, int("9" * 18)),
        ("9" * 19, None),
        ("9" * 5000, None),  # `int` raises past 4,300 digits
        ("\u00b2", None),  # a digit to `str.isdigit`, refused by `int`
        ("\u0661", None),  # an Arabic-Indic one, which `int` reads
        ("", None),
        ("-1", None),
        (" 1", None),
    ],
)
def test_ascii_int_reads_only_short_runs_of_ascii_digits(text: str, number: int | None) -> None:
    """Upstream ids and Unix times: 1 to 18 ASCII digits, else None (never an exception)."""
    assert ascii_int(text) == number


def test_a_jamf_id_that_is_no_short_number_is_no_id() -> None:
    """A Jamf id of 5,000 digits (it stopped the listing with ValueError) is no id."""
    assert device_id(jamf_models.Computer.model_validate({"id": "9" * 5000})) is None
    assert device_id(jamf_models.Computer.model_validate({"id": "42"})) == 42


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("C02TEST00001", "C02TEST00001"),
        ("Quarant\u00e4ne", "Quarant\u00e4ne"),
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
        ("\x9b2J\r", "\\x9b2J\\x0d"),
        ("a\u202eb\u2066c", "a\\u202eb\\u2066c"),
        ("lone \udcff", "lone \ufffd"),
    ],
    ids=["ascii", "accented", "osc-bel", "c1-cr", "bidi", "surrogate"],
)
def test_terminal_safe_escapes_what_a_terminal_acts_on(text: str, shown: str) -> None:
    """Control characters and bidirectional marks become visible escapes; other text stays."""
    assert terminal_safe(text) == shown
