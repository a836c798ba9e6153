"""Valid Unicode text: lone surrogates become U+FFFD wherever text enters or leaves."""

from __future__ import annotations

import json

import pytest

from providers.unicode import may_hold_surrogates, valid_text, valid_tree


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
    assert may_hold_surrogates(document) is expected
    parsed = json.loads(document)["a"]
    assert (valid_text(parsed) != parsed) is expected
