"""The canonical-body shortcut of the strict reader changes no verdict.

`parse_body` first asks whether the body is exactly what orjson writes for its own tree (step-ca's
compact Go output is); only such a body skips the strict decoder. These tests hold the shortcut to
that: whenever it answers, the strict decoder accepts the same body and reads the same tree (types
included), and the bodies the strict reader refuses never pass it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from connector.models import WireFormatError, _canonical_tree, _strict_tree, parse_request

CAPTURED = Path(__file__).parent / "fixtures" / "captured"

KEYS = st.sampled_from(
    [
        "timestamp",
        "attestationData",
        "permanentIdentifier",
        "PermanentIdentifier",
        "x",
        "\u017f",
        "\u212a",
    ]
) | st.text(max_size=6)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
TREES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


def _compact(tree: Any) -> bytes:
    """`tree` as compact JSON (orjson's form wherever orjson can write it: not for integers
    beyond 64 bits)."""
    try:
        return orjson.dumps(tree)
    except TypeError:
        return json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode()


def _writings(tree: Any) -> list[bytes]:
    """`tree` as several encoders write it: compact, Python's with spaces and with ASCII escapes,
    and with Go's HTML escapes."""
    compact = _compact(tree)
    return [
        compact,
        json.dumps(tree).encode(),
        json.dumps(tree, separators=(",", ":"), ensure_ascii=True).encode(),
        compact.replace(b"<", b"\\u003c"),
    ]


def _tampered(raw: bytes, where: int, insert: bytes) -> bytes:
    """`raw` with `insert` spliced in just after its `where`-th opening brace (if it has one)."""
    braces = [i for i, byte in enumerate(raw) if byte == ord("{")]
    if not braces:
        return raw + insert
    at = braces[where % len(braces)] + 1
    return raw[:at] + insert + raw[at:]


TAMPERING = st.sampled_from(
    [
        b'"x":1,"x":2,',  # a repeated member
        b'"a":"\\ud800",',  # a lone surrogate escape
        b'"a":"\\ud83d\\ude00",',  # a surrogate pair, escaped
        b'"a":NaN,',
        b'"a":1e999,',
        b'"a":"\xed\xa0\x80",',  # a raw surrogate: not UTF-8
        b'"a":"\xff",',
        b'"a":12345678901234567890123,',
        b'"PERMANENTIDENTIFIER":"B",',
        b" ",
    ]
)


def _same_tree(raw: bytes) -> None:
    """If the shortcut reads `raw`, the strict reader accepts it and reads the same tree."""
    fast = _canonical_tree(raw)
    if fast is None:
        return
    assert repr(_strict_tree(raw)) == repr(fast)  # repr: 1 and 1.0 must not pass as equal


@settings(max_examples=300, deadline=None)
@given(tree=TREES)
@example(tree={"a": 1.0, "b": -0.0, "c": [1, 2.5e-8, 10**19]})
def test_shortcut_reads_what_the_strict_reader_reads(tree: Any) -> None:
    """However the tree is written, a shortcut answer is the strict reader's tree."""
    for raw in _writings(tree):
        _same_tree(raw)


@settings(max_examples=300, deadline=None)
@given(tree=TREES, where=st.integers(0, 8), insert=TAMPERING)
def test_shortcut_never_passes_a_body_the_strict_reader_refuses(
    tree: Any, where: int, insert: bytes
) -> None:
    """Tampered bodies (repeats, surrogates, NaN, huge numbers, bad UTF-8) either take the strict
    reader, or are bodies it reads to the same tree."""
    _same_tree(_tampered(_compact(tree), where, insert))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"x":1,"x":1}',
        b'{"a":{"b":2,"b":2}}',
        b'{"a":"\\ud800"}',
        b'{"a":NaN}',
        b'{"a":-Infinity}',
        b'{"a":"\xff"}',
        b'{"a":"\xed\xa0\x80"}',
        b"[" * 300 + b"]" * 300,
    ],
    ids=[
        "repeat",
        "nested-repeat",
        "surrogate",
        "nan",
        "infinity",
        "utf8",
        "raw-surrogate",
        "deep",
    ],
)
def test_bodies_the_strict_reader_judges_never_take_the_shortcut(raw: bytes) -> None:
    """What the strict reader exists to refuse (or reads in its own way) is left to it."""
    assert _canonical_tree(raw) is None


@pytest.mark.parametrize("stem", ["enriching", "authorizing"])
def test_step_ca_bodies_take_the_shortcut(stem: str) -> None:
    """The bodies a real step-ca sent are canonical: the cheap path is the common one."""
    raw = (CAPTURED / f"{stem}.body").read_bytes()
    assert _canonical_tree(raw) is not None
    assert parse_request(raw).permanent_identifier == "C02LABMANAGED"


def test_a_canonical_case_variant_is_still_refused() -> None:
    """The shortcut skips only the decoder: member names are checked on every body."""
    raw = b'{"timestamp":"2026-11-22T12:00:00Z","attestationData":{"PermanentIdentifier":"A"}}'
    assert _canonical_tree(raw) is not None
    with pytest.raises(WireFormatError, match="only in case"):
        parse_request(raw)
